"""ChatGLM v1's step graph as an exportable Layer: token ids, 2-D positions and a 4-D mask in, last logits out.

ChatGLM decodes from token ids (no image embeddings to splice in), so one graph serves prefill and decode.
Its inputs are the ones paddlenlp's `generate` builds (the tokenizer's prefix-LM mask and [position, block
position] ids, then one row/column more per step); the KV cache crosses the boundary as one stacked tensor.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import paddle

from musicgen.llm.feeds import KVShape
from musicgen_client import interface as api

from ..core import Component, UnsupportedModel, read_config
from ..kv_cache import KVLayout, eager_reference, laid_out_case
from . import patches

# paddlenlp's ChatGLM keeps each layer's key and value sequence-first: [seq, batch, heads, head_dim].
CHATGLM_KV = KVLayout(("seq", "batch", "heads", "head_dim"))


class ChatGLMStep(paddle.nn.Layer):
    """One ChatGLM forward over a preallocated KV cache: logits of the last position and the step's new keys and
    values [layers, 2, batch, heads, new, head_dim].

    `past` is the per-layer buffers (past_key_0, past_value_0, ...) [batch, heads, capacity, head_dim]; each layer
    reads its pair in place through the split-cache attention, which is what `patches.chatglm_traceable`
    installs while tracing (the eager model's attention concatenates instead).
    """

    def __init__(self, model):
        super().__init__()
        self.chatglm = model.chatglm
        self.lm_head = model.lm_head
        self.num_layers = model.config.num_hidden_layers

    def forward(self, input_ids, position_ids, attention_mask, past):
        hidden, caches = self.chatglm(
            input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
            cache=list(zip(past[::2], past[1::2])), use_cache=True, return_dict=False,
        )
        # hidden is [seq, batch, hidden]: the last position's logits. The product with the tied embedding weight
        # is written with transpose_y: paddlenlp's head, `F.linear(h, weight.T)`, traces to a transpose of the
        # whole [vocab, hidden] weight, which paddle.inference materialized at load and every run again (at real
        # width +2.1 GB each, and seconds). Same product, same numbers (parity below; export/LLM.md).
        logits = paddle.matmul(hidden[-1:], self.lm_head.decoder_weight, transpose_y=True)[0]
        return logits.astype("float32"), paddle.stack([paddle.stack([key, value]) for key, value in caches])

    def eager(self, tokens, mask, caches):
        """The unpatched model on the logical cache (the parity reference): logits and the grown caches."""
        hidden, caches = self.chatglm(input_ids=tokens["input_ids"], position_ids=tokens["position_ids"],
                                      attention_mask=mask, cache=caches, use_cache=True, return_dict=False)
        return self.lm_head(hidden[-1:])[0].astype("float32"), caches


def check_supported(config) -> None:
    wanted = {"position_encoding_2d": True, "activation": "gelu", "pre_seq_len": None, "use_flash_attention": False,
              "use_long_sequence_strategies": False, "quantization_bit": 0}
    if getattr(config, "tensor_parallel_degree", -1) > 1:
        raise UnsupportedModel("ChatGLM config sets tensor_parallel_degree > 1: export a single-device model")
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
    cfg = read_config(weights)
    heads = cfg["num_attention_heads"]
    return cfg["num_hidden_layers"], heads, cfg["hidden_size"] // heads, cfg["vocab_size"]


def _kv(weights: Path) -> KVShape:
    layers, heads, head_dim, _ = _dims(weights)
    return KVShape(layers, heads, head_dim)


def _prefill_feeds(weights: Path, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """A prefill shaped as ChatGLMTokenizer builds it: 8 context tokens ending in [gMASK], then <sop> and one
    more; the context sees itself both ways, the rest is causal; positions after the context stay at the mask's
    position while block positions count 1, 2, ...; an empty cache."""
    vocab = _dims(weights)[3]
    length, context = 10, 8
    mask = np.tril(np.ones((length, length), dtype="int64"))
    mask[:, :context] = 1
    positions = np.arange(length)
    positions[context:] = context - 1
    blocks = np.concatenate([np.zeros(context, dtype="int64"), np.arange(1, length - context + 1)])
    return {
        "input_ids": rng.integers(0, vocab, size=(1, length)).astype("int64"),
        "position_ids": np.stack([positions, blocks])[None].astype("int64"),
        **laid_out_case(rng, _kv(weights), rows=1, written=0, capacity=0, logical_mask=mask[None, None]),
    }


def _decode_feeds(weights: Path, rng: np.random.Generator) -> Dict[str, Dict[str, np.ndarray]]:
    """A decode step of a batch of two over 9 written positions in 16-slot buffers (garbage in the other 7),
    one row with a masked-out written position."""
    vocab = _dims(weights)[3]
    written = 9
    mask = np.ones((2, 1, 1, written + 1), dtype="int64")
    mask[1, ..., 2] = 0
    return {"decode": {
        "input_ids": rng.integers(0, vocab, size=(2, 1)).astype("int64"),
        "position_ids": np.array([[[7], [3]], [[7], [3]]], dtype="int64"),
        **laid_out_case(rng, _kv(weights), rows=2, written=written, capacity=16, logical_mask=mask),
    }}


def _reference(step: ChatGLMStep):
    return eager_reference(step.eager, CHATGLM_KV, step.num_layers)


COMPONENTS = {
    api.CHATGLM_LLM_STEP: Component(
        api.COMPONENTS_BY_NAME[api.CHATGLM_LLM_STEP], _load_step, _prefill_feeds, 1e-4,
        trace_context=lambda step: patches.chatglm_traceable(step.chatglm.transformer), more_cases=_decode_feeds,
        cache_layers=lambda weights: _kv(weights).layers, reference=_reference,
    ),
}
