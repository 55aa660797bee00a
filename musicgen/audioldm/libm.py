"""The C library's float32 math functions, as paddle's CPU kernels call them (std::log, std::exp, std::pow on
floats), for the few places where a port must round exactly as paddle does.

glibc's logf, expf and powf are not always correctly rounded, so numpy's own float32 functions (or float64
ones rounded) differ from them now and then by one ulp. Scalars go straight to libm through ctypes; logf,
which the seeded noise needs for thousands of values at once, is computed in float64, rounded, and only the
values whose rounding could go either way are asked of libm.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

import numpy as np

# Where glibc's logf and the correctly rounded log disagree, how near a float32 rounding midpoint the true log
# lies, at most, measured over every float in [2**-30, 1) (glibc 2.36, x86-64): 2.4e-9 where |log| >= 0.5,
# 3.8e-10 where 2**-7 <= |log| < 0.5. Twice that is "ambiguous"; so is anything nearer 0 or below 2**-30.
_AMBIGUOUS_FAR, _AMBIGUOUS_NEAR = 5e-9, 1e-9  # |log| >= 0.5, below
_ALWAYS_ASK_BELOW_LOG, _ALWAYS_ASK_BELOW = 2.0 ** -7, np.float32(2.0 ** -30)


@functools.lru_cache(maxsize=None)
def _libm():
    try:
        return ctypes.CDLL("libm.so.6")  # glibc's; find_library would run ldconfig in a subprocess
    except OSError:
        return ctypes.CDLL(ctypes.util.find_library("m"))


@functools.lru_cache(maxsize=None)
def _function(name: str, arity: int):
    function = getattr(_libm(), name)
    function.argtypes, function.restype = [ctypes.c_float] * arity, ctypes.c_float
    return function


def expf(x) -> np.float32:
    """The C library's expf of one float32."""
    return np.float32(_function("expf", 1)(float(x)))


def powf(x, y) -> np.float32:
    """The C library's powf of two float32: what paddle's `tensor ** y` computes (not always x*x or sqrt)."""
    return np.float32(_function("powf", 2)(float(x), float(y)))


def logf(values: np.ndarray) -> np.ndarray:
    """The C library's logf of float32 values in (0, 1]: the float64 log rounded, and libm itself where that
    rounding is ambiguous (about one value in seven)."""
    exact = np.log(values.astype(np.float64))
    rounded = exact.astype(np.float32)
    toward = np.where(exact > rounded, np.float32(np.inf), np.float32(-np.inf))
    midpoint = (rounded.astype(np.float64) + np.nextafter(rounded, toward).astype(np.float64)) / 2
    margin = np.where(exact <= -0.5, _AMBIGUOUS_FAR, _AMBIGUOUS_NEAR)
    ambiguous = ((np.abs(exact - midpoint) < margin) | (exact > -_ALWAYS_ASK_BELOW_LOG)
                 | (values < _ALWAYS_ASK_BELOW))
    if ambiguous.any():
        rounded[ambiguous] = list(map(_function("logf", 1), values[ambiguous].tolist()))
    return rounded
