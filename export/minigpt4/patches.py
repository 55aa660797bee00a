"""Every change MiniGPT4's LLaMA needs to trace into a static graph, each with its reason.

The vision encoder, Q-Former and projection trace as they are. The patches keep the eager maths: parity is
checked against the unpatched eager model after export, and the token-parity tests compare whole greedy
decodes with paddlenlp's own `generate`.
"""
from __future__ import annotations

import contextlib
import math

import paddle
import paddle.nn.functional as F

from ..core import UnsupportedModel


def _attention(query_states, config, key_states, value_states, attention_mask, output_attentions, alibi=None,
               sequence_parallel=False, reshard_layer=None, npu_is_casual=False):
    """paddlenlp 2.8.1's eager (non-flash) `scaled_dot_product_attention`, without its shape checks.

    Those checks compare `attn_weights.shape` with a Python list: under to_static the dims are tensors and
    `bool(Tensor)` raises. The maths below is the original's, op for op: [b, s, n, d] → [b, n, s, d],
    q/sqrt(d) @ kᵀ, + mask, float32 softmax, @ v, back to [b, s, n*d]. The mask arrives as [b, 1, q, kv].
    """
    num_heads, head_dim = query_states.shape[2], query_states.shape[3]
    query_states = paddle.transpose(query_states, [0, 2, 1, 3])
    key_states = paddle.transpose(key_states, [0, 2, 1, 3])
    value_states = paddle.transpose(value_states, [0, 2, 1, 3])
    attn_weights = paddle.matmul(query_states / math.sqrt(head_dim), key_states.transpose([0, 1, 3, 2]))
    attn_weights = attn_weights + attention_mask
    attn_weights = F.softmax(attn_weights, axis=-1, dtype="float32").astype(query_states.dtype)
    attn_output = paddle.matmul(attn_weights, value_states).transpose([0, 2, 1, 3])
    # 0 copies the input's dim: batch and length stay dynamic.
    return attn_output.reshape([0, 0, num_heads * head_dim])


def _silu_gate(x, y=None):
    """swiglu written out: paddle2onnx has no converter for `pd_op.swiglu` and abort()s the process."""
    if y is None:
        x, y = paddle.chunk(x, chunks=2, axis=-1)
    return F.silu(x) * y


def check_supported(llama_config) -> None:
    """Refuse configs whose attention the patched path would compute differently."""
    for flag in ("alibi", "use_flash_attention", "sequence_parallel", "use_fused_rope", "use_long_sequence_strategies"):
        if getattr(llama_config, flag, False):
            raise UnsupportedModel(f"LLaMA config sets {flag}=True: the exported step supports the plain path only")
    if getattr(llama_config, "rope_scaling_type", None):
        raise UnsupportedModel("LLaMA config sets rope_scaling_type: only the plain rotary embedding is exported")


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
    """Swap the two LLaMA functions that do not trace for their op-for-op equivalents while tracing."""
    from paddlenlp.transformers.llama import modeling

    saved = modeling.scaled_dot_product_attention, modeling.swiglu
    modeling.scaled_dot_product_attention, modeling.swiglu = _attention, _silu_gate
    try:
        yield
    finally:
        modeling.scaled_dot_product_attention, modeling.swiglu = saved
