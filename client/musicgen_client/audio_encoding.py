"""Delivered audio: a float waveform resampled, loudness-normalised and encoded as a WAV, FLAC or Ogg Vorbis file.

One definition for both sides: text2music and image2music answer `audio_file` with it, and the client writes raw
floats with it, so a file is the same whichever side encoded it (the same bytes for WAV and FLAC; Ogg streams
differ in their random serial number only, and decode to the same samples). Maintained libraries do the signal
work, none of it is written here: libsndfile (`soundfile`) encodes and decodes, libsoxr (`soxr`) resamples,
`pyloudnorm` measures integrated loudness as ITU-R BS.1770-4 defines it.

Resampling is soxr's "VHQ" rather than scipy's `resample_poly`: a dedicated audio converter, linear phase, with
a stopband far below 16-bit noise, that takes any rate pair without a hand-picked filter and returns
n·out/in samples rounded half up (resample_poly rounds up and its default Kaiser window leaks more alias).
"""
from __future__ import annotations

import io
import numbers
from dataclasses import dataclass
from pathlib import PurePath
from typing import Optional, Tuple

import numpy as np
import soundfile
import soxr

from .interface import AUDIO_FORMAT, LOUDNESS, LOUDNESS_TARGET, OUTPUT_SAMPLING_RATE, ParameterRange


@dataclass(frozen=True)
class FileFormat:
    """A file format as libsndfile names it: container and sample encoding."""

    container: str
    subtype: str
    extension: str

    @property
    def integer_samples(self) -> bool:
        return self.subtype.startswith("PCM")


RAW = "raw"  # no file: FP32 samples in the `audio` output, as before this option existed
FILE_FORMATS = {
    "wav": FileFormat("WAV", "PCM_16", ".wav"),
    "wav24": FileFormat("WAV", "PCM_24", ".wav"),
    "wavf32": FileFormat("WAV", "FLOAT", ".wav"),
    "flac": FileFormat("FLAC", "PCM_16", ".flac"),
    "flac24": FileFormat("FLAC", "PCM_24", ".flac"),
    "ogg": FileFormat("OGG", "VORBIS", ".ogg"),  # lossy
}
AUDIO_FORMATS = (RAW,) + tuple(FILE_FORMATS)
# What a file name implies when no format is given: the most widely readable flavour of its extension.
FORMAT_OF_EXTENSION = {".wav": "wav", ".flac": "flac", ".ogg": "ogg", ".oga": "ogg"}

# The model's own rate (16 kHz for AudioLDM) and the usual delivery rates; any of them from any model rate.
OUTPUT_SAMPLING_RATES = (16000, 22050, 44100, 48000)

NONE, PEAK, LUFS = "none", "peak", "lufs"
LOUDNESS_MODES = (NONE, PEAK, LUFS)
# Targets in dBFS (sample peak) and LUFS. Defaults: -1 dBFS leaves lossy codecs room to overshoot; -14 LUFS is
# the level the large streaming services play music at.
LOUDNESS_TARGETS = {
    PEAK: ParameterRange(LOUDNESS_TARGET, -1.0, -60.0, 0.0),
    LUFS: ParameterRange(LOUDNESS_TARGET, -14.0, -70.0, -5.0),
}
_WRITE_BLOCK_FRAMES = 1 << 16
LUFS_BLOCK_S = 0.4  # BS.1770's gating block: integrated loudness is defined on clips of one block or more


class EncodingOptionError(ValueError):
    """A delivery option the service does not offer; its text is "<field>: <problem>", as every 400 is."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.problem = message


def _choices(values) -> str:
    return ", ".join(str(v) for v in values)


@dataclass(frozen=True)
class AudioEncoding:
    """How a waveform is delivered; fields named as the request inputs. The default changes nothing: raw float
    samples at the model's rate. Checked on construction (EncodingOptionError naming the field)."""

    audio_format: str = RAW
    output_sampling_rate: Optional[int] = None  # None: the model's own rate
    loudness: str = NONE
    loudness_target: Optional[float] = None  # None: the mode's default (LOUDNESS_TARGETS)

    def __post_init__(self):
        if self.audio_format not in AUDIO_FORMATS:
            raise EncodingOptionError(AUDIO_FORMAT, f"{self.audio_format!r} is not offered: "
                                                    f"choose one of {_choices(AUDIO_FORMATS)}")
        rate = self.output_sampling_rate
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, numbers.Integral)
                                 or rate not in OUTPUT_SAMPLING_RATES):
            raise EncodingOptionError(OUTPUT_SAMPLING_RATE, f"{rate!r} Hz is not offered: "
                                                            f"choose one of {_choices(OUTPUT_SAMPLING_RATES)}")
        if self.loudness not in LOUDNESS_MODES:
            raise EncodingOptionError(LOUDNESS, f"{self.loudness!r} is not offered: "
                                                f"choose one of {_choices(LOUDNESS_MODES)}")
        target = self.loudness_target
        if target is None:
            return
        if self.loudness == NONE:
            raise EncodingOptionError(LOUDNESS_TARGET, f"{target!r} given without a loudness mode: "
                                                       f"set {LOUDNESS} to {PEAK} or {LUFS}")
        if isinstance(target, bool) or not isinstance(target, numbers.Real):
            raise EncodingOptionError(LOUDNESS_TARGET, f"{target!r} is not a number")
        problem = LOUDNESS_TARGETS[self.loudness].problem(target)
        if problem:
            raise EncodingOptionError(LOUDNESS_TARGET, f"{problem} ({'dBFS' if self.loudness == PEAK else 'LUFS'} "
                                                       f"for {LOUDNESS} {self.loudness})")

    @property
    def target(self) -> Optional[float]:
        """The loudness target in force (dBFS or LUFS), None without normalisation."""
        if self.loudness == NONE:
            return None
        return LOUDNESS_TARGETS[self.loudness].default if self.loudness_target is None else float(self.loudness_target)

    @property
    def file_format(self) -> Optional[FileFormat]:
        return FILE_FORMATS.get(self.audio_format)

    def check_duration(self, seconds: float) -> None:
        """Refuse, before any work, a clip too short for the loudness asked (LUFS needs one gating block)."""
        if self.loudness == LUFS and seconds < LUFS_BLOCK_S:
            raise EncodingOptionError(LOUDNESS, f"{LUFS} needs a clip of at least {LUFS_BLOCK_S} s (one BS.1770 "
                                                f"gating block), this one is {seconds:g} s: use {PEAK}")


@dataclass(frozen=True, eq=False)
class DeliveredAudio:
    """What a request gets: float samples for `raw`, otherwise the encoded file; `sampling_rate` either way."""

    sampling_rate: int
    samples: Optional[np.ndarray] = None
    file: Optional[bytes] = None


def deliver(audio: np.ndarray, sampling_rate: int, encoding: AudioEncoding) -> DeliveredAudio:
    """`audio` (float, samples or samples x channels) resampled, normalised and encoded as `encoding` asks."""
    samples = finite_float32(audio)
    rate = encoding.output_sampling_rate or int(sampling_rate)
    samples = resample(samples, int(sampling_rate), rate)
    if encoding.loudness == PEAK:
        samples = normalise_peak(samples, encoding.target)
    elif encoding.loudness == LUFS:
        samples = normalise_lufs(samples, rate, encoding.target)
    if encoding.file_format is None:
        return DeliveredAudio(rate, samples=samples)
    return DeliveredAudio(rate, file=encode(samples, rate, encoding.audio_format))


def finite_float32(audio: np.ndarray) -> np.ndarray:
    """`audio` as float32 samples (1-D) or samples x channels; ValueError for NaN or inf, which no encoder or
    meter can take and clipping would turn into a file of noise that looks like audio."""
    data = np.asarray(audio, dtype=np.float32)
    if data.ndim not in (1, 2):
        raise ValueError(f"audio must be 1-D (mono) or 2-D (samples x channels), got shape {data.shape}")
    if not np.isfinite(data).all():
        raise ValueError(f"audio holds {int(data.size - np.isfinite(data).sum())} non-finite samples: not encoding it")
    return data


def resampled_length(samples: int, rate_in: int, rate_out: int) -> int:
    """How many samples `resample` returns: samples·out/in rounded half up (soxr's rule)."""
    return (samples * rate_out + rate_in // 2) // rate_in


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return audio
    return soxr.resample(audio, rate_in, rate_out, quality="VHQ").astype(np.float32, copy=False)


def normalise_peak(audio: np.ndarray, target_dbfs: float) -> np.ndarray:
    """Scaled so that the largest |sample| is `target_dbfs`; all-zero audio stays as it is (no gain reaches it)."""
    peak = float(np.abs(audio).max(initial=0.0))
    if peak == 0.0:
        return audio
    return (audio * (10 ** (target_dbfs / 20) / peak)).astype(np.float32)


def integrated_loudness(audio: np.ndarray, sampling_rate: int) -> float:
    """BS.1770-4 integrated loudness in LUFS (pyloudnorm); -inf when every block is under the -70 LUFS gate."""
    import pyloudnorm  # imported on first use: it pulls scipy in, which nothing else here needs

    if audio.shape[0] < LUFS_BLOCK_S * sampling_rate:
        raise ValueError(f"integrated loudness needs at least {LUFS_BLOCK_S} s of audio, "
                         f"got {audio.shape[0] / sampling_rate:g} s")
    return float(pyloudnorm.Meter(sampling_rate, block_size=LUFS_BLOCK_S).integrated_loudness(audio.astype(np.float64)))


def normalise_lufs(audio: np.ndarray, sampling_rate: int, target_lufs: float) -> np.ndarray:
    """Gain to `target_lufs` integrated loudness, but never past full scale: when the target would push a peak
    over 0 dBFS the gain stops there (the clip comes back quieter than asked rather than clipped). Audio the meter
    cannot hear (every block under -70 LUFS) gets no gain: it would take +56 dB or more of its noise floor."""
    loudness = integrated_loudness(audio, sampling_rate)
    peak = float(np.abs(audio).max(initial=0.0))
    if not np.isfinite(loudness) or peak == 0.0:
        return audio
    gain = min(10 ** ((target_lufs - loudness) / 20), 1.0 / peak)
    return (audio * gain).astype(np.float32)


def encode(audio: np.ndarray, sampling_rate: int, audio_format: str) -> bytes:
    """The whole file of `audio_format` (a FILE_FORMATS name) holding `audio`."""
    fmt = FILE_FORMATS[audio_format]
    data = finite_float32(audio)
    if fmt.integer_samples:  # not every libsndfile saturates float → PCM; one that wraps turns overshoots into clicks
        data = np.clip(data, -1.0, 1.0)
    buffer = io.BytesIO()
    channels = 1 if data.ndim == 1 else data.shape[1]
    with soundfile.SoundFile(buffer, "w", int(sampling_rate), channels, fmt.subtype, format=fmt.container) as file:
        # In blocks: libvorbis alloca()s a buffer the size of one write, and a minute at 48 kHz written at once
        # overflows the stack and kills the process (libsndfile issue #1095, python-soundfile #396 and #426).
        for start in range(0, data.shape[0], _WRITE_BLOCK_FRAMES):
            file.write(data[start:start + _WRITE_BLOCK_FRAMES])
    return buffer.getvalue()


def decode(file: bytes) -> Tuple[np.ndarray, int]:
    """An encoded file's float32 samples (samples, or samples x channels) and rate."""
    samples, rate = soundfile.read(io.BytesIO(file), dtype="float32")
    return samples, int(rate)


def format_of_path(path, preferred: Optional[str] = None) -> str:
    """The format to write `path` in: `preferred` (a FILE_FORMATS name, say the one a file came in) when the file
    name's extension is its own or unknown, else the one the extension implies (FORMAT_OF_EXTENSION).
    EncodingOptionError naming audio_format when neither says."""
    implied = FORMAT_OF_EXTENSION.get(PurePath(path).suffix.lower())
    if preferred is not None and (implied is None or
                                  FILE_FORMATS[implied].extension == FILE_FORMATS[preferred].extension):
        return preferred
    if implied is None:
        raise EncodingOptionError(AUDIO_FORMAT, f"cannot tell the format from the file name {str(path)!r}: give one "
                                                f"of {_choices(FILE_FORMATS)} or name the file "
                                                f"{_choices(sorted(FORMAT_OF_EXTENSION))}")
    return implied
