"""ChatGLM-6B (v1) weight sources: random models for tests, the demo and real-width runs, saved like real weights.

Each preset trains a unigram sentencepiece model offline with ChatGLM's own symbols (its `ice_text.model`
has them as pieces: [MASK] [gMASK] <sop> <eop> <n> <|tab|> <|blank_N|> ...), builds paddlenlp's
ChatGLMForCausalLM from a small config with a fixed seed, and `save_pretrained`s model and tokenizer into one
folder, the layout paddlenlp's Taskflow loads `THUDM/chatglm-6b` from. `chatglm-6b-width` keeps ChatGLM-6B's
width and vocabulary with fewer layers (`--layers`, default 1): its tokenizer is padded to the real 130528 pieces
(export/tiny_tokenizers.py `pad_vocabulary`) so that every id a random model picks decodes and encodes back.
"""
from __future__ import annotations

import logging
import gc
from pathlib import Path
from typing import Optional

from musicgen_client.flow import music_prompt_request

from ..core import PRESET_SHARD_SIZE
from ..tiny_tokenizers import corpus, pad_vocabulary, train_sentencepiece

logger = logging.getLogger(__name__)

MAX_BLANK_LENGTH = 80  # ChatGLMTokenizer turns runs of 2..80 spaces into <|blank_N|>
CHATGLM_SYMBOLS = (
    ["[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<n>", "<|tab|>"]
    + [f"<|blank_{n}|>" for n in range(2, MAX_BLANK_LENGTH + 1)]
)

# Shaped like ChatGLM-6B (2-D rotary positions, GELU MLP, prefix attention over the prompt), tiny. With the
# default small weights the tied output embedding makes a random model repeat its input token forever; wide
# layer weights give varied, peaked logits, so a decode exercises the cache and is not decided by float noise.
TINY = {
    "seed": 0,
    "tokenizer": dict(model_type="unigram", vocab_size=700),
    "model": dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, inner_hidden_size=128,
        max_sequence_length=512, layernorm_epsilon=1e-5, position_encoding_2d=True, activation="gelu",
    ),
    "init_std": {"word_embeddings": 0.02, "layers": 0.3},
}

# Wider (ChatGLM-6B's head size 64, a quarter of its width, 4 layers, ≈ 50 M parameters, 200 MB in FP32): for
# measuring how a decode step scales with the context and the batch when the matrices are no longer toys.
WIDE = dict(TINY, model=dict(TINY["model"], hidden_size=1024, num_attention_heads=16, inner_hidden_size=4096,
                             num_hidden_layers=4), init_std={"word_embeddings": 0.02, "layers": 0.05})

# ChatGLM-6B's width, heads, MLP, vocabulary and context, random weights: 1 layer is 736 M parameters (2.9 GB in
# FP32, the 130528 × 4096 embedding alone is 2.1 GB), so its step graph takes the ONNX external-data path. At one
# layer, std 0.025 (0.025 · √4096 = 1.6 per sublayer, as WIDE's 0.05 · √1024) was not enough: greedy decoding
# echoed the last prompt token (<sop>) every step, the tied output embedding's degenerate case. With 0.1, eager
# greedy decoding gives 8 different ids in 8 steps (measured).
CHATGLM_6B_VOCAB = 130528
CHATGLM_6B_WIDTH = dict(
    TINY, vocab_size=CHATGLM_6B_VOCAB,
    model=dict(TINY["model"], hidden_size=4096, num_attention_heads=32, inner_hidden_size=16384, num_hidden_layers=1,
               max_sequence_length=2048),
    init_std={"word_embeddings": 0.02, "layers": 0.1},
)

PRESETS = {"tiny": TINY, "wide": WIDE, "chatglm-6b-width": CHATGLM_6B_WIDTH}


def write_chatglm_tokenizer(work_dir: Path, options: dict, vocab_size: Optional[int] = None):
    """Train a ChatGLM-style unigram model (<unk>=0 <s>=1 </s>=2 <pad>=3, then ChatGLM's symbols), padded to
    `vocab_size` pieces if given."""
    from paddlenlp.transformers import ChatGLMTokenizer

    model_file = work_dir / "ice_text.model"
    train_sentencepiece(
        model_file, corpus([music_prompt_request("The image shows a cat on a marble table")]),
        unk_id=0, bos_id=1, eos_id=2, pad_id=3, pad_piece="<pad>", user_defined_symbols=CHATGLM_SYMBOLS,
        character_coverage=1.0, split_digits=True, remove_extra_whitespaces=False, **options,
    )
    if vocab_size:
        pad_vocabulary(model_file, vocab_size)
    # The real tokenizer counts 0 image tokens before the text pieces in the paddlenlp checkpoints.
    return ChatGLMTokenizer(vocab_file=str(model_file), num_image_tokens=0)


def build_random_chatglm(preset: dict, out_dir: Path, layers: Optional[int] = None) -> Path:
    """Build ChatGLMForCausalLM with seeded random weights from `preset` (with `layers` layers if given); save
    model + tokenizer to `out_dir`."""
    import shutil

    import paddle
    from paddlenlp.transformers import ChatGLMConfig, ChatGLMForCausalLM

    out_dir = Path(out_dir)
    work = out_dir / "_training"
    tokenizer = write_chatglm_tokenizer(work, preset["tokenizer"], preset.get("vocab_size"))
    ids = tokenizer.convert_tokens_to_ids
    config = ChatGLMConfig(
        vocab_size=tokenizer.vocab_size, bos_token_id=ids("<sop>"), eos_token_id=ids("<eop>"),
        pad_token_id=tokenizer.pad_token_id, mask_token_id=ids("[MASK]"), gmask_token_id=ids("[gMASK]"),
        **dict(preset["model"], **({"num_hidden_layers": layers} if layers else {})),
    )
    paddle.seed(preset["seed"])
    model = ChatGLMForCausalLM(config)
    std = preset["init_std"]
    for name, param in model.named_parameters():  # ChatGLM's init_weights is a no-op: draw the matrices, seeded
        if len(param.shape) == 2:
            scale = std["word_embeddings"] if "word_embeddings" in name else std["layers"]
            param.set_value(paddle.normal(0.0, scale, param.shape).astype(param.dtype))
    gc.collect()  # the drawn matrices, before save_pretrained takes its own copy of the state
    model.save_pretrained(str(out_dir), max_shard_size=PRESET_SHARD_SIZE)
    tokenizer.save_pretrained(str(out_dir))
    shutil.rmtree(work)
    logger.info("saved random-weight ChatGLM to %s", out_dir)
    return out_dir
