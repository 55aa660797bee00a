"""Export ChatGLM-6B v1 (prompt → text; the flow asks it for the music prompt) into a model repository: the
step graph and the `chatglm` text-generation model's assets.

Weights (`--from`): a ChatGLMForCausalLM `save_pretrained` folder with its tokenizer, the layout paddlenlp's
Taskflow uses for `THUDM/chatglm-6b` (`$PPNLP_HOME/models/THUDM/chatglm-6b/`, PPNLP_HOME defaulting to
~/.paddlenlp; or the same folder placed under `$PPMIX_HOME/models/THUDM/chatglm-6b/`):

    config.json                  ChatGLMConfig (v1: position_encoding_2d, gelu)
    model_state.pdparams         (or model_state.pdparams.index.json + shards)
    ice_text.model               the sentencepiece model, with tokenizer_config.json

Written (each folder with its config.pbtxt; version folder `1/`):

    <repo>/chatglm_llm_step/1/   model.onnx, paddle/, parity.json (+ model.<precision>.onnx with --precision)
    <repo>/chatglm/1/            model.py, tokenizer/, textgen.json (generation parameters)
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from musicgen.generation import SAMPLING, GenerationConfig
from musicgen.llm import prompts
from musicgen.llm.feeds import KVShape
from musicgen.llm.recipes import TextGenConfig
from musicgen_client import interface as api

from ..core import preset_folder, read_config
from ..precision import write_graph_variants
from ..serving import Serving, export_components, write_stage
from ..textgen import check_files, write_stage_assets
from .presets import PRESETS, build_random_chatglm

logger = logging.getLogger(__name__)

REQUIRED_FILES = ("config.json", "model_state.pdparams|model_state.pdparams.index.json", "ice_text.model",
                  "tokenizer_config.json")


def build_preset(preset: str, weights_root: Path, layers: Optional[int] = None) -> Path:
    return build_random_chatglm(PRESETS[preset], Path(weights_root) / preset_folder("chatglm", preset, layers), layers)


def chatglm_config(weights: Path, tokenizer) -> TextGenConfig:
    """paddlenlp's ChatGLM Taskflow defaults, as the original calls it (musicgen.llm.prompts)."""
    cfg = read_config(weights)
    heads = cfg["num_attention_heads"]
    generation = GenerationConfig(
        max_new_tokens=prompts.CHATGLM_MAX_NEW_TOKENS, decode_strategy=SAMPLING, top_k=prompts.CHATGLM_TOP_K,
        top_p=1.0, temperature=1.0, repetition_penalty=1.0, stop_token_ids=(tokenizer.eos_token_id,),
        pad_token_id=tokenizer.pad_token_id,
    )
    return TextGenConfig(
        # The prompt as given: the flow (musicgen_client.flow) writes the question.
        prompt_template="{}", generation=generation, max_input_tokens=prompts.CHATGLM_MAX_INPUT_TOKENS,
        kv=KVShape(layers=cfg["num_hidden_layers"], heads=heads, head_dim=cfg["hidden_size"] // heads),
        # What the Taskflow allows: a (truncated) prompt plus its default budget of new tokens. ChatGLM's 2-D
        # positions stay within each bound on its own (position ≤ prompt, block position ≤ new + 1).
        max_context_tokens=prompts.CHATGLM_MAX_INPUT_TOKENS + prompts.CHATGLM_MAX_NEW_TOKENS,
    )


def write_chatglm_assets(weights: Path, repository: Path) -> None:
    from paddlenlp.transformers import ChatGLMTokenizer

    tokenizer = ChatGLMTokenizer.from_pretrained(str(weights))
    write_stage_assets(
        repository, api.CHATGLM, tokenizer, "chatglm", chatglm_config(weights, tokenizer),
        num_image_tokens=tokenizer.num_image_tokens, max_blank_length=tokenizer.max_blank_length,
        mask_token_id=tokenizer.mask_token_id, gmask_token_id=tokenizer.gmask_token_id,
    )


def export_family(weights: Path, repository: Path, serving: Serving) -> None:
    weights = Path(weights).resolve()
    check_files(weights, REQUIRED_FILES, "ChatGLM save_pretrained")
    export_components("chatglm", [c.name for c in api.CHATGLM_COMPONENTS], weights, repository, serving)
    write_chatglm_assets(weights, repository)
    if serving.precisions:
        from .components import COMPONENTS

        write_graph_variants(COMPONENTS, weights, repository, serving.precisions, stage=api.CHATGLM)
    write_stage(repository, api.CHATGLM, serving)
