"""AudioLDM weight sources: tiny random weights for tests, the real AudioLDM-s shape for benchmarks.

Both presets build a full ppdiffusers AudioLDMPipeline from configs with a fixed seed and save it with
`save_pretrained`, so every later stage (export, the eager reference in tests) loads the same folder a user
would bring with real weights. The tokenizer is a byte-level BPE written offline: nothing is downloaded.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from musicgen.audioldm.tokenizer import bytes_to_unicode

logger = logging.getLogger(__name__)

# A few frequent pairs of the demo vocabulary, so the tokenizer exercises real merges.
_MERGES = ["Ġ a", "i n", "Ġ m", "Ġ p", "o n", "e r", "Ġ t", "h e", "Ġt he", "a n", "Ġ s", "o r", "Ġ c", "a l"]
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]


def write_byte_bpe_tokenizer(out_dir: Path, model_max_length: int) -> None:
    """Write vocab.json + merges.txt + tokenizer_config.json for a RoBERTa-style byte-level BPE."""
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in bytes_to_unicode().values():
        vocab.setdefault(ch, len(vocab))
    for merge in _MERGES:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    vocab["<mask>"] = len(vocab)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n")
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": model_max_length, "tokenizer_class": "RobertaTokenizer"})
    )


# Small enough for CI (a 5 s clip runs 20 steps in seconds), shaped like the real model: the vocoder
# upsamples by 160 (16 kHz, 100 mel frames per second) and the VAE halves the mel grid once.
TINY = {
    "seed": 0,
    "tokenizer_max_length": 64,
    "text_encoder": dict(
        bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=32, intermediate_size=37,
        layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2, vocab_size=300, projection_dim=32,
    ),
    "unet": dict(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=(32, 64), class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=32, class_embeddings_concat=True,
    ),
    "vae": dict(
        block_out_channels=[32, 64], in_channels=1, out_channels=1, latent_channels=4, layers_per_block=1,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"], up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        norm_num_groups=32,
    ),
    "vocoder": dict(
        model_in_dim=16, sampling_rate=16000, upsample_initial_channel=32, upsample_rates=[5, 4, 2, 2, 2],
        upsample_kernel_sizes=[10, 8, 4, 4, 4], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        normalize_before=False,
    ),
    "scheduler": dict(
        beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
        num_train_timesteps=1000,
    ),
}

# The real AudioLDM-s configuration (diffusers' AudioLDM conversion defaults) with random weights.
AUDIOLDM_S = {
    "seed": 0,
    "tokenizer_max_length": 512,
    "text_encoder": dict(
        bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=768, intermediate_size=3072,
        num_attention_heads=12, num_hidden_layers=12, vocab_size=50265, projection_dim=512,
        max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-12, projection_hidden_act="relu",
    ),
    "unet": dict(
        sample_size=128, in_channels=8, out_channels=8, block_out_channels=(128, 256, 384, 640), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=(128, 256, 384, 640), attention_head_dim=8, class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=512, class_embeddings_concat=True,
    ),
    "vae": dict(
        sample_size=256, in_channels=1, out_channels=1, latent_channels=8, layers_per_block=2,
        block_out_channels=[128, 256, 512], down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3, scaling_factor=0.9227914214134216,
    ),
    "vocoder": dict(
        model_in_dim=64, sampling_rate=16000, upsample_initial_channel=1024, upsample_rates=[5, 4, 2, 2, 2],
        upsample_kernel_sizes=[16, 16, 8, 4, 4], resblock_kernel_sizes=[3, 7, 11],
        resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]], normalize_before=True,
    ),
    "scheduler": dict(
        beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
        num_train_timesteps=1000,
    ),
}

PRESETS = {"tiny": TINY, "audioldm-s-random": AUDIOLDM_S}


def build_random_pipeline(preset: dict, out_dir: Path) -> Path:
    """Build an AudioLDMPipeline with seeded random weights from `preset` and save_pretrained it."""
    import paddle
    from ppdiffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from ppdiffusers.transformers import (
        ClapTextConfig, ClapTextModelWithProjection, RobertaTokenizer, SpeechT5HifiGan, SpeechT5HifiGanConfig,
    )

    out_dir = Path(out_dir)
    tok_dir = out_dir / "tokenizer"
    write_byte_bpe_tokenizer(tok_dir, preset["tokenizer_max_length"])
    tokenizer = RobertaTokenizer.from_pretrained(str(tok_dir))
    text_cfg = dict(preset["text_encoder"])
    text_cfg["vocab_size"] = max(text_cfg["vocab_size"], len(tokenizer))

    paddle.seed(preset["seed"])
    components = dict(
        unet=UNet2DConditionModel(**preset["unet"]),
        vae=AutoencoderKL(**preset["vae"]),
        text_encoder=ClapTextModelWithProjection(ClapTextConfig(**text_cfg)),
        vocoder=SpeechT5HifiGan(SpeechT5HifiGanConfig(**preset["vocoder"])),
        scheduler=DDIMScheduler(**preset["scheduler"]),
        tokenizer=tokenizer,
    )
    pipe = AudioLDMPipeline(**components)
    pipe.save_pretrained(str(out_dir))
    logger.info("saved random-weight AudioLDM pipeline to %s", out_dir)
    return out_dir
