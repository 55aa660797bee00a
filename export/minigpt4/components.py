"""MiniGPT4's three graphs as exportable Layers: image → LLM-space embeddings, token embedding, one LLaMA step.

The split follows what paddlenlp's `MiniGPT4ForConditionalGeneration.generate` does: the image goes through
ViT → Q-Former (query tokens) → language projection once; the prompt's tokens are embedded and concatenated
around those image embeddings; LLaMA then decodes from `inputs_embeds`, one token per step with a KV cache.
Decode steps feed back an embedded token, hence the separate embedding graph. Tensor names come from the
served interface; the step reads per-layer cache buffers and returns only its new positions (export/kv_cache.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import paddle

from musicgen.llm.feeds import KVShape
from musicgen_client import interface as api

from ..core import Component, read_config
from ..kv_cache import KVLayout, eager_reference, laid_out_case
from . import patches

# paddlenlp's LLaMA keeps each layer's key and value as [batch, seq, heads, head_dim].
LLAMA_KV = KVLayout(("batch", "seq", "heads", "head_dim"))


class ImageEncoder(paddle.nn.Layer):
    """pixel_values → image_embeds: `MiniGPT4ForConditionalGeneration.encode_images` (whose no_grad wrapper
    does not trace), step for step."""

    def __init__(self, model):
        super().__init__()
        self.vision_model = model.vision_model
        self.query_tokens = model.query_tokens
        self.qformer = model.qformer
        self.language_projection = model.language_projection

    def forward(self, pixel_values):
        image_embeds = self.vision_model(pixel_values, return_dict=True).last_hidden_state
        image_attention_mask = paddle.ones(image_embeds.shape[:-1], dtype="int64")
        query_tokens = self.query_tokens.expand([image_embeds.shape[0], -1, -1])
        query_output = self.qformer(
            query_embeds=query_tokens, encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_attention_mask, return_dict=True,
        ).last_hidden_state
        return self.language_projection(query_output)


class EmbedTokens(paddle.nn.Layer):
    def __init__(self, model):
        super().__init__()
        self.embed_tokens = model.language_model.llama.embed_tokens

    def forward(self, input_ids):
        return self.embed_tokens(input_ids)


class LlamaStep(paddle.nn.Layer):
    """One LLaMA forward from embeddings over a preallocated KV cache: logits of the last position and the
    step's new keys and values [layers, 2, batch, heads, new, head_dim].

    `past` is the per-layer buffers (past_key_0, past_value_0, ...) [batch, heads, capacity, head_dim]; each layer
    reads its pair in place through the split-cache attention, which is what `patches.llama_traceable` installs
    while tracing (the eager model's attention concatenates instead). The mask comes in 4-D ([batch, 1, new,
    capacity + new], 1 = attend): LLaMA then uses it as given, while a 2-D mask would send it through a
    `seq_len > 1` Python branch that a static graph cannot take per call. (`LlamaModel.forward` reads a "cache
    length" off dim 1 of the first key buffer — heads, in this layout — only to build the masks it is not asked
    for here.)
    """

    def __init__(self, model):
        super().__init__()
        self.llama = model.language_model.llama
        self.lm_head = model.language_model.lm_head
        self.num_layers = model.config.text_config.num_hidden_layers

    def forward(self, inputs_embeds, attention_mask, position_ids, past):
        out = self.llama(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask.astype("bool"), position_ids=position_ids,
            past_key_values=list(zip(past[::2], past[1::2])), use_cache=True, return_dict=True,
        )
        new_key_values = paddle.stack([paddle.stack([key, value]) for key, value in out.past_key_values])
        return self.logits(out.last_hidden_state), new_key_values

    def logits(self, hidden):
        return self.lm_head(hidden[:, -1:, :])[:, 0, :].astype("float32")

    def eager(self, tokens, mask, caches):
        """The unpatched model on the logical cache (the parity reference): logits and the grown caches."""
        out = self.llama(inputs_embeds=tokens["inputs_embeds"], attention_mask=mask.astype("bool"),
                         position_ids=tokens["position_ids"], past_key_values=caches, use_cache=True, return_dict=True)
        return self.logits(out.last_hidden_state), out.past_key_values


def load_model(weights: Path):
    """The whole MiniGPT4 in float32 (paddlenlp's defaults load ViT and LLaMA in float16: CPU needs float32).
    Not low_cpu_mem_usage: MiniGPT4's ViT computes with its parameters in __init__, which lazy creation refuses; a
    sharded checkpoint still loads a shard at a time into the built model."""
    from paddlenlp.transformers import MiniGPT4ForConditionalGeneration

    model = MiniGPT4ForConditionalGeneration.from_pretrained(
        str(weights), vit_dtype="float32", qformer_dtype="float32", llama_dtype="float32",
    )
    model.eval()
    return model


def _load_step(weights: Path) -> LlamaStep:
    model = load_model(weights)
    patches.check_supported(model.config.text_config)
    patches.register_rotary_buffers(model.language_model.llama)
    return LlamaStep(model)


def _llm_dims(weights: Path):
    text = read_config(weights)["text_config"]
    heads = text["num_attention_heads"]
    return text["num_hidden_layers"], heads, text["hidden_size"] // heads, text["hidden_size"], text["vocab_size"]


def _sample_pixels(weights: Path, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    size = read_config(weights)["vision_config"]["image_size"]
    return {"pixel_values": rng.standard_normal((2, 3, size, size)).astype("float32")}


def _sample_ids(weights: Path, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    vocab = _llm_dims(weights)[-1]
    return {"input_ids": rng.integers(0, vocab, size=(2, 7)).astype("int64")}


def _kv(weights: Path) -> KVShape:
    layers, heads, head_dim, _, _ = _llm_dims(weights)
    return KVShape(layers, heads, head_dim)


def _prefill_feeds(weights: Path, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """A prefill as `generate(inputs_embeds=...)` runs it: causal mask, every position at 0, an empty cache."""
    hidden = _llm_dims(weights)[3]
    length = 12
    causal = np.tril(np.ones((length, length), dtype="int64"))[None, None]
    return {
        "inputs_embeds": rng.standard_normal((1, length, hidden)).astype("float32"),
        "position_ids": np.zeros((1, length), dtype="int64"),
        **laid_out_case(rng, _kv(weights), rows=1, written=0, capacity=0, logical_mask=causal),
    }


def _decode_feeds(weights: Path, rng: np.random.Generator) -> Dict[str, Dict[str, np.ndarray]]:
    """A decode step of a batch of two over 9 written positions in 16-slot buffers (garbage in the other 7),
    one row with a masked-out written position."""
    hidden = _llm_dims(weights)[3]
    written = 9
    mask = np.ones((2, 1, 1, written + 1), dtype="int64")
    mask[1, ..., 0] = 0
    return {"decode": {
        "inputs_embeds": rng.standard_normal((2, 1, hidden)).astype("float32"),
        "position_ids": np.full((2, 1), 3, dtype="int64"),
        **laid_out_case(rng, _kv(weights), rows=2, written=written, capacity=16, logical_mask=mask),
    }}


def _reference(step: LlamaStep):
    return eager_reference(step.eager, LLAMA_KV, step.num_layers)


COMPONENTS = {
    api.MINIGPT4_IMAGE_ENCODER: Component(
        api.COMPONENTS_BY_NAME[api.MINIGPT4_IMAGE_ENCODER], lambda w: ImageEncoder(load_model(w)), _sample_pixels, 1e-4,
    ),
    api.MINIGPT4_EMBED_TOKENS: Component(
        api.COMPONENTS_BY_NAME[api.MINIGPT4_EMBED_TOKENS], lambda w: EmbedTokens(load_model(w)), _sample_ids, 1e-6,
    ),
    api.MINIGPT4_LLM_STEP: Component(
        api.COMPONENTS_BY_NAME[api.MINIGPT4_LLM_STEP], _load_step, _prefill_feeds, 1e-4,
        trace_context=lambda _step: patches.llama_traceable(), more_cases=_decode_feeds,
        cache_layers=lambda weights: _kv(weights).layers, reference=_reference,
    ),
}
