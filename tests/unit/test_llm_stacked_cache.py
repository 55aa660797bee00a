"""The bridge from today's stacked-cache step graphs to the per-layer cache signature: the same logits and new
positions as a graph over the buffers, and the graph sees the slots up to the longest row, not the capacity."""
import numpy as np

from musicgen.llm.kv_cache import CachedStep, KVCache, cache_input_names
from musicgen.llm.stacked_cache import stacked_graph_run
from musicgen_client import interface as api
from test_llm_engine import SHAPE, ToyFeeds, toy_graph

PAST = api.PAST_KEY_VALUES.name


def stacked_toy(seen_lengths):
    """The toy graph as today's graphs take and give the cache: past_key_values in, present_key_values out."""
    per_layer = toy_graph()

    def step(feeds):
        past = feeds[PAST]  # [layers, 2, rows, heads, past, d]
        seen_lengths.append(past.shape[4])
        buffers = dict(zip(cache_input_names(SHAPE.layers), (past[i // 2, i % 2] for i in range(2 * SHAPE.layers))))
        logits, new = per_layer({k: v for k, v in feeds.items() if k != PAST} | buffers)
        return logits, np.concatenate([past, new], axis=4)

    return step


def test_the_bridge_gives_the_per_layer_graph_s_outputs_over_only_the_used_slots():
    seen = []
    bridged = CachedStep(stacked_graph_run(stacked_toy(seen), SHAPE.layers), KVCache(SHAPE, rows=1, chunk=16))
    direct = CachedStep(toy_graph(), KVCache(SHAPE, rows=1, chunk=16))
    feeds_a, feeds_b = ToyFeeds([1, 2, 3]), ToyFeeds([1, 2, 3])
    np.testing.assert_array_equal(bridged(feeds_a.prefill()), direct(feeds_b.prefill()))
    for token in (4, 5, 6):
        got = bridged(feeds_a.decode(np.array([[token]])))
        np.testing.assert_allclose(got, direct(feeds_b.decode(np.array([[token]]))), rtol=1e-6)
    np.testing.assert_allclose(bridged.cache.buffers()[3][:, :, :6], direct.cache.buffers()[3][:, :, :6], rtol=1e-6)
    assert bridged.cache.capacity == 16 and seen == [0, 3, 4, 5]  # the past fed: what is written, not 16 slots
