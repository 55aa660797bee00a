"""ChatGLM v1's step graph as an exportable Layer: token ids, 2-D positions and a 4-D mask in, last logits out.

ChatGLM decodes from token ids (no image embeddings to splice in), so one graph serves prefill and decode.
Its inputs are the ones paddlenlp's `generate` builds (the tokenizer's prefix-LM mask and [position, block
position] ids, then one row/column more per step); the KV cache crosses the boundary as one stacked tensor.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import numpy as np
import paddle

from musicgen.llm.feeds import KVShape
from musicgen_client import interface as api

from ..core import Component, UnsupportedModel
from ..kv_cache import KVLayout, random_past
from . import patches

# paddlenlp's ChatGLM keeps each layer's key and value sequence-first: [seq, batch, heads, head_dim].
CHATGLM_KV = KVLayout(("seq", "batch", "heads", "head_dim"))


class ChatGLMStep(paddle.nn.Layer):
    def __init__(self, model):
        super().__init__()
        self.chatglm = model.chatglm
        self.lm_head = model.lm_head
        self.num_layers = model.config.num_hidden_layers

    def forward(self, input_ids, position_ids, attention_mask, past_key_values):
        hidden, caches = self.chatglm(
            input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
            cache=CHATGLM_KV.unstack(past_key_values, self.num_layers), use_cache=True, return_dict=False,
        )
        logits = self.lm_head(hidden[-1:])  # hidden is [seq, batch, hidden]: the last position only
        return logits[0].astype("float32"), CHATGLM_KV.stack(caches)


def check_supported(config) -> None:
    wanted = {"position_encoding_2d": True, "activation": "gelu", "pre_seq_len": None, "use_flash_attention": False,
              "use_long_sequence_strategies": False, "quantization_bit": 0}
    for key, value in wanted.items():
        if getattr(config, key, value) != value:
            raise UnsupportedModel(f"ChatGLM config sets {key}={getattr(config, key)!r}: the exported step "
                                    f"reproduces {key}={value!r} only (ChatGLM-6B v1)")


def load_model(weights: Path):
    """ChatGLM in float32 (the original Taskflow loads float16 for GPUs; CPU needs float32). low_cpu_mem_usage:
    the weights go straight into the layers instead of into a randomly initialised copy first (2× at load)."""
    from paddlenlp.transformers import ChatGLMForCausalLM

    model = ChatGLMForCausalLM.from_pretrained(str(weights), dtype="float32", low_cpu_mem_usage=True)
    model.eval()
    check_supported(model.config)
    return model


def _load_step(weights: Path) -> ChatGLMStep:
    return ChatGLMStep(load_model(weights))


def _dims(weights: Path):
    cfg = json.loads((Path(weights) / "config.json").read_text())
    heads = cfg["num_attention_heads"]
    return cfg["num_hidden_layers"], heads, cfg["hidden_size"] // heads, cfg["vocab_size"]


def _prefill_feeds(weights: Path, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """A prefill shaped as ChatGLMTokenizer builds it: 8 context tokens ending in [gMASK], then <sop> and one
    more; the context sees itself both ways, the rest is causal; positions after the context stay at the mask's
    position while block positions count 1, 2, ..."""
    layers, heads, head_dim, vocab = _dims(weights)
    length, context = 10, 8
    mask = np.tril(np.ones((length, length), dtype="int64"))
    mask[:, :context] = 1
    positions = np.arange(length)
    positions[context:] = context - 1
    blocks = np.concatenate([np.zeros(context, dtype="int64"), np.arange(1, length - context + 1)])
    return {
        "input_ids": rng.integers(0, vocab, size=(1, length)).astype("int64"),
        "position_ids": np.stack([positions, blocks])[None].astype("int64"),
        "attention_mask": mask[None, None],
        "past_key_values": KVShape(layers, heads, head_dim).empty(1),
    }


def _decode_feeds(weights: Path, rng: np.random.Generator) -> Dict[str, Dict[str, np.ndarray]]:
    """A decode step of a batch of two over a 9-position cache."""
    layers, heads, head_dim, vocab = _dims(weights)
    past = 9
    return {"decode": {
        "input_ids": rng.integers(0, vocab, size=(2, 1)).astype("int64"),
        "position_ids": np.array([[[7], [3]], [[7], [3]]], dtype="int64"),
        "attention_mask": np.ones((2, 1, 1, past + 1), dtype="int64"),
        "past_key_values": random_past(rng, layers, 2, heads, past, head_dim),
    }}


COMPONENTS = {
    api.CHATGLM_LLM_STEP: Component(
        api.COMPONENTS_BY_NAME[api.CHATGLM_LLM_STEP], _load_step, _prefill_feeds, 1e-4,
        trace_context=lambda step: patches.chatglm_traceable(step.chatglm.transformer), more_cases=_decode_feeds,
    ),
}
