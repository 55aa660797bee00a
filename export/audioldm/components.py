"""The four AudioLDM components as exportable Layers: how each loads, what it takes, what it returns.

Each wrapper folds in the small glue the ppdiffusers pipeline applies around the component (the L2
normalisation after CLAP, the division by the VAE scaling factor, the channel squeeze before the vocoder), so
the served graphs compose with no literal model constants in the orchestrator. Tensor names come from the
served interface.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import paddle
import paddle.nn.functional as F

from musicgen_client import interface as api

from ..core import Component, read_config
from . import clap, patches


class TextEncoder(paddle.nn.Layer):
    def __init__(self, text_encoder):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids, attention_mask):
        embeds = self.text_encoder(input_ids, attention_mask=attention_mask).text_embeds
        return F.normalize(embeds, axis=-1)  # as AudioLDMPipeline._encode_prompt does


class UNet(paddle.nn.Layer):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, class_labels):
        return self.unet(sample, timestep, encoder_hidden_states=None, class_labels=class_labels).sample


class VaeDecoder(paddle.nn.Layer):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae
        self.scaling_factor = float(vae.config.scaling_factor)

    def forward(self, latents):
        return self.vae.decode(latents / self.scaling_factor).sample.squeeze(1)


class Vocoder(paddle.nn.Layer):
    def __init__(self, vocoder):
        super().__init__()
        self.vocoder = vocoder

    def forward(self, mel_spectrogram):
        return self.vocoder(mel_spectrogram)


def _load_text_encoder(weights: Path):
    from ppdiffusers.transformers import ClapTextModelWithProjection

    model = ClapTextModelWithProjection.from_pretrained(str(weights / "text_encoder"))
    # ppdiffusers' pipeline casts this buffer before use; a float buffer would be traced as float.
    emb = model.text_model.embeddings
    emb.token_type_ids = emb.token_type_ids.cast("int64")
    return TextEncoder(model)


def _load_unet(weights: Path):
    from ppdiffusers import UNet2DConditionModel

    return UNet(UNet2DConditionModel.from_pretrained(str(weights / "unet")))


def _load_vae(weights: Path):
    from ppdiffusers import AutoencoderKL

    return VaeDecoder(patches.vae_for_export(AutoencoderKL.from_pretrained(str(weights / "vae"))))


def _load_vocoder(weights: Path):
    from ppdiffusers.transformers import SpeechT5HifiGan

    return Vocoder(SpeechT5HifiGan.from_pretrained(str(weights / "vocoder")))


def _sample_text(weights: Path, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    vocab = read_config(weights / "text_encoder")["vocab_size"]
    ids = rng.integers(4, vocab, size=(2, 20)).astype("int64")
    mask = np.ones_like(ids)
    mask[1, 12:] = 0  # a padded row, as the pipeline sends
    return {"input_ids": ids, "attention_mask": mask}


def _sample_unet(weights: Path, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    cfg = read_config(weights / "unet")
    mel_bins = read_config(weights / "vocoder")["model_in_dim"]
    vae_scale = 2 ** (len(read_config(weights / "vae")["block_out_channels"]) - 1)
    # An odd latent height on purpose: the served graph must take lengths that are not a multiple of the
    # UNet's down-sampling factor, as the eager model does.
    height = 2 ** (len(cfg["block_out_channels"]) - 1) * 3 + 1
    return {
        "sample": rng.standard_normal((2, cfg["in_channels"], height, mel_bins // vae_scale)).astype("float32"),
        "timestep": np.array([801.0, 801.0], dtype="float32"),
        "class_labels": rng.standard_normal((2, cfg["projection_class_embeddings_input_dim"])).astype("float32"),
    }


def _sample_vae(weights: Path, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    cfg = read_config(weights / "vae")
    mel_bins = read_config(weights / "vocoder")["model_in_dim"]
    vae_scale = 2 ** (len(cfg["block_out_channels"]) - 1)
    return {"latents": rng.standard_normal((1, cfg["latent_channels"], 13, mel_bins // vae_scale)).astype("float32")}


def _sample_vocoder(weights: Path, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    mel_bins = read_config(weights / "vocoder")["model_in_dim"]
    return {"mel_spectrogram": rng.standard_normal((1, 37, mel_bins)).astype("float32")}


COMPONENTS = {
    api.AUDIOLDM_TEXT_ENCODER: Component(api.COMPONENTS_BY_NAME[api.AUDIOLDM_TEXT_ENCODER], _load_text_encoder, _sample_text, 1e-4),
    api.AUDIOLDM_UNET: Component(
        api.COMPONENTS_BY_NAME[api.AUDIOLDM_UNET], _load_unet, _sample_unet, 1e-4,
        trace_context=lambda _unet: patches.unet_upsample_size_always_forwarded(),
    ),
    api.AUDIOLDM_VAE_DECODER: Component(api.COMPONENTS_BY_NAME[api.AUDIOLDM_VAE_DECODER], _load_vae, _sample_vae, 1e-4),
    api.AUDIOLDM_VOCODER: Component(api.COMPONENTS_BY_NAME[api.AUDIOLDM_VOCODER], _load_vocoder, _sample_vocoder, 1e-4),
    api.AUDIOLDM_CLAP_AUDIO: clap.COMPONENT,  # only when the weights have a clap/ folder (export_family)
}
