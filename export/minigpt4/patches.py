"""Every change MiniGPT4's LLaMA needs to trace into a static graph, each with its reason.

The vision encoder, Q-Former and projection trace as they are. The patches keep the eager maths: parity is
checked against the unpatched eager model fed the equivalent logical cache after export, and the token-parity
tests compare whole greedy decodes with paddlenlp's own `generate`.
"""
from __future__ import annotations

import contextlib
import math

import paddle
import paddle.nn.functional as F

from ..core import UnsupportedModel
from ..split_attention import split_attention


def _llama_softmax(scores, mask):
    """paddlenlp 2.8.1's eager `scaled_dot_product_attention` after q/sqrt(d)·kᵀ: + the additive mask (0 or
    finfo.min, from `_prepare_decoder_attention_mask`), float32 softmax, back to the scores' dtype."""
    return F.softmax(scores + mask, axis=-1, dtype="float32").astype(scores.dtype)


def _split_cache_attention(self, hidden_states, position_ids=None, past_key_value=None, attention_mask=None,
                           output_attentions=False, use_cache=False, alibi=None, npu_is_casual=False):
    """`LlamaAttention.forward` over a preallocated cache: `past_key_value` is this layer's (key, value) buffers
    [b, n, capacity, d], read in place (export/split_attention.py), and the cache it returns is only the step's
    own keys and values [b, n, new, d].

    Otherwise paddlenlp 2.8.1's plain path step for step (q/k/v projections, rotary applied before caching,
    o_proj); `check_supported` refuses the configs that take its other branches. Its shape checks are gone with
    its `scaled_dot_product_attention`: they compare `attn_weights.shape` with a Python list, and under
    to_static `bool(Tensor)` raises.
    """
    from paddlenlp.transformers.llama.modeling import apply_rotary_pos_emb

    key_buffer, value_buffer = past_key_value
    shape = [0, 0, self.num_heads, self.head_dim]  # 0 copies the input's dim: batch and length stay dynamic
    query = self.q_proj(hidden_states).reshape(shape=shape)
    key = self.k_proj(hidden_states).reshape(shape=shape)
    value = self.v_proj(hidden_states).reshape(shape=shape)
    # The whole cos/sin table: position_ids index it (eager cuts it to past + new first; the rows read are the same).
    cos, sin = self.rotary_emb(value, seq_len=None)
    query, key = apply_rotary_pos_emb(query, key, cos, sin, position_ids)
    # [b, s, n, d] → [b, n, s, d], the buffers' layout (the new positions only: small)
    query, key, value = (t.transpose([0, 2, 1, 3]) for t in (query, key, value))
    context = split_attention(query / math.sqrt(self.head_dim), key_buffer, value_buffer, key, value,
                              attention_mask, _llama_softmax)
    output = self.o_proj(context.transpose([0, 2, 1, 3]).reshape([0, 0, self.num_heads * self.head_dim]))
    return (output, (key, value)) if use_cache else output


def _silu_gate(x, y=None):
    """swiglu written out: paddle2onnx has no converter for `pd_op.swiglu` and abort()s the process."""
    if y is None:
        x, y = paddle.chunk(x, chunks=2, axis=-1)
    return F.silu(x) * y


def check_supported(llama_config) -> None:
    """Refuse configs whose attention the patched path would compute differently."""
    for flag in ("alibi", "use_flash_attention", "sequence_parallel", "use_fused_rope", "use_long_sequence_strategies",
                 "fuse_attention_qkv"):
        if getattr(llama_config, flag, False):
            raise UnsupportedModel(f"LLaMA config sets {flag}=True: the exported step supports the plain path only")
    if getattr(llama_config, "rope_scaling_type", None):
        raise UnsupportedModel("LLaMA config sets rope_scaling_type: only the plain rotary embedding is exported")
    if not getattr(llama_config, "rope", True):
        raise UnsupportedModel("LLaMA config sets rope=False: the exported step applies the rotary embedding")
    heads, kv_heads = llama_config.num_attention_heads, getattr(llama_config, "num_key_value_heads", None)
    if kv_heads not in (None, heads):
        raise UnsupportedModel(f"LLaMA config has {kv_heads} key/value heads for {heads} query heads: the exported "
                               "step supports multi-head attention only (no GQA/MQA)")
    if getattr(llama_config, "tensor_parallel_degree", -1) > 1:
        raise UnsupportedModel("LLaMA config sets tensor_parallel_degree > 1: export a single-device model")


def register_rotary_buffers(llama) -> None:
    """Make each layer's precomputed rotary cos/sin tables buffers.

    LlamaRotaryEmbedding keeps them as plain tensor attributes; `paddle.jit.save` refuses a program that
    captures non-buffer tensors, and as persistable buffers they are saved with the parameters.
    """
    for layer in llama.sublayers():
        if hasattr(layer, "cos_cached") and hasattr(layer, "inv_freq"):
            for name in ("cos_cached", "sin_cached"):
                value = getattr(layer, name)
                if name not in layer._buffers:
                    delattr(layer, name)
                    layer.register_buffer(name, value, persistable=True)


@contextlib.contextmanager
def llama_traceable():
    """While tracing: the split-cache attention, and swiglu written out (the parity reference runs unpatched)."""
    from paddlenlp.transformers.llama import modeling

    saved = modeling.LlamaAttention.forward, modeling.swiglu
    modeling.LlamaAttention.forward, modeling.swiglu = _split_cache_attention, _silu_gate
    try:
        yield
    finally:
        modeling.LlamaAttention.forward, modeling.swiglu = saved
