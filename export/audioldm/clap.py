"""CLAP's audio side as an exported component (`audioldm_clap_audio`): it scores candidates (musicgen.audioldm.ranking).

The weights are a CLAP `save_pretrained` folder (paddlenlp `ClapModel`: config.json, model_state.pdparams,
preprocessor_config.json) placed as `clap/` in the AudioLDM weights folder — for cvssp/audioldm, the CLAP model its
text encoder was taken from (laion/clap-htsat-unfused). Its text tower must be AudioLDM's text encoder: loading
checks that both give the same normalised text embedding, else the scores would compare two models' embeddings.
The graph is `ClapModel.get_audio_features` (HTSAT, audio projection, L2 normalisation) on the extractor's
log-mel features; the extractor itself runs in numpy at serve time, its config copied beside the graph.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, List

import numpy as np
import paddle

from musicgen.audioldm.clap_features import PREPROCESSOR_FILE, ClapFeatureConfig, ClapFeatures
from musicgen_client import interface as api

from ..core import Component, UnsupportedModel

CLAP_DIR = "clap"
TEXT_MATCH_TOLERANCE = 1e-5  # relative: the same weights give the same embedding up to kernel order

# A tiny HTSAT for tests, shaped like the real one (4 time chunks folded into the frequency axis, Swin stages,
# patch merging) but 16 mel bins and 2 s windows; the extractor as laion/clap-htsat-unfused's otherwise.
TINY_AUDIO = dict(num_mel_bins=16, spec_size=64, patch_size=4, patch_stride=[4, 4], window_size=4, depths=[1, 1],
                  num_attention_heads=[2, 2], patch_embeds_hidden_size=16, hidden_size=32)
TINY_FEATURES = dict(feature_size=16, sampling_rate=48000, hop_length=480, fft_window_size=1024, max_length_s=2,
                     frequency_min=50, frequency_max=14000, truncation="rand_trunc", padding="repeatpad")


class AudioEncoder(paddle.nn.Layer):
    def __init__(self, clap):
        super().__init__()
        self.clap = clap

    def forward(self, input_features):
        return self.clap.get_audio_features(input_features=input_features)


def build_tiny_clap(audioldm_weights: Path, seed: int = 0) -> Path:
    """A random-weight CLAP whose text tower IS the AudioLDM preset's text encoder, saved as `clap/` beside it."""
    from paddlenlp.transformers import ClapConfig, ClapFeatureExtractor, ClapModel
    from ppdiffusers.transformers import ClapTextModelWithProjection

    text_encoder = ClapTextModelWithProjection.from_pretrained(str(Path(audioldm_weights) / "text_encoder"))
    text_config = text_encoder.config.to_dict()
    paddle.seed(seed)
    clap = ClapModel(ClapConfig(text_config=text_config, audio_config=TINY_AUDIO,
                                projection_dim=text_config["projection_dim"],
                                projection_hidden_act=text_config.get("projection_hidden_act", "relu")))
    clap.text_model.set_state_dict(text_encoder.text_model.state_dict())
    clap.text_projection.set_state_dict(text_encoder.text_projection.state_dict())
    out = Path(audioldm_weights) / CLAP_DIR
    clap.save_pretrained(str(out))
    ClapFeatureExtractor(**TINY_FEATURES).save_pretrained(str(out))
    return out


def has_clap(weights: Path) -> bool:
    return (Path(weights) / CLAP_DIR / "config.json").exists()


def _text_embeds(model, ids: np.ndarray, mask: np.ndarray, clap: bool) -> np.ndarray:
    with paddle.no_grad():
        feeds = dict(input_ids=paddle.to_tensor(ids), attention_mask=paddle.to_tensor(mask))
        if clap:
            return model.get_text_features(**feeds).numpy()
        return paddle.nn.functional.normalize(model(**feeds).text_embeds, axis=-1).numpy()


def check_text_tower(clap, weights: Path) -> None:
    """Raise UnsupportedModel unless CLAP's text features equal AudioLDM's normalised text embeddings."""
    from ppdiffusers.transformers import ClapTextModelWithProjection

    text_encoder = ClapTextModelWithProjection.from_pretrained(str(Path(weights) / "text_encoder"))
    text_encoder.eval()
    vocab = text_encoder.config.vocab_size
    ids = np.random.default_rng(0).integers(4, vocab, size=(2, 12)).astype("int64")
    ids[:, 0], ids[:, -1] = text_encoder.config.bos_token_id, text_encoder.config.eos_token_id
    mask = np.ones_like(ids)
    ours, theirs = _text_embeds(clap, ids, mask, clap=True), _text_embeds(text_encoder, ids, mask, clap=False)
    error = float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-12))
    if error > TEXT_MATCH_TOLERANCE:
        raise UnsupportedModel(f"{Path(weights) / CLAP_DIR}: its text tower is not AudioLDM's text encoder (text "
                               f"embeddings differ by {error:.3g} relative): scores would compare two models")


def _load(weights: Path):
    from paddlenlp.transformers import ClapModel

    clap = ClapModel.from_pretrained(str(Path(weights) / CLAP_DIR))
    clap.eval()
    if clap.config.audio_config.enable_fusion:
        raise UnsupportedModel("fused CLAP (enable_fusion) ranks with random crops of 4 channels: only the unfused "
                               "models are supported")
    ClapFeatureConfig.load(Path(weights) / CLAP_DIR)  # refuses an extractor mode the numpy port does not do
    check_text_tower(clap, weights)
    return AudioEncoder(clap)


def _features(weights: Path) -> ClapFeatures:
    config = ClapFeatureConfig.load(Path(weights) / CLAP_DIR)
    return ClapFeatures(config, config.sampling_rate)


def _sample(weights: Path, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Real features of two clips (a tone in noise, and noise) of half the extractor's window."""
    features = _features(weights)
    samples = features.config.max_samples // 2
    t = np.arange(samples) / features.config.sampling_rate
    clips = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), np.zeros(samples)]) + 0.05 * rng.standard_normal((2, samples))
    return {"input_features": features(clips.astype(np.float32))}


def _one_long_clip(weights: Path, rng: np.random.Generator) -> Dict[str, Dict[str, np.ndarray]]:
    """A batch of one, from a clip longer than the window (the extractor's crop)."""
    features = _features(weights)
    clip = 0.1 * rng.standard_normal((1, features.config.max_samples * 3 // 2))
    return {"one_long_clip": {"input_features": features(clip.astype(np.float32))}}


def static_dims(weights: Path) -> Dict[str, List[int]]:
    """HTSAT folds time into its image by Python arithmetic on the feature shape: frames and mel bins are fixed
    by the extractor's config, only the batch stays dynamic."""
    config = _features(weights).config
    frames = config.max_samples // config.hop_length + 1
    return {"input_features": [-1, 1, frames, config.feature_size]}


COMPONENT = Component(api.CLAP_AUDIO_COMPONENT, _load, _sample, 1e-4, more_cases=_one_long_clip, static_dims=static_dims)


def copy_feature_config(weights: Path, version_dir: Path) -> None:
    """The serve-time extractor reads its settings beside the graph."""
    shutil.copy(Path(weights) / CLAP_DIR / PREPROCESSOR_FILE, Path(version_dir) / PREPROCESSOR_FILE)
