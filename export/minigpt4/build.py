"""Export MiniGPT4 (image → caption) into a model repository: three graphs and the `caption` stage's assets.

Weights (`--from`): a MiniGPT4 `save_pretrained` folder holding model, LLaMA tokenizer and image processor
together, i.e. PaddleMIX's layout `$PPMIX_HOME/models/miniGPT4/MiniGPT4-7B/` (after PaddleMIX's weight
conversion, see its `paddlemix/examples/minigpt4/README.md`):

    config.json                  MiniGPT4Config (vision_config, qformer_config, text_config, num_query_tokens)
    model_state.pdparams         (or model_state.pdparams.index.json + shards)
    preprocessor_config.json     MiniGPT4ImageProcessor (size, resample, mean, std, ...)
    sentencepiece.bpe.model      LLaMA's tokenizer, with tokenizer_config.json and special_tokens_map.json

Written (each folder with its config.pbtxt; version folder `1/`):

    <repo>/minigpt4_image_encoder/1/  model.onnx, paddle/, parity.json, image_preprocess.json
    <repo>/minigpt4_embed_tokens/1/   model.onnx, paddle/, parity.json
    <repo>/minigpt4_llm_step/1/       model.onnx, paddle/, parity.json
    (each graph folder: + model.<precision>.onnx with --precision, export/LLM.md "Precision variants")
    <repo>/caption/1/                 model.py, tokenizer/, textgen.json (prompt, generation), image_preprocess.json
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from musicgen.generation import GREEDY, GenerationConfig
from musicgen.llm import prompts
from musicgen.llm.feeds import KVShape
from musicgen.llm.image import PREPROCESS_FILE, ImagePreprocessConfig
from musicgen.llm.recipes import TextGenConfig
from musicgen_client import interface as api

from ..core import ExportError, preset_folder, read_config
from ..precision import write_graph_variants
from ..serving import Serving, export_components, write_stage
from ..textgen import check_files, write_stage_assets
from .presets import PRESETS, build_random_minigpt4

logger = logging.getLogger(__name__)

REQUIRED_FILES = ("config.json", "model_state.pdparams|model_state.pdparams.index.json", "preprocessor_config.json",
                  "tokenizer_config.json", "sentencepiece.bpe.model")
LLAMA_VOCAB_SIZE = 32000
LLAMA_DEFAULT_MAX_POSITIONS = 2048  # LlamaConfig's default, when config.json leaves it out


def build_preset(preset: str, weights_root: Path, layers: Optional[int] = None) -> Path:
    folder = Path(weights_root) / preset_folder("minigpt4", preset, layers)
    return build_random_minigpt4(PRESETS[preset], folder, layers)


def stop_token_ids(tokenizer) -> tuple:
    """The original's stop ids (835, 2277, 29937) are LLaMA's "###", "##", "#": with LLaMA's vocabulary they
    are taken as written, with another tokenizer (the tiny preset's) the same pieces are looked up."""
    if len(tokenizer) == LLAMA_VOCAB_SIZE:
        return prompts.MINIGPT4_ORIGINAL_STOP_IDS
    ids = tuple(tokenizer.convert_tokens_to_ids(p) for p in prompts.MINIGPT4_STOP_PIECES)
    if tokenizer.unk_token_id in ids:
        raise ExportError(f"tokenizer lacks one of the stop pieces {prompts.MINIGPT4_STOP_PIECES} (got ids {ids})")
    return ids


def caption_config(weights: Path, tokenizer) -> TextGenConfig:
    """The original MiniGPT4Task's prompt and `generate` arguments (musicgen.llm.prompts) for these weights."""
    cfg = read_config(weights)
    text = cfg["text_config"]
    heads = text["num_attention_heads"]
    generation = GenerationConfig(
        max_new_tokens=prompts.MINIGPT4_MAX_NEW_TOKENS, decode_strategy=GREEDY, temperature=1.0, top_k=0, top_p=1.0,
        repetition_penalty=1.0, stop_token_ids=stop_token_ids(tokenizer), pad_token_id=text.get("pad_token_id", 0),
    )
    return TextGenConfig(
        prompt_template=prompts.MINIGPT4_PROMPT, question=prompts.MINIGPT4_QUESTION, generation=generation,
        kv=KVShape(layers=text["num_hidden_layers"], heads=heads, head_dim=text["hidden_size"] // heads),
        # LLaMA's context window bounds the cache (prompt embeddings + new tokens).
        max_context_tokens=text.get("max_position_embeddings", LLAMA_DEFAULT_MAX_POSITIONS),
    )


def write_caption_assets(weights: Path, repository: Path) -> None:
    from paddlenlp.transformers import MiniGPT4Processor

    processor = MiniGPT4Processor.from_pretrained(str(weights))
    tokenizer = processor.tokenizer
    folder = write_stage_assets(repository, api.CAPTION, tokenizer, "llama", caption_config(weights, tokenizer),
                                add_bos_token=bool(tokenizer.add_bos_token))
    image_config = ImagePreprocessConfig.from_processor_config(processor.image_processor.to_dict())
    for target in (folder, Path(repository) / api.MINIGPT4_IMAGE_ENCODER / "1"):
        image_config.save(target / PREPROCESS_FILE)


def export_family(weights: Path, repository: Path, serving: Serving) -> None:
    weights = Path(weights).resolve()
    check_files(weights, REQUIRED_FILES, "MiniGPT4 save_pretrained")
    export_components("minigpt4", [c.name for c in api.MINIGPT4_COMPONENTS], weights, repository, serving)
    write_caption_assets(weights, repository)
    if serving.precisions:
        from .components import COMPONENTS

        write_graph_variants(COMPONENTS, weights, repository, serving.precisions, stage=api.CAPTION)
    write_stage(repository, api.CAPTION, serving)
