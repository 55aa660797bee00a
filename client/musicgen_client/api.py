"""Python API of the music service: `MusicClient`, `image_to_music_by_stages()`, `generate()`, `save_audio()` and
`save_wav()`.

Built over tritonclient's HTTP and gRPC clients. Tensor names, datatypes and parameter ranges all
come from `interface`, so a change on the server side shows up here as a loud failure, not as a
silently ignored input.
"""
from __future__ import annotations

import contextlib
import functools
import http.client
import importlib
import io
import numbers
import os
import secrets
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from . import flow
from .audio_encoding import RAW, AudioEncoding, decode, encode, format_of_path
from .retry import RetryPolicy, call_with_retries
from .interface import (
    AUDIO,
    AUDIO_FILE,
    AUDIO_FORMAT,
    AUDIO_LENGTH_IN_S,
    CANDIDATES_RANGE,
    CAPTION,
    CAPTION_INPUTS,
    CAPTION_OUTPUTS,
    CHATGLM,
    CHATGLM_INPUTS,
    CHATGLM_OUTPUTS,
    DENOISE,
    GUIDANCE_RANGE,
    GUIDANCE_SCALE,
    IMAGE,
    IMAGE2MUSIC,
    IMAGE2MUSIC_INPUTS,
    IMAGE2MUSIC_OUTPUTS,
    LENGTH_RANGE,
    LOUDNESS,
    LOUDNESS_TARGET,
    MAX_IMAGE_BYTES,
    MAX_NEW_TOKENS,
    MAX_NEW_TOKENS_RANGE,
    MAX_PROMPT_BYTES,
    MUSIC_PROMPT,
    NEGATIVE_PROMPT,
    NUM_INFERENCE_STEPS,
    NUM_WAVEFORMS_PER_PROMPT,
    OUTPUT_SAMPLING_RATE,
    PROGRESS_OUTPUTS,
    PROMPT,
    RANKING,
    SAMPLING_RATE,
    SCORES,
    SEED,
    SEED_RANGE,
    STEPS_RANGE,
    STREAM_VARIANTS,
    TEXT,
    TEXT2MUSIC,
    TEXT2MUSIC_INPUTS,
    TEXT2MUSIC_OUTPUTS,
    ParameterRange,
    TensorSpec,
)
from .streaming import Progress, StreamTimeout, stream_infer

if TYPE_CHECKING:  # pillow is optional: only callers who pass PIL images have it
    from PIL.Image import Image as PILImage

# What the image models accept: the encoded file's bytes, a path to the file, or a PIL image.
ImageInput = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", "PILImage"]
_Decoded = TypeVar("_Decoded")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}  # Triton's defaults
# A long clip with many denoising steps can take minutes when the GPU is shared.
DEFAULT_TIMEOUT_S = 300.0
# Establishing a connection never legitimately takes long; don't wait the whole request budget.
_CONNECT_TIMEOUT_S = 10.0
_POLL_INTERVAL_S = 0.5
# Statuses meaning "nobody is serving right now" rather than "your request is wrong":
# gRPC codes as tritonclient spells them, and HTTP 503 (Triton's UNAVAILABLE).
_UNAVAILABLE_STATUSES = frozenset({"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "503"})
# Of those, the refusals ("busy", "shutting down", "reloading", connection refused) are worth a retry; a request
# that ran out of its time is not: it would cost the whole time again.
_REFUSED_STATUSES = frozenset({"StatusCode.UNAVAILABLE", "503"})
# The gRPC deadline is this much later than the server's own (the request's `timeout`), so that the server's
# clear "deadline exceeded" answer arrives before the transport gives up on it.
_DEADLINE_GRACE_S = 2.0
# ... and "your request is wrong" (HTTP 400 / gRPC INVALID_ARGUMENT): sending it again will not help.
_BAD_REQUEST_STATUSES = frozenset({"StatusCode.INVALID_ARGUMENT", "400"})


class MusicClientError(Exception):
    """Base of the errors about the service itself (bad arguments raise ValueError instead)."""


class ServerUnavailableError(MusicClientError):
    """The server could not be reached, did not answer in time, or is not ready. `retryable`: it refused the
    request for now (busy, shutting down, reloading a model, connection refused), so a retry may succeed."""

    def __init__(self, url: str, protocol: str, reason: str, retryable: bool = False):
        self.url = url
        self.protocol = protocol
        self.reason = reason
        self.retryable = retryable
        super().__init__(
            f"Triton server at {url} ({protocol}) is unavailable: {reason}. "
            f"Is it running? Start it with `make serve`."
        )


class MusicServiceError(MusicClientError):
    """The server answered with an error; `status` and `message` are the server's own."""

    def __init__(self, status: Optional[str], message: str):
        self.status = status
        self.message = message
        super().__init__(f"server error ({status}): {message}" if status else f"server error: {message}")

    @property
    def bad_request(self) -> bool:
        """The server refused the request itself (a field out of range, a corrupt image), not failed it."""
        return self.status in _BAD_REQUEST_STATUSES


@dataclass(frozen=True, eq=False)  # eq=False: comparing ndarrays elementwise has no single truth value
class MusicResult:
    """Generated audio: mono float32 samples in [-1, 1], their rate, and the seed that made them.

    With several candidates (`num_waveforms_per_prompt`), `audio` is the best one and `candidates` holds them all,
    best first, with their CLAP `scores` when the server ranked them; `ranking` is how it ordered them ("clap") or
    why it did not ("off: ..."). When the server encoded the audio (an `AudioEncoding` with a file format),
    `audio_file` holds the best one's file as it came (`candidate_files` all of them) and `audio` its decoded
    samples.
    """

    audio: np.ndarray
    sampling_rate: int
    seed: int
    candidates: Optional[np.ndarray] = None  # [k, samples]; None given: `audio` alone, [1, samples]
    scores: Optional[np.ndarray] = None  # [k] cosine similarities to the prompt, descending; None: not ranked
    ranking: Optional[str] = None
    audio_file: Optional[bytes] = field(default=None, kw_only=True)
    audio_format: str = field(default=RAW, kw_only=True)
    candidate_files: Optional[Tuple[bytes, ...]] = field(default=None, kw_only=True)  # best first, with audio_file

    def __post_init__(self) -> None:
        if self.candidates is None:
            object.__setattr__(self, "candidates", np.asarray(self.audio)[None])

    def candidate(self, rank: int) -> "MusicResult":
        """The candidate at `rank` (0: the best) as a result of its own, its file with it when there is one."""
        file = self.candidate_files[rank] if self.candidate_files else None
        return MusicResult(self.candidates[rank], self.sampling_rate, self.seed, audio_file=file,
                           audio_format=self.audio_format)

    @property
    def duration_s(self) -> float:
        return self.audio.shape[0] / self.sampling_rate


@dataclass(frozen=True, eq=False)
class ImageMusicResult(MusicResult):
    """Music made for an image, with the two texts it went through: the image's caption, and the music
    prompt AudioLDM rendered (what the LLM wrote for the caption; the caption itself when that is blank)."""

    caption: str = ""
    music_prompt: str = ""

    @classmethod
    def of(cls, music: MusicResult, caption: str, music_prompt: str) -> "ImageMusicResult":
        """`music` together with the texts it was made from."""
        return cls(**{f.name: getattr(music, f.name) for f in fields(MusicResult)}, caption=caption,
                   music_prompt=music_prompt)


@dataclass(frozen=True)
class HealthReport:
    """Readiness of the server and of each model asked about."""

    server_ready: bool
    models: Mapping[str, bool]

    @property
    def ready(self) -> bool:
        return self.server_ready and all(self.models.values())


def default_url(protocol: str) -> str:
    """The local address Triton listens on for `protocol` unless told otherwise."""
    return f"{DEFAULT_HOST}:{DEFAULT_PORTS[protocol]}"


class _Transport:
    """One tritonclient flavour behind the few calls this client makes.

    The HTTP and gRPC clients share their API except for where a time limit is given; subclasses
    supply only that. Errors are translated here, once, for both.
    """

    protocol: str

    def __init__(self, url: str, timeout_s: float):
        self.url = url
        self.timeout_s = timeout_s
        self.module = importlib.import_module(f"tritonclient.{self.protocol}")
        self._client = self.module.InferenceServerClient(url, **self._client_options())

    def _client_options(self) -> Dict[str, Any]:
        return {}

    def _call_options(self) -> Dict[str, Any]:
        return {}

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._translated_errors():
            return getattr(self._client, method)(*args, **kwargs, **self._call_options())

    def stream(self, model: str, inputs: Sequence[Any], outputs: Sequence[Any], progress: Progress) -> Any:
        """One request to a streaming model: progress to `progress`, then the final result (gRPC only)."""
        raise ValueError(f"progress is streamed over gRPC: use protocol='grpc' (this client uses {self.protocol})")

    @contextlib.contextmanager
    def _translated_errors(self) -> Iterator[None]:
        try:
            yield
        except InferenceServerException as exc:
            if exc.status() in _UNAVAILABLE_STATUSES:
                raise ServerUnavailableError(self.url, self.protocol, exc.message(),
                                             retryable=exc.status() in _REFUSED_STATUSES) from exc
            raise MusicServiceError(exc.status(), exc.message()) from exc
        except OSError as exc:  # the HTTP client's refused connection, DNS failure or socket timeout
            raise ServerUnavailableError(self.url, self.protocol, str(exc) or type(exc).__name__,
                                         retryable=isinstance(exc, ConnectionRefusedError)) from exc
        except http.client.HTTPException as exc:  # the HTTP client got an answer that is not HTTP (a gRPC port?)
            raise ServerUnavailableError(self.url, self.protocol, f"the answer is not HTTP ({exc})") from exc

    def close(self) -> None:
        self._client.close()


class _HttpTransport(_Transport):
    """HTTP/REST: time limits belong to the connection."""

    protocol = "http"

    def _client_options(self) -> Dict[str, Any]:
        return {
            "connection_timeout": min(self.timeout_s, _CONNECT_TIMEOUT_S),
            "network_timeout": self.timeout_s,
        }


class _GrpcTransport(_Transport):
    """gRPC: the channel has no time limit; each call carries its own deadline."""

    protocol = "grpc"

    def _call_options(self) -> Dict[str, Any]:
        return {"client_timeout": self.timeout_s + _DEADLINE_GRACE_S}

    def stream(self, model: str, inputs: Sequence[Any], outputs: Sequence[Any], progress: Progress) -> Any:
        with self._translated_errors():
            try:
                return stream_infer(self._client, model, inputs, outputs, progress, self.timeout_s)
            except StreamTimeout as exc:
                raise ServerUnavailableError(self.url, self.protocol, str(exc)) from exc


_TRANSPORTS = {transport.protocol: transport for transport in (_HttpTransport, _GrpcTransport)}
PROTOCOLS = tuple(_TRANSPORTS)


class MusicClient:
    """Client of the music models served by Triton.

    `url` is host:port without a scheme; when omitted, the local default port of `protocol`
    (8000 for http, 8001 for grpc). `timeout_s` bounds each request: it is sent as the request's `timeout`, and
    the server stops the work at its next step or token once it has passed ("deadline exceeded"); the
    transport gives up a little later. `retry` says how often and how patiently a request the server refused
    for now (503 / UNAVAILABLE, refused connection) is sent again; `NO_RETRIES` turns that off. So that a retry
    is the same request, music requests without a seed get one drawn here (generation with a seed is
    deterministic, caption and chat are greedy).
    """

    def __init__(self, url: Optional[str] = None, protocol: str = "http", timeout_s: float = DEFAULT_TIMEOUT_S,
                 retry: RetryPolicy = RetryPolicy()):
        if protocol not in _TRANSPORTS:
            raise ValueError(f"protocol={protocol!r} is not supported: choose one of {', '.join(PROTOCOLS)}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s={timeout_s!r} must be positive")
        url = url or default_url(protocol)
        if "://" in url:
            raise ValueError(f"url={url!r}: give host:port without a scheme, and choose the protocol with protocol=")
        self.url = url
        self.protocol = protocol
        self.timeout_s = timeout_s
        self.retry = retry
        self._transport = _TRANSPORTS[protocol](url, timeout_s)

    def __enter__(self) -> "MusicClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    def health(self, models: Sequence[str] = (TEXT2MUSIC,)) -> HealthReport:
        """Ask whether the server and `models` are ready; raises ServerUnavailableError if unreachable."""
        server_ready = bool(self._transport.call("is_server_ready"))
        states = {model: bool(self._transport.call("is_model_ready", model)) for model in models}
        return HealthReport(server_ready=server_ready, models=states)

    def wait_until_ready(self, timeout_s: float = 60.0, model: str = TEXT2MUSIC) -> None:
        """Poll until the server and `model` are ready; ServerUnavailableError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                report = self.health((model,))
                if report.ready:
                    return
                problem = f"model {model} is not ready" if report.server_ready else "server is not ready"
            except ServerUnavailableError as exc:
                problem = exc.reason
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerUnavailableError(
                    self.url, self.protocol, f"still not ready after {timeout_s:g} s ({problem})"
                )
            time.sleep(min(_POLL_INTERVAL_S, remaining))

    def text_to_music(
        self,
        prompt: str,
        *,
        negative_prompt: Optional[str] = None,
        num_inference_steps: Optional[int] = None,
        audio_length_in_s: Optional[float] = None,
        guidance_scale: Optional[float] = None,
        seed: Optional[int] = None,
        encoding: Optional[AudioEncoding] = None,
        progress: Optional[Progress] = None,
        num_waveforms_per_prompt: Optional[int] = None,
    ) -> MusicResult:
        """Generate music from a text prompt. Options left as None take the server's defaults.

        `num_waveforms_per_prompt` (1-8) makes that many candidates in one request: `audio` is the best,
        `candidates` all of them best first, `scores` their CLAP similarity to the prompt (when the server ranks).
        Arguments are checked here against the served ranges so mistakes fail before any network
        traffic (ValueError, same wording as the server's); the server checks them again. `encoding` asks the
        server for a file (format, rate, loudness: see `AudioEncoding`); None: raw samples at the model's rate.
        With `progress`, a callable `(stage, step, total)`, the request streams from `text2music_stream`
        (gRPC only) and `progress` hears every denoising step; the result is the same as without it.
        """
        values = {PROMPT: _checked_text(PROMPT, prompt, required=True)}
        values.update(_audio_options(negative_prompt, num_inference_steps, audio_length_in_s, guidance_scale, seed,
                                     num_waveforms_per_prompt))
        values.update(_encoding_values(encoding, audio_length_in_s))
        read = functools.partial(_read_music, encoding=encoding or AudioEncoding())
        return self._infer(TEXT2MUSIC, TEXT2MUSIC_INPUTS, values, TEXT2MUSIC_OUTPUTS, read, progress)

    def image_to_music(
        self,
        image: ImageInput,
        *,
        negative_prompt: Optional[str] = None,
        num_inference_steps: Optional[int] = None,
        audio_length_in_s: Optional[float] = None,
        guidance_scale: Optional[float] = None,
        seed: Optional[int] = None,
        encoding: Optional[AudioEncoding] = None,
        progress: Optional[Progress] = None,
        num_waveforms_per_prompt: Optional[int] = None,
    ) -> ImageMusicResult:
        """Generate music for an image, all stages on this server (the `image2music` model).

        `image` is a PNG or JPEG file's bytes, a path to one, or a PIL image (see `image_bytes`); the
        options are `text_to_music`'s. The result carries the caption and the music prompt as well.
        With `progress`, it streams from `image2music_stream` (gRPC only): `progress(stage, step, total)`
        hears the caption and chatglm stages start and end, then every denoising step.
        """
        values = {IMAGE: image_bytes(image)}
        values.update(_audio_options(negative_prompt, num_inference_steps, audio_length_in_s, guidance_scale, seed,
                                     num_waveforms_per_prompt))
        values.update(_encoding_values(encoding, audio_length_in_s))
        read = functools.partial(_read_image_music, encoding=encoding or AudioEncoding())
        return self._infer(IMAGE2MUSIC, IMAGE2MUSIC_INPUTS, values, IMAGE2MUSIC_OUTPUTS, read, progress)

    def caption(self, image: ImageInput, *, max_new_tokens: Optional[int] = None) -> str:
        """Describe an image (the `caption` model, MiniGPT4); `image` as for `image_to_music`.

        `max_new_tokens` bounds the caption's length; None takes the model's default.
        """
        values = {
            IMAGE: image_bytes(image),
            MAX_NEW_TOKENS: _checked_number(MAX_NEW_TOKENS_RANGE, int, max_new_tokens),
        }
        read_caption = functools.partial(_read_text, name=CAPTION)
        return self._infer(CAPTION, CAPTION_INPUTS, values, CAPTION_OUTPUTS, read_caption)

    def chat(self, prompt: str, *, max_new_tokens: Optional[int] = None) -> str:
        """The answer of the `chatglm` model (ChatGLM) to `prompt`.

        `max_new_tokens` bounds the answer's length; None takes the model's default.
        """
        values = {
            PROMPT: _checked_text(PROMPT, prompt, required=True),
            MAX_NEW_TOKENS: _checked_number(MAX_NEW_TOKENS_RANGE, int, max_new_tokens),
        }
        read_text = functools.partial(_read_text, name=TEXT)
        return self._infer(CHATGLM, CHATGLM_INPUTS, values, CHATGLM_OUTPUTS, read_text)

    def _infer(
        self,
        model: str,
        input_specs: Tuple[TensorSpec, ...],
        values: Mapping[str, Any],
        output_specs: Tuple[TensorSpec, ...],
        decode: Callable[[Any], _Decoded],
        progress: Optional[Progress] = None,
    ) -> _Decoded:
        """Send the values given for `input_specs` (None: leave the optional input out), ask for
        `output_specs`, and return what `decode` makes of the response. With `progress`, the request goes
        to `model`'s streaming twin, which reports to it first."""
        module = self._transport.module
        inputs = []
        for spec in input_specs:
            value = values.get(spec.name)
            if value is None:
                if not spec.optional:
                    raise _invalid(spec.name, "is required")
                continue
            inputs.append(_infer_input(module, spec, value))
        timeout_us = int(self.timeout_s * 1e6)  # Triton's per-request timeout: the server's deadline
        if progress is None:
            outputs = [module.InferRequestedOutput(spec.name) for spec in output_specs]
            response = call_with_retries(
                lambda: self._transport.call("infer", model, inputs, outputs=outputs, timeout=timeout_us),
                self.retry, lambda exc: isinstance(exc, ServerUnavailableError) and exc.retryable)
        else:  # streamed: not retried (its progress has been shown), and bounded by the client's own deadline
            outputs = [module.InferRequestedOutput(spec.name) for spec in output_specs + PROGRESS_OUTPUTS]
            model = STREAM_VARIANTS[model]
            response = self._transport.stream(model, inputs, outputs, progress)
        try:
            return decode(response)
        except (ValueError, IndexError) as exc:  # a malformed answer is the server's fault, not the caller's
            raise MusicServiceError(None, f"{model} answered with unreadable outputs: {exc}") from exc


def image_to_music_by_stages(
    image: ImageInput,
    *,
    caption_client: MusicClient,
    llm_client: MusicClient,
    audio_client: MusicClient,
    encoding: Optional[AudioEncoding] = None,
    progress: Optional[Progress] = None,
    **audio_options: Any,
) -> ImageMusicResult:
    """Image to music with each stage on the endpoint of its choice (say, the LLMs on another server).

    The caption comes from `caption_client`, ChatGLM's music prompt from `llm_client`, the audio from
    `audio_client.text_to_music(music_prompt, **audio_options)`. The glue between the stages is
    `flow`'s, the very code the server's `image2music` runs, so with one server for all three the
    caption, the music prompt and (for the same seed) the audio are those `image_to_music` gives.
    `progress(stage, step, total)` hears each LLM stage start and end, then the denoising steps streamed
    from `audio_client` (which must then use gRPC).
    """
    # Check the options now: a mistake must not cost a caption and a chat first.
    _audio_options(**audio_options)
    report = progress or (lambda stage, step, total: None)
    report(CAPTION, 0, 1)
    caption = caption_client.caption(image)
    report(CAPTION, 1, 1)
    report(CHATGLM, 0, 1)
    try:
        answer = llm_client.chat(flow.music_prompt_request(caption))
    except ValueError as exc:  # a caption that makes a question ChatGLM refuses: a stage's fault, not the caller's
        raise _stage_failed(CHATGLM, str(exc)) from exc
    report(CHATGLM, 1, 1)
    music_prompt = flow.audio_prompt(flow.music_prompt_from_answer(answer), caption, MAX_PROMPT_BYTES)
    if not music_prompt.strip():
        raise _stage_failed(CHATGLM, "neither the music prompt nor the caption has any text to render")
    steps = audio_options.get("num_inference_steps")
    report(DENOISE, 0, int(STEPS_RANGE.default) if steps is None else steps)  # the server's default when None
    music = audio_client.text_to_music(music_prompt, encoding=encoding, **audio_options, progress=progress)
    return ImageMusicResult.of(music, caption, music_prompt)


def _stage_failed(stage: str, message: str) -> MusicServiceError:
    """The error image2music answers when a stage fails (its status is INTERNAL), worded the same."""
    return MusicServiceError(None, f"stage {stage} failed: {message}")


def image_bytes(image: ImageInput, *, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The encoded image the image models are sent for `image`.

    Bytes go as they are, a path (str or os.PathLike) is read, and a PIL image is encoded as PNG
    (lossless: the server sees exactly these pixels). ValueError naming `image` when the file cannot
    be read, or the bytes are empty or over `max_bytes`. Whether they are a sound PNG or JPEG is the
    server's to judge: it decodes them anyway.
    """
    if isinstance(image, (str, os.PathLike)):
        return _read_image_file(image, max_bytes)
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    elif _is_pil_image(image):
        data = _png_bytes(image)
    else:
        raise _invalid(IMAGE, f"must be bytes, a file path or a PIL image, not {type(image).__name__}")
    _check_image_size(len(data), max_bytes)
    return data


def _read_image_file(path: Union[str, "os.PathLike[str]"], max_bytes: int) -> bytes:
    name = os.fspath(path)
    try:
        with open(path, "rb") as file:
            # At most one byte past the limit: a huge file is refused without being loaded whole.
            data = file.read(max_bytes + 1)
            size = max(os.fstat(file.fileno()).st_size, len(data))  # a pipe has no size of its own
    except OSError as exc:
        raise _invalid(IMAGE, f"cannot read {name}: {exc.strerror or exc}") from exc
    _check_image_size(size, max_bytes, f"{name} ")
    return data


def _check_image_size(size: int, max_bytes: int, label: str = "") -> None:
    """ValueError unless the image is neither empty nor over `max_bytes`; `label` names a file."""
    if size == 0:
        raise _invalid(IMAGE, f"{label}is empty: give a PNG or JPEG file")
    if size > max_bytes:
        raise _invalid(IMAGE, f"{label}is {size} bytes: allowed at most {max_bytes}")


def _is_pil_image(value: Any) -> bool:
    # Whoever passes a PIL image has imported PIL.Image already; looking it up imports nothing.
    pil_image = sys.modules.get("PIL.Image")
    return pil_image is not None and isinstance(value, pil_image.Image)


def _png_bytes(image: "PILImage") -> bytes:
    buffer = io.BytesIO()
    try:
        image.save(buffer, format="PNG")
    except OSError:  # a mode PNG cannot store (CMYK, YCbCr, float, ...): the server captions RGB anyway
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _read_music(response: Any, encoding: AudioEncoding) -> MusicResult:
    """The audio outputs: `audio` samples ([k, samples] when candidates were asked for), or for a file format the
    `audio_file` files and their decoded samples; the candidates' `scores` and `ranking` when present."""
    sampling_rate = int(_output(response, SAMPLING_RATE).reshape(-1)[0])
    seed = int(_output(response, SEED).reshape(-1)[0])
    scores = response.as_numpy(SCORES)  # absent while the server does not rank
    ranking = response.as_numpy(RANKING)
    ranked = dict(scores=None if scores is None else scores.reshape(-1).astype(np.float32, copy=False),
                  ranking=None if ranking is None else _read_text(response, name=RANKING))
    if encoding.file_format is None:
        audio = _output(response, AUDIO).astype(np.float32, copy=False)
        candidates = audio if audio.ndim == 2 else audio.reshape(1, -1)
        return MusicResult(candidates[0], sampling_rate, seed, candidates, **ranked)
    files = tuple(_output(response, AUDIO_FILE).reshape(-1))
    candidates = np.stack([_decoded_file(file, encoding, sampling_rate) for file in files])
    return MusicResult(candidates[0], sampling_rate, seed, candidates, **ranked, audio_file=files[0],
                       audio_format=encoding.audio_format, candidate_files=files)


def _decoded_file(file: Any, encoding: AudioEncoding, sampling_rate: int) -> np.ndarray:
    if not isinstance(file, bytes):
        raise ValueError(f"output {AUDIO_FILE!r} is {type(file).__name__}, not BYTES")
    try:
        audio, file_rate = decode(file)
    except RuntimeError as exc:  # libsndfile's "Format not recognised" and the like
        raise ValueError(f"output {AUDIO_FILE!r} is not a readable {encoding.audio_format} file ({exc})") from exc
    if file_rate != sampling_rate:
        raise ValueError(f"output {AUDIO_FILE!r} is at {file_rate} Hz, {SAMPLING_RATE} says {sampling_rate}")
    return audio


def _read_image_music(response: Any, encoding: AudioEncoding) -> ImageMusicResult:
    return ImageMusicResult.of(
        _read_music(response, encoding), _read_text(response, name=CAPTION), _read_text(response, name=MUSIC_PROMPT)
    )


def _read_text(response: Any, name: str) -> str:
    """The BYTES output `name` decoded; ValueError (UnicodeDecodeError is one) when it is not UTF-8 text."""
    value = _output(response, name).reshape(-1)[0]
    if not isinstance(value, bytes):
        raise ValueError(f"output {name!r} is {type(value).__name__}, not BYTES")
    return value.decode("utf-8")


def _output(response: Any, name: str) -> np.ndarray:
    array = response.as_numpy(name)
    if array is None:
        raise ValueError(f"output {name!r} is missing")
    return array


def _infer_input(module: Any, spec: TensorSpec, value: Any) -> Any:
    """An InferInput of `module` holding the scalar `value` in the shape and datatype of `spec`."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    array = np.array([value], dtype=triton_to_np_dtype(spec.datatype)).reshape(spec.dims)
    tensor = module.InferInput(spec.name, list(array.shape), spec.datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def _audio_options(
    negative_prompt: Optional[str] = None,
    num_inference_steps: Optional[int] = None,
    audio_length_in_s: Optional[float] = None,
    guidance_scale: Optional[float] = None,
    seed: Optional[int] = None,
    num_waveforms_per_prompt: Optional[int] = None,
) -> Dict[str, Any]:
    """Check the options every audio-producing model shares; None stays None (server default)."""
    return {
        NEGATIVE_PROMPT: _checked_text(NEGATIVE_PROMPT, negative_prompt),
        NUM_INFERENCE_STEPS: _checked_number(STEPS_RANGE, int, num_inference_steps),
        AUDIO_LENGTH_IN_S: _checked_number(LENGTH_RANGE, float, audio_length_in_s),
        GUIDANCE_SCALE: _checked_number(GUIDANCE_RANGE, float, guidance_scale),
        # Drawn here rather than by the server so that a retried request is the same request.
        SEED: secrets.randbelow(int(SEED_RANGE.maximum) + 1) if seed is None else _checked_number(SEED_RANGE, int, seed),
        NUM_WAVEFORMS_PER_PROMPT: _checked_number(CANDIDATES_RANGE, int, num_waveforms_per_prompt),
    }


def _encoding_values(encoding: Optional[AudioEncoding], audio_length_in_s: Optional[float] = None) -> Dict[str, Any]:
    """The delivery inputs that differ from the defaults (a default request stays what it was before them)."""
    if encoding is None:
        return {}
    if not isinstance(encoding, AudioEncoding):
        raise TypeError(f"encoding must be an AudioEncoding, not {type(encoding).__name__}")
    encoding.check_duration(LENGTH_RANGE.default if audio_length_in_s is None else audio_length_in_s)
    defaults = AudioEncoding()
    return {name: getattr(encoding, name) for name in (AUDIO_FORMAT, OUTPUT_SAMPLING_RATE, LOUDNESS, LOUDNESS_TARGET)
            if getattr(encoding, name) != getattr(defaults, name)}


def _invalid(name: str, message: str) -> ValueError:
    """A ValueError worded like the server's 400 / INVALID_ARGUMENT answers: "<field>: <problem>"."""
    return ValueError(f"{name}: {message}")


def _checked_text(name: str, value: Any, required: bool = False) -> Optional[str]:
    """`value` if it is a string the server accepts (or None when not required), else ValueError."""
    if value is None:
        if required:
            raise _invalid(name, "is required")
        return None
    if not isinstance(value, str):
        raise _invalid(name, f"must be a string, not {type(value).__name__}")
    size = len(value.encode("utf-8"))
    if size > MAX_PROMPT_BYTES:
        raise _invalid(name, f"is {size} bytes long: allowed at most {MAX_PROMPT_BYTES}")
    if "\x00" in value:
        raise _invalid(name, "must not contain NUL characters")
    if required and not value.strip():
        raise _invalid(name, "must not be empty")
    return value


def _checked_number(limits: ParameterRange, kind: type, value: Any) -> Union[int, float, None]:
    """`value` as `kind` if it is None or within `limits`, else ValueError in interface's wording."""
    if value is None:
        return None
    wanted = numbers.Integral if kind is int else numbers.Real
    if isinstance(value, bool) or not isinstance(value, wanted):
        raise _invalid(limits.name, f"{value!r} is not {'an integer' if kind is int else 'a number'}")
    limits.check(value)
    return kind(value)


def generate(
    prompt: str,
    *,
    url: Optional[str] = None,
    protocol: str = "http",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    **options: Any,
) -> np.ndarray:
    """One-shot text to music: the mono float32 samples (16 kHz for AudioLDM).

    `options` are `MusicClient.text_to_music`'s: negative_prompt, num_inference_steps, audio_length_in_s,
    guidance_scale, seed, num_waveforms_per_prompt (then the best candidate is returned).
    """
    with MusicClient(url, protocol, timeout_s) as client:
        return client.text_to_music(prompt, **options).audio


def save_audio(path: Union[str, os.PathLike], result: MusicResult, audio_format: Optional[str] = None) -> Path:
    """Write `result` as an audio file; returns the path. Missing parent directories are created.

    `audio_format` (a file format of `audio_encoding.FILE_FORMATS`) defaults to the one the file name implies
    (`.wav`, `.flac`, `.ogg`), or to the server's when the name fits it or implies none (`song.wav` keeps a
    server's 24-bit WAV). A file the server encoded in that format is written as it came; otherwise the samples
    are encoded here, by the same code the server runs.
    """
    served = result.audio_format if result.audio_file is not None else None
    audio_format = audio_format or format_of_path(path, preferred=served)
    AudioEncoding(audio_format)  # ValueError naming audio_format for a name that is not offered
    if audio_format == RAW:
        raise _invalid(AUDIO_FORMAT, f"{RAW} is not a file format: give one of the others")
    if result.audio_file is not None and audio_format == result.audio_format:
        return _write_file(path, result.audio_file)
    return _write_file(path, encode(result.audio, result.sampling_rate, audio_format))


def save_wav(path: Union[str, os.PathLike], audio: np.ndarray, sampling_rate: int) -> Path:
    """Write `audio` (samples, or samples x channels) as 16-bit PCM WAV whatever the file name; returns the path.

    Samples are clipped to [-1, 1] first (see `audio_encoding.encode`); NaN or inf is refused. Missing parent
    directories are created.
    """
    if sampling_rate <= 0:
        raise ValueError(f"sampling_rate={sampling_rate!r} must be positive")
    return _write_file(path, encode(audio, sampling_rate, "wav"))


def _write_file(path: Union[str, os.PathLike], data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
