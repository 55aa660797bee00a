"""musicgen.audioldm.noise against what ppdiffusers' AudioLDM pipeline really draws: paddle's CPU generator.

Every comparison is bit for bit (the float32 bit patterns), over seeds at the edges of the 32- and 64-bit ranges
and shapes with odd element counts (the polar method's cached second value is dropped) and several rejection
top-ups (the large ones).
"""
import ctypes
import ctypes.util

import numpy as np
import paddle
import pytest
from ppdiffusers.utils.paddle_utils import randn_tensor  # importing it also patches paddle.Generator

from musicgen.audioldm.noise import logf, seeded_normal

SEEDS = [0, 1, 2, 42, 120, 1004, 2**31 - 1, 2**32 - 1, 2**32, 2**32 + 5, 2**62 + 17, 2**63 - 1]
SHAPES = [(1,), (2,), (3,), (7,), (1, 4, 5, 3), (2, 3, 33, 7), (1, 8, 128, 16), (3, 8, 256, 16)]


def paddle_noise(shape, seed):
    """The pipeline's own call (AudioLDMPipeline.prepare_latents)."""
    generator = paddle.Generator().manual_seed(seed)
    return randn_tensor(list(shape), generator=generator, dtype=paddle.float32).numpy()


def assert_bit_equal(ours, ref):
    assert ours.shape == ref.shape and ours.dtype == ref.dtype == np.float32
    differing = np.flatnonzero(ours.view(np.uint32) != ref.view(np.uint32))
    first = differing[:5]
    assert differing.size == 0, f"{differing.size} values differ, first at {first}: {ours.flat[first]} vs {ref.flat[first]}"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bit_exact_to_paddle(seed, shape):
    assert_bit_equal(seeded_normal(shape, seed), paddle_noise(shape, seed))


def test_a_zero_comes_out_positive_as_in_libstdcxx():
    # Seed 1004 draws r2 == 1 at value 78182: multiplier 0, y < 0. libstdc++ returns -0.0 * 1 + 0 = +0.0.
    ours = seeded_normal((78184,), 1004)
    assert_bit_equal(ours, paddle_noise((78184,), 1004))
    assert ours[78182] == 0 and not np.signbit(ours[78182])


def test_only_the_low_32_bits_of_the_seed_count():
    # std::seed_seq keeps 32-bit words: paddle's own behaviour, kept.
    assert_bit_equal(seeded_normal((5, 7), 2**32 + 5), seeded_normal((5, 7), 5))
    assert_bit_equal(paddle_noise((5, 7), 2**32 + 5), paddle_noise((5, 7), 5))


def test_draws_are_independent_of_earlier_calls():
    first = seeded_normal((1, 8, 16, 16), 9)
    seeded_normal((3, 8, 256, 16), 9)  # a large draw from the same seed in between changes nothing
    assert_bit_equal(seeded_normal((1, 8, 16, 16), 9), first)
    assert_bit_equal(seeded_normal((2048,), 9)[:1001], seeded_normal((1001,), 9))  # a prefix of the stream


def test_negative_seed_is_refused():
    with pytest.raises(ValueError, match="seed"):
        seeded_normal((2,), -1)


def test_logf_equals_the_c_library():
    libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    libm.logf.argtypes, libm.logf.restype = [ctypes.c_float], ctypes.c_float
    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.random(200_000, dtype=np.float32),  # r2 is uniform on (0, 1]
        1 - rng.random(20_000, dtype=np.float32) * np.float32(2**-6),  # near 1: the hardest rounding
        np.ldexp(np.float32(1), -rng.integers(1, 149, 2_000)).astype(np.float32),  # down to subnormals
        np.array([1.0, np.nextafter(np.float32(1), np.float32(0)), 2.0**-30, 2.0**-126, 2.0**-149], np.float32),
    ])
    values = values[values > 0]
    expected = np.array([libm.logf(v) for v in values.tolist()], dtype=np.float32)
    assert_bit_equal(logf(values), expected)
