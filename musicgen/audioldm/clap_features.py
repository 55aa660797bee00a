"""CLAP's audio features in numpy: waveform → log-mel input of the HTSAT audio encoder, no paddle at serve time.

A port of the path paddlenlp 2.8.1's `ClapFeatureExtractor` takes for the unfused CLAP models (`truncation:
rand_trunc`, `padding: repeatpad`; `paddlenlp/transformers/clap/feature_extraction.py` and `audio_utils.py`),
after the resampling AudioLDM2's `score_waveforms` applies (`librosa.resample`, whose default `soxr_hq` is this
`soxr.resample`): proven equal to both in tests/unit/test_clap_features.py.

1. resample from the vocoder's rate to the extractor's (16 → 48 kHz for AudioLDM and CLAP);
2. shorter than `max_length_s`: repeat the clip whole as often as it fits, then pad with zeros; longer: one
   crop of `max_length_s`. The extractor crops at a random offset (`np.random`); here the offset is drawn from
   a generator the caller seeds (the request's seed), so a seed reproduces its ranking;
3. power spectrogram (centred, reflect-padded periodic Hann frames; rfft kept in complex64 as the extractor
   does), Slaney mel filter bank, 10·log10 with a 1e-10 floor, as float32 [1, frames, mel bins].
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

PREPROCESSOR_FILE = "preprocessor_config.json"
SUPPORTED = {"truncation": "rand_trunc", "padding": "repeatpad"}


def _hertz_to_mel_slaney(freq: np.ndarray) -> np.ndarray:
    freq = np.asarray(freq, dtype=np.float64)
    logstep = 27.0 / np.log(6.4)
    return np.where(freq >= 1000.0, 15.0 + np.log(np.maximum(freq, 1e-300) / 1000.0) * logstep, 3.0 * freq / 200.0)


def _mel_to_hertz_slaney(mels: np.ndarray) -> np.ndarray:
    logstep = np.log(6.4) / 27.0
    return np.where(mels >= 15.0, 1000.0 * np.exp(logstep * (mels - 15.0)), 200.0 * mels / 3.0)


def slaney_mel_filters(frequency_bins: int, mel_filters: int, min_hz: float, max_hz: float, rate: int) -> np.ndarray:
    """[frequency_bins, mel_filters] triangular filters on the Slaney mel scale, Slaney-normalised."""
    fft_freqs = np.linspace(0, rate // 2, frequency_bins)
    mel_freqs = np.linspace(_hertz_to_mel_slaney(min_hz), _hertz_to_mel_slaney(max_hz), mel_filters + 2)
    filter_freqs = _mel_to_hertz_slaney(mel_freqs)
    slopes = filter_freqs[None, :] - fft_freqs[:, None]
    diff = np.diff(filter_freqs)
    down, up = -slopes[:, :-2] / diff[:-1], slopes[:, 2:] / diff[1:]
    filters = np.maximum(np.zeros(1), np.minimum(down, up))
    return filters * (2.0 / (filter_freqs[2:mel_filters + 2] - filter_freqs[:mel_filters]))[None, :]


@dataclass(frozen=True)
class ClapFeatureConfig:
    """The extractor's settings, read from a CLAP `preprocessor_config.json`."""

    feature_size: int  # mel bins
    sampling_rate: int
    hop_length: int
    fft_window_size: int
    max_length_s: float
    frequency_min: float
    frequency_max: float

    @classmethod
    def load(cls, folder: Path) -> "ClapFeatureConfig":
        raw = json.loads((Path(folder) / PREPROCESSOR_FILE).read_text())
        # paddlenlp's defaults for what a saved config may leave out.
        raw = {"truncation": "fusion", "padding": "repeatpad", "frequency_min": 0, "frequency_max": 14_000} | raw
        unsupported = {k: raw[k] for k, v in SUPPORTED.items() if raw[k] != v}
        if unsupported:
            raise ValueError(f"CLAP feature extractor {unsupported}: only {SUPPORTED} (the unfused CLAP models') is "
                             "ported")
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__})

    @property
    def max_samples(self) -> int:
        return int(self.max_length_s * self.sampling_rate)


class ClapFeatures:
    """n waveforms (1-D, any lengths) at `source_rate` → [n, 1, frames, mel bins] float32 `input_features`."""

    def __init__(self, config: ClapFeatureConfig, source_rate: int):
        self.config = config
        self.source_rate = source_rate
        self.mel_filters = slaney_mel_filters(config.fft_window_size // 2 + 1, config.feature_size,
                                              config.frequency_min, config.frequency_max, config.sampling_rate)
        self.window = np.hanning(config.fft_window_size + 1)[:-1]  # periodic Hann

    def __call__(self, waveforms: Sequence[np.ndarray], seeds: Optional[Sequence[Sequence[int]]] = None) -> np.ndarray:
        """`seeds[i]` seeds the crop of waveform i when it is longer than `max_length_s` (default: its index): a
        waveform's features never depend on the others of the call."""
        seeds = seeds if seeds is not None else [(i,) for i in range(len(waveforms))]
        return np.stack([self.log_mel(self.fit(self.resample(w), np.random.default_rng(list(seed))))[None]
                         for w, seed in zip(waveforms, seeds)])

    def resample(self, waveform: np.ndarray) -> np.ndarray:
        if self.source_rate == self.config.sampling_rate:
            return np.asarray(waveform, dtype=np.float64)
        import soxr  # librosa.resample's default resampler (res_type soxr_hq)

        resampled = soxr.resample(np.asarray(waveform, dtype=np.float32), self.source_rate, self.config.sampling_rate,
                                  quality="soxr_hq")
        # librosa fixes the length to ceil(n × ratio) (soxr's own is the same for integer ratios).
        size = int(np.ceil(len(waveform) * self.config.sampling_rate / self.source_rate))
        resampled = np.pad(resampled[:size], (0, max(0, size - len(resampled))))
        return resampled.astype(np.float64)

    def fit(self, waveform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Exactly `max_samples`: a crop of a longer clip, a shorter one repeated then zero-padded."""
        limit = self.config.max_samples
        if len(waveform) > limit:
            start = int(rng.integers(0, len(waveform) - limit + 1))
            return waveform[start:start + limit]
        if len(waveform) < limit:
            waveform = np.tile(waveform, limit // len(waveform))
            waveform = np.pad(waveform, (0, limit - len(waveform)))
        return waveform

    def log_mel(self, waveform: np.ndarray) -> np.ndarray:
        """[frames, mel bins] float32 log-mel (dB) of one clip."""
        n_fft, hop = self.config.fft_window_size, self.config.hop_length
        padded = np.pad(waveform, (n_fft // 2, n_fft // 2), mode="reflect").astype(np.float64)
        frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop] * self.window
        spectrum = np.fft.rfft(frames, axis=-1).astype(np.complex64)  # the extractor's buffer is complex64
        power = np.abs(spectrum, dtype=np.float64) ** 2
        mel = np.maximum(1e-10, np.dot(self.mel_filters.T, power.T))
        return (10.0 * np.log10(np.clip(mel, 1e-10, None))).astype(np.float32).T
