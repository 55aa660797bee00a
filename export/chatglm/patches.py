"""Every change ChatGLM v1 needs to trace into a correct static graph, each with its reason.

Parity is checked against the unpatched eager model after export, and the token-parity tests compare whole
decodes with paddlenlp's own `generate`.
"""
from __future__ import annotations

import contextlib
import math

import paddle


def reset_rotary_cache(transformer) -> None:
    """Forget the rotary cos/sin tables a previous forward left behind.

    `RotaryEmbeddings` builds them lazily up to the largest position seen. After an eager forward they are
    registered buffers of that fixed length (and `max_seq_len_cached` a tensor): traced so, the graph would
    carry tables too short for longer prompts. Reset, tracing takes the "build" branch and the graph computes
    them from `position_ids` on every call.
    """
    rotary = transformer.rotary_embeddings
    for name in ("max_seq_len_cached", "cos_cached", "sin_cached"):
        rotary._buffers.pop(name, None)
        rotary.__dict__.pop(name, None)
    rotary.max_seq_len_cached, rotary.cos_cached, rotary.sin_cached = -1, None, None


def _tanh_gelu(x):
    """GELU's tanh approximation written out: paddle2onnx exports `gelu(approximate=True)` as the erf GELU
    (logits off by ~4e-3); the explicit formula converts op for op (~7e-5)."""
    return 0.5 * x * (1.0 + paddle.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * paddle.pow(x, 3))))


@contextlib.contextmanager
def chatglm_traceable(transformer):
    """Trace with a fresh rotary cache and the explicit tanh-GELU; reset the cache again afterwards, since
    tracing assigns traced tensors to it and a later eager call would reuse them."""
    from paddlenlp.transformers.chatglm.modeling import ChatGLMMLP

    # Each MLP bound its activation at construction (`self.activation = self.gelu`): swap the instances'.
    mlps = [layer for layer in transformer.sublayers() if isinstance(layer, ChatGLMMLP)]
    saved = [mlp.activation for mlp in mlps]
    reset_rotary_cache(transformer)
    for mlp in mlps:
        mlp.activation = _tanh_gelu
    try:
        yield
    finally:
        for mlp, activation in zip(mlps, saved):
            mlp.activation = activation
        reset_rotary_cache(transformer)
