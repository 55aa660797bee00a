"""The one KV-cache layout every exported LLM step graph speaks, and the moves to and from each model's own.

Served layout: ONE FP32 tensor `[layers, 2 (key, value), batch, heads, past_len, head_dim]` in
(`past_key_values`, zero `past_len` for the prefill) and out (`present_key_values`, past + new positions).
One tensor instead of 2 × layers keeps the graph's signature independent of depth and lets the decoding loop
treat the cache as an opaque array. Models keep their own per-layer (key, value) layout; `KVLayout` names the
axis order of one such tensor so the wrapper can transpose in and out. The prefill's empty cache comes from
`musicgen.llm.feeds.KVShape`, as the serving loop builds it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

# Axis names of one key (or value) tensor in the served layout.
SERVED_AXES = ("batch", "heads", "seq", "head_dim")


@dataclass(frozen=True)
class KVLayout:
    """A model's per-layer key/value axis order, e.g. LLaMA ("batch", "seq", "heads", "head_dim")."""

    axes: Tuple[str, str, str, str]

    @property
    def to_model(self) -> List[int]:
        """Permutation taking a served-layout tensor to the model's layout."""
        return [SERVED_AXES.index(a) for a in self.axes]

    @property
    def to_served(self) -> List[int]:
        return [self.axes.index(a) for a in SERVED_AXES]

    def unstack(self, past, num_layers: int) -> List[tuple]:
        """Stacked served tensor → per-layer (key, value) in the model's layout (paddle tensors)."""
        return [(past[i, 0].transpose(self.to_model), past[i, 1].transpose(self.to_model)) for i in range(num_layers)]

    def stack(self, caches: Sequence[tuple]):
        """Per-layer (key, value) in the model's layout → one served tensor (paddle)."""
        import paddle

        return paddle.stack([
            paddle.stack([key.transpose(self.to_served), value.transpose(self.to_served)]) for key, value in caches
        ])


def random_past(rng: np.random.Generator, num_layers: int, batch: int, heads: int, past_len: int,
                head_dim: int) -> np.ndarray:
    """A plausible cache for parity checks of a decode step."""
    return rng.standard_normal((num_layers, 2, batch, heads, past_len, head_dim)).astype(np.float32)
