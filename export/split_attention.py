"""Attention of a step's new positions over a preallocated KV cache plus the step's own keys, without
concatenating the cache: the one attention every exported LLM step graph traces (both families' patches call it).

paddlenlp's eager attention concatenates the past keys/values with the new ones and attends over the result, a
copy of the whole cache per layer per token. Here the buffers are read where they are:

    scores = [ q·K_bufferᵀ | q·K_newᵀ ]          [rows, heads, new, capacity + new]   (small: new is 1 per decode)
    probs  = the model's own scaling, additive mask and softmax over those scores, as one softmax
    out    = probs[..., :capacity]·V_buffer + probs[..., capacity:]·V_new

The same sums as the eager path in another order (parity within float rounding). Slots of the buffer a row has
not written hold stale or zero values and are masked out by the laid-out mask (`musicgen.llm.kv_cache`): the
model's mask fill value drives their probability to exactly 0, so they never reach the output. All tensors are
[rows, heads, length, head_dim].
"""
from __future__ import annotations

from typing import Callable

import paddle

# The model's part: scaled scores + additive mask → probabilities (its dtype handling included).
Normalize = Callable[[paddle.Tensor, paddle.Tensor], paddle.Tensor]


def split_attention(query, key_buffer, value_buffer, key_new, value_new, mask, normalize: Normalize):
    """Context [rows, heads, new, head_dim] of `query` (already scaled as the model scales it) over the buffer's
    `capacity` slots and the step's own `new` positions; `mask` is the additive mask [rows, 1, new, capacity + new]."""
    capacity = paddle.shape(key_buffer)[2]
    scores = paddle.concat([
        paddle.matmul(query, key_buffer, transpose_y=True),
        paddle.matmul(query, key_new, transpose_y=True),
    ], axis=-1)
    probs = normalize(scores, mask)
    past_probs, new_probs = probs[:, :, :, :capacity], probs[:, :, :, capacity:]
    # No cast of the buffers here: a cast would be a copy of the cache (the graphs are float32 throughout).
    return paddle.matmul(past_probs, value_buffer) + paddle.matmul(new_probs, value_new)
