"""MiniGPT4 weight sources: random models for tests, the demo and real-width runs, saved the way real weights are
laid out.

Each preset builds paddlenlp's MiniGPT4ForConditionalGeneration (EVA ViT → Q-Former → projection → LLaMA)
from small configs with a fixed seed, trains a byte-fallback BPE sentencepiece tokenizer offline (LLaMA's
kind), and `save_pretrained`s model, tokenizer and image processor into ONE folder: the PaddleMIX layout of
`$PPMIX_HOME/models/miniGPT4/MiniGPT4-7B`, so export and the eager reference load it like real weights.
`minigpt4-7b-width` keeps MiniGPT4-7B's ViT-g and Q-Former (paddlenlp's default vision and Q-Former configs are
MiniGPT4's) and LLaMA-7B's width and vocabulary with fewer LLaMA layers (`--layers`, default 1); its tokenizer is
padded to LLaMA's 32000 pieces with the original's stop pieces at the original's ids.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from musicgen.llm.prompts import MINIGPT4_ORIGINAL_STOP_IDS, MINIGPT4_PROMPT, MINIGPT4_QUESTION, MINIGPT4_STOP_PIECES

from ..core import PRESET_SHARD_SIZE
from ..tiny_tokenizers import corpus, pad_vocabulary, train_sentencepiece

logger = logging.getLogger(__name__)

# Shaped like the real model (ViT patches → Q-Former queries → LLaMA with rotary attention and SwiGLU), small
# enough that a 32-token caption decodes in well under a second. The wider-than-default initialisers make
# the random logits peaked, so greedy decoding is not decided by float noise between runtimes.
TINY = {
    "seed": 0,
    "tokenizer": dict(model_type="bpe", vocab_size=600),
    "image_size": 32,
    "num_query_tokens": 8,
    "vision_config": dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        patch_size=8, initializer_range=0.02,
    ),
    "qformer_config": dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        cross_attention_frequency=1, vocab_size=100, max_position_embeddings=64,
    ),
    "text_config": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=512, initializer_range=0.2, rms_norm_eps=1e-6,
    ),
}

# MiniGPT4-7B's shapes with random weights: ViT-g (1408 wide, 39 layers, 224-pixel images) and the Q-Former at
# paddlenlp's defaults, 32 query tokens, LLaMA-7B's width, heads, MLP and vocabulary. One LLaMA layer (202 M) plus
# the 32000 × 4096 input and output embeddings is 464 M parameters, 1.9 GB; the image encoder is 4.4 GB whatever
# the depth. LLaMA's weights at std 0.02 (its initializer_range) leave a random model's logits flat at this width:
# 0.05 makes them peaked, so greedy picks are not decided by float noise.
LLAMA_7B_VOCAB = 32000
MINIGPT4_7B_WIDTH = {
    "seed": 0,
    "tokenizer": TINY["tokenizer"],
    "vocab_size": LLAMA_7B_VOCAB,
    "image_size": 224,
    "num_query_tokens": 32,
    "vision_config": {},
    "qformer_config": {},
    "text_config": dict(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=1, num_attention_heads=32,
        max_position_embeddings=2048, initializer_range=0.05, rms_norm_eps=1e-6,
    ),
}

PRESETS = {"tiny": TINY, "minigpt4-7b-width": MINIGPT4_7B_WIDTH}


def write_llama_tokenizer(out_dir: Path, options: dict, vocab_size: Optional[int] = None):
    """Train a LLaMA-style tokenizer (BPE, byte fallback, <unk>=0 <s>=1 </s>=2); at LLaMA's vocabulary size,
    pad it and put the stop pieces at the original's ids."""
    from paddlenlp.transformers import LlamaTokenizer

    model_file = out_dir / "_training" / "sentencepiece.bpe.model"
    train_sentencepiece(
        model_file, corpus([MINIGPT4_PROMPT.replace("<TextHere>", MINIGPT4_QUESTION)]),
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, split_digits=True, character_coverage=1.0,
        # The stop strings the original generation ends on must be single pieces, as "###" (835) and "##"
        # (2277) are in LLaMA's vocabulary; "#" is one anyway.
        user_defined_symbols=[p for p in MINIGPT4_STOP_PIECES if len(p) > 1], **options,
    )
    if vocab_size:
        placed = dict(zip(MINIGPT4_STOP_PIECES, MINIGPT4_ORIGINAL_STOP_IDS)) if vocab_size == LLAMA_7B_VOCAB else {}
        pad_vocabulary(model_file, vocab_size, placed)
    tokenizer = LlamaTokenizer(vocab_file=str(model_file))
    return tokenizer


def build_random_minigpt4(preset: dict, out_dir: Path, layers: Optional[int] = None) -> Path:
    """Build MiniGPT4 with seeded random weights from `preset` (`layers` LLaMA layers if given) and save model +
    processor into `out_dir`."""
    import shutil

    import paddle
    from paddlenlp.transformers import (
        MiniGPT4Config, MiniGPT4ForConditionalGeneration, MiniGPT4ImageProcessor, MiniGPT4Processor,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = write_llama_tokenizer(out_dir, preset["tokenizer"], preset.get("vocab_size"))
    size = preset["image_size"]
    processor = MiniGPT4Processor(MiniGPT4ImageProcessor(size={"height": size, "width": size}), tokenizer)

    text_config = dict(preset["text_config"], vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id,
                       **({"num_hidden_layers": layers} if layers else {}))
    config = MiniGPT4Config(vision_config=preset["vision_config"], qformer_config=preset["qformer_config"],
                            text_config=text_config, num_query_tokens=preset["num_query_tokens"])
    paddle.seed(preset["seed"])
    model = MiniGPT4ForConditionalGeneration(config)
    model.save_pretrained(str(out_dir), max_shard_size=PRESET_SHARD_SIZE)
    processor.save_pretrained(str(out_dir))
    shutil.rmtree(out_dir / "_training")
    logger.info("saved random-weight MiniGPT4 to %s", out_dir)
    return out_dir
