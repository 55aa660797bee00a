"""The KV cache as the exported step graphs read it, and the logical cache their eager reference is fed.

Graph side (names and shapes: `client/musicgen_client/interface.py`; the owner of the buffers:
`musicgen/llm/kv_cache.py`): per layer `past_key_<i>`, `past_value_<i>` [rows, heads, capacity, head_dim], read
in place (export/split_attention.py); `attention_mask` [rows, 1, new, capacity + new] masks the slots a row has
not written; `new_key_values` [layers, 2, rows, heads, new, head_dim] is all that comes back.

Eager side: paddlenlp's models take the logical cache — each layer's written positions only, in the model's own
per-layer layout (`KVLayout`) — and return it grown by the new positions. Parity feeds the graph a cache laid out
by the serving code's own `KVCache`, with garbage in the unwritten slots (so a slot the mask fails to hide shows),
and the eager model the same written positions without them (`eager_reference`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from musicgen.llm.feeds import KVShape
from musicgen.llm.kv_cache import ATTENTION_MASK, KVCache, cache_input_names

# Axis names of one key (or value) tensor as the graphs take it.
GRAPH_AXES = ("batch", "heads", "seq", "head_dim")


@dataclass(frozen=True)
class KVLayout:
    """A model's per-layer key/value axis order, e.g. LLaMA ("batch", "seq", "heads", "head_dim")."""

    axes: Tuple[str, str, str, str]

    @property
    def to_model(self) -> List[int]:
        """Permutation taking a graph-layout tensor to the model's layout."""
        return [GRAPH_AXES.index(a) for a in self.axes]

    @property
    def to_graph(self) -> List[int]:
        return [self.axes.index(a) for a in GRAPH_AXES]

    def unstack(self, past, num_layers: int) -> List[tuple]:
        """[layers, 2, batch, heads, seq, head_dim] (paddle) → per-layer (key, value) in the model's layout."""
        return [(past[i, 0].transpose(self.to_model), past[i, 1].transpose(self.to_model)) for i in range(num_layers)]

    def stack(self, caches: Sequence[tuple]):
        """Per-layer (key, value) in the model's layout → [layers, 2, batch, heads, seq, head_dim] (paddle)."""
        import paddle

        return paddle.stack([
            paddle.stack([key.transpose(self.to_graph), value.transpose(self.to_graph)]) for key, value in caches
        ])


def laid_out_case(rng: np.random.Generator, kv: KVShape, rows: int, written: int, capacity: int,
                  logical_mask: np.ndarray) -> Dict[str, np.ndarray]:
    """The cache feeds and laid-out mask of a step over `written` random positions per row, in buffers of
    `capacity` slots (`KVCache` lays them out, as decoding does) whose unwritten slots hold large garbage.

    `logical_mask` is the step's [rows, 1, new, written + new] mask (1 = attend)."""
    cache = KVCache(kv, rows, chunk=max(capacity, 1))
    if written:
        cache.reserve(written)
        cache.append(rng.standard_normal((kv.layers, 2, rows, kv.heads, written, kv.head_dim)).astype(np.float32))
    for buffer in cache.buffers():
        buffer[:, :, written:] = 100 * rng.standard_normal(buffer[:, :, written:].shape)
    return {ATTENTION_MASK: cache.layout_mask(logical_mask), **cache.feeds()}


def logical_view(feeds: Dict[str, np.ndarray], layers: int) -> Tuple[np.ndarray, np.ndarray]:
    """Graph feeds → (the logical cache [layers, 2, rows, heads, written, head_dim], its mask [rows, 1, new,
    written + new]). Rows share one written length here: the slots past the last one any row attends to."""
    mask = feeds[ATTENTION_MASK]
    new = mask.shape[2]
    capacity = mask.shape[3] - new
    attended = np.flatnonzero(mask[..., :capacity].any(axis=(0, 1, 2)))
    written = int(attended[-1]) + 1 if attended.size else 0
    names = cache_input_names(layers)
    past = np.stack([[feeds[key][:, :, :written], feeds[value][:, :, :written]]
                     for key, value in zip(names[::2], names[1::2])])
    return past, np.concatenate([mask[..., :written], mask[..., capacity:]], axis=-1)


# eager_step(token feeds as paddle Tensors, logical mask, per-layer cache in the model's layout) → (logits, caches)
EagerStep = Callable[[Dict[str, object], object, List[tuple]], Tuple[object, Sequence[tuple]]]


def eager_reference(eager_step: EagerStep, layout: KVLayout, layers: int) -> Callable[[Dict[str, np.ndarray]], List[np.ndarray]]:
    """What the graph must output for given graph feeds, computed by the unpatched eager model on the logical
    cache: (logits, the new positions of the cache it returns)."""
    import paddle

    def run(feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        past, mask = logical_view(feeds, layers)
        cache_names = set(cache_input_names(layers)) | {ATTENTION_MASK}
        tokens = {name: paddle.to_tensor(value) for name, value in feeds.items() if name not in cache_names}
        with paddle.no_grad():
            logits, caches = eager_step(tokens, paddle.to_tensor(mask), layout.unstack(paddle.to_tensor(past), layers))
            present = layout.stack(caches).numpy()
        return [logits.numpy(), present[:, :, :, :, past.shape[4]:]]

    return run
