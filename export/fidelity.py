"""How far a lower-precision waveform is from the fp32 one: two numbers, numpy only.

- `waveform_relative_error(candidate, reference)`: ||candidate - reference||₂ / ||reference||₂ over the samples.
  Sample-exact: it also counts phase drift that the ear may not hear.
- `log_mel_distance(candidate, reference, sampling_rate)`: the mean absolute difference, in dB, of the two
  log-mel power spectrograms (Hann STFT of N_FFT samples, hop HOP, N_MELS Slaney mel bands up to Nyquist), each
  clamped at TOP_DB below the reference's peak so that near-silence does not dominate. What a listener hears
  of the spectrum; 0 dB for identical clips, ≈1 dB is a small change, tens of dB a different sound.
"""
from __future__ import annotations

import numpy as np

N_FFT = 1024
HOP = 160  # 10 ms at 16 kHz, AudioLDM's own mel hop
N_MELS = 64
TOP_DB = 80.0


def waveform_relative_error(candidate: np.ndarray, reference: np.ndarray) -> float:
    a, b = _pair(candidate, reference)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def log_mel_distance(candidate: np.ndarray, reference: np.ndarray, sampling_rate: int) -> float:
    a, b = _pair(candidate, reference)
    mel_a, mel_b = _mel_power(a, sampling_rate), _mel_power(b, sampling_rate)
    floor = max(float(mel_b.max()), 1e-30) * 10 ** (-TOP_DB / 10)
    db_a = 10 * np.log10(np.maximum(mel_a, floor))
    db_b = 10 * np.log10(np.maximum(mel_b, floor))
    return float(np.mean(np.abs(db_a - db_b)))


def _pair(candidate: np.ndarray, reference: np.ndarray):
    a = np.asarray(candidate, np.float64).reshape(-1)
    b = np.asarray(reference, np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"waveforms differ in length: {a.shape[0]} vs {b.shape[0]} samples")
    return a, b


def _mel_power(wave: np.ndarray, sampling_rate: int) -> np.ndarray:
    """[frames, N_MELS] mel power spectrogram (centred frames, reflect padding, as librosa does)."""
    padded = np.pad(wave, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(N_FFT + 1)[:-1], axis=-1)) ** 2
    return spectrum @ mel_filterbank(sampling_rate, N_FFT, N_MELS).T


def mel_filterbank(sampling_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangular Slaney-scale filters with Slaney area normalisation (librosa's default)."""
    fft_hz = np.linspace(0, sampling_rate / 2, n_fft // 2 + 1)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sampling_rate / 2), n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (fft_hz - lower) / (centre - lower)
    falling = (upper - fft_hz) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (upper - lower))


# Slaney's mel scale: linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz):
    hz = np.asarray(hz, np.float64)
    return np.where(hz < _MIN_LOG_HZ, hz / _F_SP, _MIN_LOG_MEL + np.log(np.maximum(hz, 1e-10) / _MIN_LOG_HZ) / _LOG_STEP)


def _mel_to_hz(mel):
    mel = np.asarray(mel, np.float64)
    return np.where(mel < _MIN_LOG_MEL, mel * _F_SP, _MIN_LOG_HZ * np.exp(_LOG_STEP * (mel - _MIN_LOG_MEL)))
