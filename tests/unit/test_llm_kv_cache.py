"""The preallocated KV cache: what a step writes lands after each row's positions, the laid-out mask hides
unwritten slots, growth keeps what was written, and a toy attention over the buffers equals one over the
concatenated cache, whatever the capacity."""
import numpy as np
import pytest

from musicgen.llm.feeds import KVShape
from musicgen.llm.kv_cache import NEW_KEY_VALUES, CachedStep, CacheFullError, KVCache, cache_input_names
from musicgen.precision import is_kv_cache

SHAPE = KVShape(layers=2, heads=3, head_dim=4)


def new_positions(rng, rows, new, shape=SHAPE):
    return rng.standard_normal((shape.layers, 2, rows, shape.heads, new, shape.head_dim)).astype(np.float32)


def written(cache: KVCache, row: int, layer: int, kind: int) -> np.ndarray:
    return cache.buffers()[2 * layer + kind][row, :, :cache.lengths[row]]


def test_names_interleave_keys_and_values_per_layer():
    assert cache_input_names(2) == ["past_key_0", "past_value_0", "past_key_1", "past_value_1"]
    assert all(is_kv_cache(n) for n in cache_input_names(3) + [NEW_KEY_VALUES])
    assert not is_kv_cache("attention_mask") and not is_kv_cache("logits")


def test_lockstep_appends_concatenate_per_row():
    rng = np.random.default_rng(0)
    cache = KVCache(SHAPE, rows=2, chunk=4)
    steps = [new_positions(rng, 2, 5)] + [new_positions(rng, 2, 1) for _ in range(6)]
    for step in steps:
        cache.reserve(step.shape[4])
        cache.append(step)
    assert cache.lengths.tolist() == [11, 11] and cache.capacity == 12  # grown in chunks of 4
    expected = np.concatenate(steps, axis=4)
    for layer in range(2):
        for kind in range(2):
            for row in range(2):
                np.testing.assert_array_equal(written(cache, row, layer, kind), expected[layer, kind, row])


def test_rows_of_different_lengths_write_at_their_own_ends():
    rng = np.random.default_rng(1)
    cache = KVCache(SHAPE, rows=3, chunk=8)
    cache.lengths[:] = [0, 0, 0]
    first = new_positions(rng, 1, 3)  # row 0 alone: a prefill of 3
    cache.reserve(3, rows=1)
    cache.append(first)
    step = new_positions(rng, 2, 1)  # rows 0 and 1 decode together (lengths 3 and 0)
    cache.reserve(1, rows=2)
    cache.append(step)
    assert cache.lengths.tolist() == [4, 1, 0]
    np.testing.assert_array_equal(written(cache, 0, 1, 1), np.concatenate([first[1, 1, 0], step[1, 1, 0]], axis=1))
    np.testing.assert_array_equal(written(cache, 1, 0, 0), step[0, 0, 1])


def test_growth_respects_the_limit():
    cache = KVCache(SHAPE, rows=1, chunk=8, limit=10)
    cache.reserve(9)
    assert cache.capacity == 10  # the chunk would give 16: capped at the limit
    cache.append(new_positions(np.random.default_rng(2), 1, 9))
    cache.reserve(1)
    with pytest.raises(CacheFullError, match="at most 10 positions; this step needs 11"):
        cache.reserve(2)


def test_fit_shrinks_to_the_longest_row_and_keeps_what_is_written():
    rng = np.random.default_rng(3)
    cache = KVCache(SHAPE, rows=2, chunk=4)
    long, short = new_positions(rng, 1, 11), new_positions(rng, 1, 2)
    cache.reserve(11, rows=1)
    cache.append(long)
    cache.move(0, 1)  # the long sequence in row 1, the short one in row 0
    cache.reserve(2, rows=1)
    cache.append(short)
    assert cache.capacity == 12
    cache.fit()
    assert cache.capacity == 12  # the long row still needs its 11
    cache.clear(1)
    cache.fit()
    assert cache.capacity == 4 and cache.lengths.tolist() == [2, 0]
    np.testing.assert_array_equal(written(cache, 0, 1, 0), short[1, 0, 0])
    cache.clear(0)
    cache.fit()
    assert cache.capacity == 0 and all(b.nbytes == 0 for b in cache.buffers())  # idle: nothing held
    cache.reserve(1)  # and it grows back
    assert cache.capacity == 4


def test_append_without_room_or_with_a_wrong_shape_is_refused():
    cache = KVCache(SHAPE, rows=1, chunk=4)
    with pytest.raises(CacheFullError, match="reserve"):
        cache.append(new_positions(np.random.default_rng(3), 1, 2))
    cache.reserve(2)
    with pytest.raises(ValueError, match="does not fit"):
        cache.append(new_positions(np.random.default_rng(3), 1, 2, KVShape(2, 5, 4)))


def test_layout_mask_places_past_columns_first_and_new_ones_after_the_capacity():
    cache = KVCache(SHAPE, rows=2, chunk=8)
    cache.reserve(3)
    cache.append(new_positions(np.random.default_rng(4), 2, 3))
    logical = np.array([[[[1, 0, 1, 1]]], [[[1, 1, 1, 1]]]])  # [2, 1, 1, 3 + 1]
    laid = cache.layout_mask(logical)
    assert laid.shape == (2, 1, 1, 8 + 1)
    assert laid[0, 0, 0].tolist() == [1, 0, 1, 0, 0, 0, 0, 0, 1]
    assert laid[1, 0, 0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 1]
    with pytest.raises(ValueError, match="expected \\[1, 1, 4\\]"):
        cache.layout_mask([np.ones((1, 1, 5)), np.ones((1, 1, 4))])


def test_a_4d_mask_needs_rows_of_one_length():
    cache = KVCache(SHAPE, rows=2, chunk=8)
    cache.reserve(2, rows=1)
    cache.append(new_positions(np.random.default_rng(5), 1, 2))
    with pytest.raises(ValueError, match="one mask per row"):
        cache.layout_mask(np.ones((2, 1, 1, 3), dtype=np.int64))
    per_row = cache.layout_mask([np.ones((1, 1, 3)), np.ones((1, 1, 1))])
    assert per_row[1, 0, 0].tolist() == [0] * 8 + [1]


def test_insert_and_move_copy_rows_and_their_lengths():
    rng = np.random.default_rng(6)
    joining = KVCache(SHAPE, rows=1, chunk=4)
    joining.reserve(5)
    joining.append(new_positions(rng, 1, 5))
    batch = KVCache(SHAPE, rows=3, chunk=4)
    batch.insert(2, joining)
    assert batch.lengths.tolist() == [0, 0, 5] and batch.capacity == 8
    np.testing.assert_array_equal(written(batch, 2, 1, 0), written(joining, 0, 1, 0))
    batch.move(2, 0)
    assert batch.lengths.tolist() == [5, 0, 0]
    np.testing.assert_array_equal(written(batch, 0, 0, 1), written(joining, 0, 0, 1))


def attention(query, keys, values, mask):
    """Softmax attention of [heads, new, d] queries over [heads, n, d] keys with a [new, n] 1/0 mask."""
    scores = query @ keys.transpose(0, 2, 1) / np.sqrt(query.shape[-1])
    scores = np.where(mask[None].astype(bool), scores, -1e9)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True)) @ values


def toy_graph(rng_seed=7):
    """A one-layer 'step graph' over the buffers as the exported ones compute it: scores over the slots and
    over the step's own positions, one softmax under the laid-out mask; outputs depend on the past."""
    projection = np.random.default_rng(rng_seed).standard_normal((SHAPE.head_dim, SHAPE.head_dim))
    shape = KVShape(1, SHAPE.heads, SHAPE.head_dim)

    def run(feeds):
        x = feeds["x"]  # [rows, heads, new, d]: doubles as query, key and value of the new positions
        keys, values = feeds["past_key_0"], feeds["past_value_0"]
        out = []
        for row in range(x.shape[0]):
            all_keys = np.concatenate([keys[row], x[row] @ projection], axis=1)
            all_values = np.concatenate([values[row], x[row]], axis=1)
            out.append(attention(x[row], all_keys, all_values, feeds["attention_mask"][row, 0]))
        new = np.stack([x @ projection, x])[None]  # [1, 2, rows, heads, new, d]
        return np.stack(out).sum(axis=(1, 3)), new

    return run, shape


def test_a_step_over_the_buffers_equals_one_over_the_concatenated_cache():
    run, shape = toy_graph()
    rng = np.random.default_rng(8)
    cache = KVCache(shape, rows=2, chunk=3)
    step = CachedStep(run, cache)
    past_keys = np.zeros((2, shape.heads, 0, shape.head_dim))
    past_values = past_keys.copy()
    length = 0
    for new in (4, 1, 1, 1, 1):
        x = rng.standard_normal((2, shape.heads, new, shape.head_dim))
        causal = np.tril(np.ones((new, new), dtype=np.int64))
        logical = np.concatenate([np.ones((2, 1, new, length), dtype=np.int64), np.broadcast_to(causal, (2, 1, new, new))], -1)
        logical[1, 0, -1, 0] = 0  # row 1's last query does not see the first position
        got = step({"x": x, "attention_mask": logical})
        # The reference: the same past in a cache whose capacity is exactly its length (no masked slots).
        unpadded = KVCache(shape, rows=2, chunk=1)
        unpadded.reserve(length)
        if length:
            unpadded.append(np.stack([past_keys, past_values])[None].astype(np.float32))
        expected = CachedStep(run, unpadded)({"x": x, "attention_mask": logical})
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
        written_keys = cache.buffers()[0][:, :, :length + new]
        past_keys, past_values = written_keys, cache.buffers()[1][:, :, :length + new]
        length += new
    assert cache.capacity == 9 and cache.lengths.tolist() == [8, 8]
