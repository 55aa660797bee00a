"""Typed requests at the boundary: one dataclass per served request, parsed and validated in one place.

Errors carry the field, the value and the allowed range; `status_of` maps every error type to the status a
caller sees. No Triton import here: model.py adapters turn these into Triton responses.
"""
from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np

from musicgen_client import interface as api
from musicgen_client.audio_encoding import NONE, RAW, AudioEncoding, EncodingOptionError


class InvalidRequestError(ValueError):
    """The caller's mistake: 400 / INVALID_ARGUMENT."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class StageError(RuntimeError):
    """A downstream model failed: 500 / INTERNAL, naming the stage."""

    def __init__(self, stage: str, message: str):
        super().__init__(f"stage {stage} failed: {message}")
        self.stage = stage


class BadOutputError(StageError):
    """A stage produced something that is not a result (NaN, inf, silence): 500 naming the stage, never audio."""


class CancelledError(RuntimeError):
    """The client went away; the work stopped early."""


class DeadlineExceededError(RuntimeError):
    """The request's own time limit (its `timeout` parameter) passed; the work stopped at the next step or token.
    Not worth retrying as is: the same request needs the same time."""

    PREFIX = "deadline exceeded"

    def __init__(self, message: str):
        super().__init__(f"{self.PREFIX}: {message}")


class UnavailableError(RuntimeError):
    """The server cannot take this request now (busy, shutting down): 503 / UNAVAILABLE, worth a retry."""


class StageUnavailableError(StageError, UnavailableError):
    """A downstream model is busy, or down while the watchdog reloads it: 503, naming the stage."""


def status_of(exc: BaseException) -> str:
    """The one mapping from our errors to a status: 'invalid_argument', 'cancelled', 'deadline_exceeded',
    'unavailable' or 'internal'."""
    if isinstance(exc, InvalidRequestError):
        return "invalid_argument"
    if isinstance(exc, CancelledError):
        return "cancelled"
    if isinstance(exc, DeadlineExceededError):
        return "deadline_exceeded"
    if isinstance(exc, UnavailableError):
        return "unavailable"
    return "internal"


def check_finite(stage: str, values: np.ndarray, where: str = "") -> None:
    """Raise BadOutputError naming `stage` when `values` hold NaN or inf."""
    if not np.isfinite(values).all():
        bad = int(values.size - np.isfinite(values).sum())
        raise BadOutputError(stage, f"produced {bad} non-finite values (NaN or inf){where}")


@dataclass(frozen=True)
class AudioOptions:
    """The AudioLDM parameters shared by text2music and image2music."""

    negative_prompt: Optional[str] = None
    num_inference_steps: int = int(api.STEPS_RANGE.default)
    audio_length_in_s: float = float(api.LENGTH_RANGE.default)
    guidance_scale: float = float(api.GUIDANCE_RANGE.default)
    seed: int = 0
    # Candidates to make and return best first; None: the request did not ask, so one waveform, sent flat
    # ([samples], as before candidates existed) instead of [k, samples].
    num_waveforms_per_prompt: Optional[int] = None

    @property
    def candidates(self) -> int:
        return self.num_waveforms_per_prompt or 1


@dataclass(frozen=True)
class TextToMusicRequest:
    prompt: str
    options: AudioOptions
    encoding: AudioEncoding = AudioEncoding()


Inputs = Dict[str, Optional[np.ndarray]]  # tensor name -> array, None when the request omitted it


def _scalar(inputs: Inputs, name: str) -> Optional[np.ndarray]:
    value = inputs.get(name)
    if value is None:
        return None
    if value.size != 1:
        raise InvalidRequestError(name, f"expected exactly one value, got shape {list(value.shape)}")
    return value.reshape(())


def _text(inputs: Inputs, name: str, required: bool) -> Optional[str]:
    value = _scalar(inputs, name)
    if value is None:
        if required:
            raise InvalidRequestError(name, "is required")
        return None
    raw = value.item()
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if not isinstance(raw, bytes):
        raise InvalidRequestError(name, "must be a UTF-8 string (BYTES)")
    if len(raw) > api.MAX_PROMPT_BYTES:
        raise InvalidRequestError(name, f"is {len(raw)} bytes long: allowed at most {api.MAX_PROMPT_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(name, f"is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if "\x00" in text:
        raise InvalidRequestError(name, "must not contain NUL characters")
    if required and not text.strip():
        raise InvalidRequestError(name, "must not be empty")
    return text


def _number(inputs: Inputs, rng: api.ParameterRange, cast, minimum: Optional[float] = None):
    value = _scalar(inputs, rng.name)
    if value is None:
        return None
    if value.dtype == np.float32:
        # The shortest decimal that is this float32: what the caller typed (1.03, not 1.0299999713897705).
        # It matters: ppdiffusers floors length / 10 ms to mel frames, so 1.0299999 s would lose a frame.
        number = cast(str(value))
    else:
        number = cast(value.item())
    problem = rng.problem(number)
    if problem:
        raise InvalidRequestError(rng.name, problem)
    if minimum is not None and number < minimum:
        raise InvalidRequestError(rng.name, f"{number!r} is below this model's minimum {minimum:.4g}")
    return number


def parse_audio_options(inputs: Inputs, min_audio_length_in_s: float = 0.0) -> AudioOptions:
    """Validate the AudioLDM options; absent ones take the served defaults, an absent seed a fresh one."""
    negative = _text(inputs, api.NEGATIVE_PROMPT, required=False)
    steps = _number(inputs, api.STEPS_RANGE, int)
    length = _number(inputs, api.LENGTH_RANGE, float, minimum=min_audio_length_in_s)
    guidance = _number(inputs, api.GUIDANCE_RANGE, float)
    seed = _number(inputs, api.SEED_RANGE, int)
    candidates = _number(inputs, api.CANDIDATES_RANGE, int)
    defaults = AudioOptions()
    return AudioOptions(
        negative_prompt=negative or None,
        num_inference_steps=defaults.num_inference_steps if steps is None else steps,
        audio_length_in_s=defaults.audio_length_in_s if length is None else length,
        guidance_scale=defaults.guidance_scale if guidance is None else guidance,
        seed=secrets.randbelow(int(api.SEED_RANGE.maximum) + 1) if seed is None else seed,
        num_waveforms_per_prompt=candidates,
    )


def parse_audio_encoding(inputs: Inputs, audio_length_in_s: float) -> AudioEncoding:
    """How the audio is delivered (format, rate, loudness); absent or empty inputs: raw samples, as before."""
    rate = _scalar(inputs, api.OUTPUT_SAMPLING_RATE)
    target = _scalar(inputs, api.LOUDNESS_TARGET)
    try:
        encoding = AudioEncoding(
            audio_format=_text(inputs, api.AUDIO_FORMAT, required=False) or RAW,
            output_sampling_rate=None if rate is None else int(rate.item()),
            loudness=_text(inputs, api.LOUDNESS, required=False) or NONE,
            loudness_target=None if target is None else float(str(target)),  # as typed: see _number
        )
        encoding.check_duration(audio_length_in_s)
    except EncodingOptionError as exc:
        raise InvalidRequestError(exc.field, exc.problem) from None
    return encoding


def parse_text_to_music(inputs: Inputs, min_audio_length_in_s: float = 0.0) -> TextToMusicRequest:
    prompt = _text(inputs, api.PROMPT, required=True)
    options = parse_audio_options(inputs, min_audio_length_in_s)
    return TextToMusicRequest(prompt, options, parse_audio_encoding(inputs, options.audio_length_in_s))


def _image_bytes(inputs: Inputs) -> bytes:
    value = _scalar(inputs, api.IMAGE)
    if value is None:
        raise InvalidRequestError(api.IMAGE, "is required: send the bytes of a PNG or JPEG file")
    raw = value.item()
    if not isinstance(raw, bytes):
        raise InvalidRequestError(api.IMAGE, "must be the encoded file's bytes (BYTES)")
    return raw


@dataclass(frozen=True)
class CaptionRequest:
    image: object  # decoded RGB PIL image
    max_new_tokens: Optional[int]  # None: the model's default


@dataclass(frozen=True)
class TextRequest:
    prompt: str
    max_new_tokens: Optional[int]


@dataclass(frozen=True)
class ImageToMusicRequest:
    image: bytes  # validated to decode; the caption model decodes it again on its side
    options: AudioOptions
    encoding: AudioEncoding = AudioEncoding()


def parse_caption(inputs: Inputs) -> CaptionRequest:
    from .images import decode_image

    return CaptionRequest(decode_image(_image_bytes(inputs)), _number(inputs, api.MAX_NEW_TOKENS_RANGE, int))


def parse_text(inputs: Inputs) -> TextRequest:
    return TextRequest(_text(inputs, api.PROMPT, required=True), _number(inputs, api.MAX_NEW_TOKENS_RANGE, int))


def parse_image_to_music(inputs: Inputs, min_audio_length_in_s: float = 0.0) -> ImageToMusicRequest:
    """Everything checked before any model runs: a bad option must not cost a caption and a chat first."""
    from .images import decode_image

    image = _image_bytes(inputs)
    decode_image(image)
    options = parse_audio_options(inputs, min_audio_length_in_s)
    return ImageToMusicRequest(image, options, parse_audio_encoding(inputs, options.audio_length_in_s))


def throttled(check: Callable[[], bool], every_s: float = 0.02) -> Callable[[], bool]:
    """`check()` asked at most every `every_s` (its last answer in between), and never again once True. For
    "did the client cancel?": in the server that question is a round trip to the server process, so a GPU
    denoising step of a few ms does not pay it each time, and a cancellation is seen within `every_s` (a CPU
    step is longer: every step asks)."""
    asked_at, answer = -math.inf, False

    def throttled_check() -> bool:
        nonlocal asked_at, answer
        now = time.monotonic()
        if not answer and now - asked_at >= every_s:
            asked_at, answer = now, bool(check())
        return answer

    return throttled_check
