"""ChatGLM-6B (v1) weight sources: a tiny random model for tests and the demo, saved like real weights.

The tiny preset trains a unigram sentencepiece model offline with ChatGLM's own symbols (its `ice_text.model`
has them as pieces: [MASK] [gMASK] <sop> <eop> <n> <|tab|> <|blank_N|> ...), builds paddlenlp's
ChatGLMForCausalLM from a small config with a fixed seed, and `save_pretrained`s model and tokenizer into one
folder, the layout paddlenlp's Taskflow loads `THUDM/chatglm-6b` from.
"""
from __future__ import annotations

import logging
from pathlib import Path

from musicgen_client.flow import music_prompt_request

from ..tiny_tokenizers import corpus, train_sentencepiece

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

PRESETS = {"tiny": TINY, "wide": WIDE}


def write_chatglm_tokenizer(work_dir: Path, options: dict):
    """Train a ChatGLM-style unigram model (<unk>=0 <s>=1 </s>=2 <pad>=3, then ChatGLM's symbols)."""
    from paddlenlp.transformers import ChatGLMTokenizer

    model_file = work_dir / "ice_text.model"
    train_sentencepiece(
        model_file, corpus([music_prompt_request("The image shows a cat on a marble table")]),
        unk_id=0, bos_id=1, eos_id=2, pad_id=3, pad_piece="<pad>", user_defined_symbols=CHATGLM_SYMBOLS,
        character_coverage=1.0, split_digits=True, remove_extra_whitespaces=False, **options,
    )
    # The real tokenizer counts 0 image tokens before the text pieces in the paddlenlp checkpoints.
    return ChatGLMTokenizer(vocab_file=str(model_file), num_image_tokens=0)


def build_random_chatglm(preset: dict, out_dir: Path) -> Path:
    """Build ChatGLMForCausalLM with seeded random weights from `preset`; save model + tokenizer to `out_dir`."""
    import shutil

    import paddle
    from paddlenlp.transformers import ChatGLMConfig, ChatGLMForCausalLM

    out_dir = Path(out_dir)
    work = out_dir / "_training"
    tokenizer = write_chatglm_tokenizer(work, preset["tokenizer"])
    ids = tokenizer.convert_tokens_to_ids
    config = ChatGLMConfig(
        vocab_size=tokenizer.vocab_size, bos_token_id=ids("<sop>"), eos_token_id=ids("<eop>"),
        pad_token_id=tokenizer.pad_token_id, mask_token_id=ids("[MASK]"), gmask_token_id=ids("[gMASK]"),
        **preset["model"],
    )
    paddle.seed(preset["seed"])
    model = ChatGLMForCausalLM(config)
    std = preset["init_std"]
    for name, param in model.named_parameters():  # ChatGLM's init_weights is a no-op: draw the matrices, seeded
        if len(param.shape) == 2:
            scale = std["word_embeddings"] if "word_embeddings" in name else std["layers"]
            param.set_value(paddle.normal(0.0, scale, param.shape).astype(param.dtype))
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    shutil.rmtree(work)
    logger.info("saved random-weight ChatGLM to %s", out_dir)
    return out_dir
