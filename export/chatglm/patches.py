"""Every change ChatGLM v1 needs to trace into a correct static graph, each with its reason.

Parity is checked against the unpatched eager model fed the equivalent logical cache after export, and the
token-parity tests compare whole decodes with paddlenlp's own `generate`.
"""
from __future__ import annotations

import contextlib
import math

import paddle
import paddle.nn.functional as F

from ..split_attention import split_attention


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


def _split_cache_attention(self, hidden_states, attention_mask, position_ids, use_cache=False, cache=None,
                           layer_id=0, rotary_embeds=None):
    """`ChatGLMAttention.forward` over a preallocated cache: `cache` is this layer's (key, value) buffers
    [b, n, capacity, d], read in place (export/split_attention.py), and the cache it returns is only the step's
    own keys and values [b, n, new, d].

    Otherwise paddlenlp 2.8.1's non-flash path step for step: fused qkv projection, the 2-D rotary (position and
    block halves) applied before caching, q / (sqrt(d) · (layer_id + 1)) when attention_scale (the
    query_key_layer_scaling_coeff), scores cast to float32 and multiplied back by that coefficient, + the
    additive mask (0 or finfo.min, from `ChatGLMStack.forward`), float32 softmax, dense.
    """
    mixed = self.query_key_value(hidden_states).reshape([0, 0, self.num_attention_heads, 3 * self.attention_head_size])
    query, key, value = paddle.split(mixed, 3, axis=-1)  # [s, b, n, d]
    query, key = self._core_attention(query, key, position_ids, rotary_embeds)
    coeff = float(layer_id) + 1.0
    if self.attention_scale:
        query = (query / (math.sqrt(self.attention_head_size) * coeff)).astype(self.default_dtype)

    def softmax(scores, mask):
        return F.softmax(scores.astype("float32") * coeff + mask, axis=-1).astype(self.default_dtype)

    # [s, b, n, d] → [b, n, s, d], the buffers' layout (the new positions only: small)
    query, key, value = (t.transpose([1, 2, 0, 3]) for t in (query, key, value))
    key_buffer, value_buffer = cache
    context = split_attention(query, key_buffer, value_buffer, key, value, attention_mask, softmax)
    # [b, n, s, d] → [s, b, n·d] (0 copies the input's dim: length and batch stay dynamic)
    context = context.transpose([2, 0, 1, 3]).reshape([0, 0, self.num_attention_heads * self.attention_head_size])
    return self.dense(context), ((key, value) if use_cache else None), None


@contextlib.contextmanager
def chatglm_traceable(transformer):
    """Trace with a fresh rotary cache, the explicit tanh-GELU and the split-cache attention; reset the rotary
    cache again afterwards, since tracing assigns traced tensors to it and a later eager call would reuse them."""
    from paddlenlp.transformers.chatglm.modeling import ChatGLMAttention, ChatGLMMLP

    # Each MLP bound its activation at construction (`self.activation = self.gelu`): swap the instances'.
    mlps = [layer for layer in transformer.sublayers() if isinstance(layer, ChatGLMMLP)]
    saved = [mlp.activation for mlp in mlps]
    saved_attention = ChatGLMAttention.forward
    reset_rotary_cache(transformer)
    for mlp in mlps:
        mlp.activation = _tanh_gelu
    ChatGLMAttention.forward = _split_cache_attention
    try:
        yield
    finally:
        ChatGLMAttention.forward = saved_attention
        for mlp, activation in zip(mlps, saved):
            mlp.activation = activation
        reset_rotary_cache(transformer)
