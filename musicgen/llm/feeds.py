"""Step inputs for each LLM family, as paddlenlp 2.8.1's `generate` builds them: the only model-specific part
of decoding (the loop is `musicgen.generation.generate`).

The feeds carry the step's token inputs and its LOGICAL 4-D int mask [batch, 1, new, past + new] (1 = attend),
never the cache: the cache, and the mask's layout over its buffers, are `musicgen.llm.kv_cache.CachedStep`'s.
The two families differ in what they embed and how they count positions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Sequence

import numpy as np

Feeds = Dict[str, np.ndarray]


@dataclass(frozen=True)
class KVShape:
    """The per-model dims of the KV cache (the rest are rows and positions)."""

    layers: int
    heads: int
    head_dim: int


class LlamaEmbedsFeeds:
    """MiniGPT4's LLaMA decoding from `inputs_embeds`, with paddlenlp 2.8.1's position quirk reproduced.

    `generate(inputs_embeds=...)` starts its `input_ids` as [[bos]] and derives `position_ids` from that
    length: the prefill runs EVERY prompt position at position 0, and decode step t (t tokens generated so
    far) at position t, not prompt_len + t - 1. The original application decodes through exactly this, so the
    served loop must too. The 2-D mask grows by a 1 per step, as `update_model_kwargs_for_generation` does.
    """

    def __init__(self, inputs_embeds: np.ndarray, attention_mask: np.ndarray, embed: Callable[[np.ndarray], np.ndarray],
                 bos_token_id: int):
        self.inputs_embeds = inputs_embeds.astype(np.float32)
        self.mask = attention_mask.astype(np.int64)  # [batch, length], grows per step
        self.embed = embed
        self.bos_token_id = bos_token_id
        self.batch_size = inputs_embeds.shape[0]
        self.prompt_length = inputs_embeds.shape[1]
        self.generated = 0

    def prefill(self) -> Feeds:
        length = self.inputs_embeds.shape[1]
        causal = np.tril(np.ones((length, length), dtype=np.int64))
        return {
            "inputs_embeds": self.inputs_embeds,
            "attention_mask": self.mask[:, None, None, :] * causal[None, None],
            "position_ids": np.zeros((self.batch_size, length), dtype=np.int64),
        }

    def decode(self, next_tokens: np.ndarray) -> Feeds:
        self.generated += 1
        self.mask = np.concatenate([self.mask, np.ones((self.batch_size, 1), dtype=np.int64)], axis=1)
        return {
            "inputs_embeds": self.embed(next_tokens.astype(np.int64)).astype(np.float32),
            "attention_mask": self.mask[:, None, None, :],
            "position_ids": np.full((self.batch_size, 1), self.generated, dtype=np.int64),
        }

    def context_ids(self) -> np.ndarray:
        """What paddlenlp's repetition penalty sees: the [bos] it started from, not the prompt."""
        return np.full((self.batch_size, 1), self.bos_token_id, dtype=np.int64)


def chatglm_prompt_inputs(token_ids: Sequence[Sequence[int]], bos_token_id: int, mask_token_id: int,
                          gmask_token_id: int, pad_token_id: int) -> Feeds:
    """ChatGLMTokenizer's model inputs for encoded prompts (each ending `[gMASK] <sop>`), left-padded to a batch.

    Per row (`ChatGLMTokenizer._pad`): the context (everything before <sop>) attends to itself both ways, the
    rest causally; positions count up to the context's end and then stay at the [MASK]/[gMASK] position,
    while the second ("block") row counts 0 over the context and 1, 2, ... after it.
    """
    width = max(len(ids) for ids in token_ids)
    batch = len(token_ids)
    input_ids = np.full((batch, width), pad_token_id, dtype=np.int64)
    mask = np.zeros((batch, 1, width, width), dtype=np.int64)
    positions = np.zeros((batch, 2, width), dtype=np.int64)
    for row, ids in enumerate(token_ids):
        ids = list(ids)
        length, pad = len(ids), width - len(ids)
        context = ids.index(bos_token_id) if bos_token_id in ids else length
        row_mask = np.tril(np.ones((length, length), dtype=np.int64))
        row_mask[:, :context] = 1
        position = np.arange(length, dtype=np.int64)
        mask_token = mask_token_id if mask_token_id in ids else gmask_token_id
        if mask_token in ids:
            position[context:] = ids.index(mask_token)
        block = np.concatenate([np.zeros(context, dtype=np.int64), np.arange(1, length - context + 1)])
        input_ids[row, pad:] = ids
        mask[row, 0, pad:, pad:] = row_mask
        positions[row, :, pad:] = np.stack([position, block])
    return {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions}


class ChatGLMFeeds:
    """ChatGLM v1 decoding from token ids: each step appends one mask column/row (the new token attends to
    everything its row could see plus itself) and repeats the last position with the block position + 1, as
    `ChatGLMForCausalLM.update_model_kwargs_for_generation` does."""

    def __init__(self, inputs: Feeds):
        self.inputs = inputs
        self.batch_size = inputs["input_ids"].shape[0]
        self.prompt_length = inputs["input_ids"].shape[1]
        self.last_mask_row = inputs["attention_mask"][:, :, -1:, :]  # [batch, 1, 1, kv]
        self.last_position = inputs["position_ids"][:, :, -1:]  # [batch, 2, 1]

    def prefill(self) -> Feeds:
        return dict(self.inputs)

    def decode(self, next_tokens: np.ndarray) -> Feeds:
        ones = np.ones((self.batch_size, 1, 1, 1), dtype=np.int64)
        self.last_mask_row = np.concatenate([self.last_mask_row, ones], axis=-1)
        self.last_position = self.last_position + np.array([0, 1], dtype=np.int64)[None, :, None]
        return {
            "input_ids": next_tokens.astype(np.int64),
            "position_ids": self.last_position,
            "attention_mask": self.last_mask_row,
        }

    def context_ids(self) -> np.ndarray:
        return self.inputs["input_ids"]
