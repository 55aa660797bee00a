"""Candidates ranked by CLAP, as AudioLDM2's `score_waveforms` ranks them — with the scores returned.

score = cosine similarity between the prompt's CLAP text embedding and each waveform's CLAP audio embedding:
`score_waveforms` sorts by `ClapModel(...).logits_per_text`, which is that cosine times the model's logit scale
(the same order); the cosine itself is returned, comparable across models. The text side is the embedding the
pipeline already computes: AudioLDM's text encoder is CLAP's text tower and text projection, and its served graph
L2-normalises it exactly as `ClapModel.get_text_features` does (export checks the CLAP folder matches it). The
audio side is the exported `audioldm_clap_audio` graph (HTSAT + audio projection, normalised as
`get_audio_features`) on features from musicgen.audioldm.clap_features.

Without that graph in the repository ranking is off, and every response says so (`ranking` output).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

import numpy as np

from musicgen_client import interface as api

from ..protocol import AudioOptions, check_finite
from .clap_features import PREPROCESSOR_FILE, ClapFeatureConfig, ClapFeatures
from .engine import Candidates, Ranker, StageRunner, run_component


class ClapRanker(Ranker):
    description = api.RANKING_CLAP

    def __init__(self, features: ClapFeatures, run_stage: StageRunner):
        self.features = features
        self.run_stage = run_stage

    def scores(self, waveforms: Sequence[np.ndarray], text_embeds: np.ndarray, seeds: Sequence[tuple]) -> np.ndarray:
        input_features = self.features(waveforms, seeds)
        audio_embeds = run_component(self.run_stage, api.AUDIOLDM_CLAP_AUDIO, {"input_features": input_features})
        check_finite(api.AUDIOLDM_CLAP_AUDIO, audio_embeds)
        return cosine(text_embeds, audio_embeds)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of [n, d] arrays, in float64 then float32 (the graphs' embeddings are already
    unit length; normalising again costs nothing and keeps the score a cosine whatever a graph returns)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return ((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).astype(np.float32)


def audio_encoder_folder(repository: Path) -> Path:
    return Path(repository) / api.AUDIOLDM_CLAP_AUDIO / "1"


def has_audio_encoder(repository: Path) -> bool:
    return (audio_encoder_folder(repository) / PREPROCESSOR_FILE).exists()


def open_ranker(repository: Path, sampling_rate: int, run_stage: StageRunner) -> Ranker:
    """The CLAP ranker when the repository serves the audio encoder, else the 'off' ranker that says why."""
    if not has_audio_encoder(repository):
        return Ranker()
    config = ClapFeatureConfig.load(audio_encoder_folder(repository))
    return ClapRanker(ClapFeatures(config, sampling_rate), run_stage)


def response_outputs(result: Candidates, options: AudioOptions, ranker: Ranker) -> Dict[str, np.ndarray]:
    """The candidates' response tensors: `audio` [k, samples] when the request asked for candidates, else the one
    waveform flat; `scores` when ranked; `ranking` always."""
    audio = result.audio if options.num_waveforms_per_prompt is not None else result.audio[0]
    outputs = {api.AUDIO: audio, api.RANKING: np.array([ranker.description.encode("utf-8")], dtype=object)}
    if result.scores is not None:
        outputs[api.SCORES] = result.scores
    return outputs
