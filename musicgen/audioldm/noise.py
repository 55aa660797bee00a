"""Seeded Gaussian noise equal, bit for bit, to what ppdiffusers' AudioLDM pipeline draws on CPU — in numpy.

The pipeline draws its initial latents with `randn_tensor(shape, generator=paddle.Generator().manual_seed(seed),
dtype=paddle.float32)`. ppdiffusers replaces `paddle.Generator` by its RNG-state tracker: on CPU, `manual_seed`
is `paddle.seed(seed)` on paddle's global CPU generator, and the draw one call of paddle's gaussian kernel
(paddle 3.2.2, `phi/kernels/funcs/norm_distribution.h`, `phi/core/generator.cc`), which fills the tensor in
order from libstdc++:

1. the engine: `std::mt19937_64` seeded through `std::seed_seq{seed}` — seed_seq keeps 32-bit words, so only
   `seed mod 2**32` matters;
2. uniforms: `std::generate_canonical<float, 24>`: one 64-bit draw rounded to float, divided by 2**64
   (a draw that rounds up to 1 becomes the float just below 1);
3. normals: `std::normal_distribution<float>`, Marsaglia's polar method: pairs (x, y) = 2u - 1 (in double,
   then rounded to float) until 0 < r2 = x*x + y*y <= 1; m = sqrt(-2 log(r2) / r2) in float; the pair gives
   y*m, then the cached x*m, each as `value * 1 + 0` (so -0.0 comes out +0.0). Rejected pairs use up their two
   draws; an odd count drops the last cached value.

Everything is float32 arithmetic numpy reproduces exactly, except logf: glibc's logf is not correctly rounded
(about 0.7% of the r2 values would differ by one ulp from the rounded true log), so `libm.logf` rounds the
float64 log where that is safe and asks the C library, as paddle does, for the ~15% of values where it is not.
Measured: bit-exact to paddle over 6.7 million values (31 seeds, 9 shapes); 1x8x128x16 in ~3-5 ms.
"""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from .libm import logf

# --- 1. std::seed_seq + std::mt19937_64 -------------------------------------------------------------
_N, _M = 312, 156  # mt19937_64 state words, twist offset
_MATRIX_A = np.uint64(0xB5026F5AA96619E9)
_UPPER = np.uint64(0xFFFFFFFF80000000)  # the top 33 bits (~0 << 31)
_LOWER = np.uint64(0x7FFFFFFF)
_MASK32 = 0xFFFFFFFF


def _seed_seq_words(seed: int, count: int) -> list:
    """std::seed_seq{seed}.generate() of `count` 32-bit words (libstdc++'s algorithm, count >= 623)."""
    words = [0x8B8B8B8B] * count
    entropy = [seed & _MASK32]  # seed_seq stores its inputs as 32-bit words
    t = 11
    p = (count - t) // 2
    q = p + t
    for k in range(max(len(entropy) + 1, count)):
        arg = words[k % count] ^ words[(k + p) % count] ^ words[(k - 1) % count]
        r1 = (1664525 * (arg ^ (arg >> 27))) & _MASK32
        if k == 0:
            r2 = r1 + len(entropy)
        elif k <= len(entropy):
            r2 = r1 + k % count + entropy[k - 1]
        else:
            r2 = r1 + k % count
        r2 &= _MASK32
        words[(k + p) % count] = (words[(k + p) % count] + r1) & _MASK32
        words[(k + q) % count] = (words[(k + q) % count] + r2) & _MASK32
        words[k % count] = r2
    for k in range(count, 2 * count):
        arg = (words[k % count] + words[(k + p) % count] + words[(k - 1) % count]) & _MASK32
        r3 = (1566083941 * (arg ^ (arg >> 27))) & _MASK32
        r4 = (r3 - k % count) & _MASK32
        words[(k + p) % count] ^= r3
        words[(k + q) % count] ^= r4
        words[k % count] = r4
    return words


@functools.lru_cache(maxsize=64)
def _seeded_state(seed32: int) -> np.ndarray:
    """mt19937_64's state after `seed(std::seed_seq{seed})`: two seed_seq words per state word, low first."""
    words = np.array(_seed_seq_words(seed32, 2 * _N), dtype=np.uint64)
    state = words[0::2] | (words[1::2] << np.uint64(32))
    if not (state[0] & _UPPER) and not state[1:].any():
        state[0] = np.uint64(1) << np.uint64(63)  # the engine's guard against an all-zero state
    state.setflags(write=False)
    return state


def _temper(words: np.ndarray) -> np.ndarray:
    z = words ^ ((words >> np.uint64(29)) & np.uint64(0x5555555555555555))
    z ^= (z << np.uint64(17)) & np.uint64(0x71D67FFFEDA60000)
    z ^= (z << np.uint64(37)) & np.uint64(0xFFF7EEE000000000)
    return z ^ (z >> np.uint64(43))


class _Engine:
    """std::mt19937_64 as paddle's Generator.manual_seed leaves it.

    Written as the sequence the twist defines, x[k + 312] = x[k + 156] ^ A(upper(x[k]) | lower(x[k + 1])),
    whose terms depend on nothing nearer than 156 back: 156 of them are computed at once. The engine outputs
    the tempered terms from x[312] on, the first 312 being the seeded state.
    """

    def __init__(self, seed: int):
        self._recent = _seeded_state(seed & _MASK32)  # the last 312 terms

    def draws(self, count: int) -> np.ndarray:
        """The next `count` outputs, `count` a multiple of 156."""
        seq = np.empty(_N + count, dtype=np.uint64)
        seq[:_N] = self._recent
        for k in range(_N, _N + count, _N - _M):
            y = (seq[k - _N:k - _M] & _UPPER) | (seq[k - _N + 1:k - _M + 1] & _LOWER)
            seq[k:k + _N - _M] = seq[k - _M:k] ^ (y >> np.uint64(1)) ^ ((np.uint64(0) - (y & np.uint64(1))) & _MATRIX_A)
        self._recent = seq[-_N:]
        return _temper(seq[_N:])


# --- 2. generate_canonical<float, 24> -----------------------------------------------------------------
_BELOW_ONE = np.nextafter(np.float32(1), np.float32(0))


def _canonical_floats(draws: np.ndarray) -> np.ndarray:
    u = draws.astype(np.float32) * np.float32(2.0 ** -64)  # uint64 -> float rounds to nearest; /2**64 is exact
    return np.minimum(u, _BELOW_ONE)


# --- 3. the polar method, with glibc's logf -------------------------------------------------------------
def _polar_normals(u: np.ndarray) -> np.ndarray:
    """Consecutive uniform pairs → the normal_distribution<float> outputs they yield, in order."""
    u = u[: u.size // 2 * 2]
    # 2u - 1 is written `float(2) * u - 1.0`: a float product, a double difference, stored back in a float.
    centred = ((np.float32(2) * u).astype(np.float64) - 1.0).astype(np.float32)
    x, y = centred[0::2], centred[1::2]
    r2 = x * x + y * y
    accepted = (r2 <= 1) & (r2 != 0)
    x, y, r2 = x[accepted], y[accepted], r2[accepted]
    mult = np.sqrt(np.float32(-2) * logf(r2) / r2)
    # The distribution returns `value * stddev + mean` (1 and 0): r2 == 1 gives mult 0, and the -0.0 of a
    # negative y or x comes back as +0.0.
    return np.stack([y * mult, x * mult], axis=1).reshape(-1) + np.float32(0)


def seeded_normal(shape: Sequence[int], seed: int) -> np.ndarray:
    """float32 standard normals of `shape`, bit-exact to paddle's CPU `randn` under
    `paddle.Generator().manual_seed(seed)` — the initial latents of ppdiffusers' AudioLDM pipeline."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    count = int(np.prod(shape, dtype=np.int64))
    engine = _Engine(seed)
    normals = np.empty(0, dtype=np.float32)
    while normals.size < count:
        # Each try takes 2 draws and is kept with probability pi/4: 1.27 draws per normal on average.
        draws = -(-(int((count - normals.size) * 1.3) + 64) // (_N - _M)) * (_N - _M)
        normals = np.concatenate([normals, _polar_normals(_canonical_floats(engine.draws(draws)))])
    return normals[:count].reshape(tuple(shape))
