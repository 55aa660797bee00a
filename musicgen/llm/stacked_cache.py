"""Bridge for the step graphs exported today, which take the whole cache stacked and return it grown:

    past_key_values [layers, 2, rows, heads, past, head_dim] in, present_key_values [..., past + new, ...] out.

`stacked_graph_run` makes such a step a raw `GraphRun` over a `KVCache` (per-layer buffers and the laid-out mask
in; logits and the step's new positions out), the signature the per-layer step graphs have natively, so that the
decoding loop, the in-flight engine and their tests are written once against that signature. The buffers' slots
past a row's length are masked, so the stacked graph, given the slots up to the longest row as its past, computes
what it would over the row's positions alone. The price: the buffers are stacked into one tensor and the grown cache
comes back every step, one copy of the cache per token each way. Transitional: delete this module once the step
graphs take the buffers themselves (export/LLM.md, "Where the KV cache lives").
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import numpy as np

from musicgen_client import interface as api

from .kv_cache import ATTENTION_MASK, GraphRun, cache_input_names

StackedStep = Callable[[Dict[str, Any]], Tuple[np.ndarray, Any]]  # feeds with past_key_values → (logits, present)


def _as_numpy(value: Any) -> np.ndarray:
    """An OrtValue or a paddle Tensor (in-process sessions) or a numpy array (served) as numpy."""
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def stacked_graph_run(step: StackedStep, layers: int) -> GraphRun:
    """`step` (a stacked-cache step graph's call) as a raw run over a KVCache's feeds."""
    names = cache_input_names(layers)

    def run(feeds: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
        mask = feeds[ATTENTION_MASK]
        capacity = feeds[names[0]].shape[2]
        # Slots past every row's length are masked for all: leave them out (the graph's work tracks the longest
        # row, not the capacity).
        attended = np.flatnonzero(mask[..., :capacity].any(axis=(0, 1, 2)))
        used = int(attended[-1]) + 1 if attended.size else 0
        buffers = [feeds[name][:, :, :used] for name in names]
        past = np.stack([np.stack(buffers[0::2]), np.stack(buffers[1::2])], axis=1)
        graph_feeds = {name: value for name, value in feeds.items() if name not in names}
        graph_feeds[ATTENTION_MASK] = np.concatenate([mask[..., :used], mask[..., capacity:]], axis=-1)
        logits, present = step(graph_feeds | {api.PAST_KEY_VALUES.name: past})
        return logits, _as_numpy(present)[:, :, :, :, used:]

    return run
