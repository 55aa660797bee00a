"""Python API of the music service: `MusicClient`, `generate()` and `save_wav()`.

Built over tritonclient's HTTP and gRPC clients. Tensor names, datatypes and parameter ranges all
come from `interface`, so a change on the server side shows up here as a loud failure, not as a
silently ignored input.
"""
from __future__ import annotations

import importlib
import numbers
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from .interface import (
    AUDIO,
    AUDIO_LENGTH_IN_S,
    AUDIO_OUTPUTS,
    GUIDANCE_RANGE,
    GUIDANCE_SCALE,
    LENGTH_RANGE,
    MAX_PROMPT_BYTES,
    NEGATIVE_PROMPT,
    NUM_INFERENCE_STEPS,
    PROMPT,
    SAMPLING_RATE,
    SEED,
    SEED_RANGE,
    STEPS_RANGE,
    TEXT2MUSIC,
    TEXT2MUSIC_INPUTS,
    ParameterRange,
    TensorSpec,
)

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


class MusicClientError(Exception):
    """Base of the errors about the service itself (bad arguments raise ValueError instead)."""


class ServerUnavailableError(MusicClientError):
    """The server could not be reached, did not answer in time, or is not ready."""

    def __init__(self, url: str, protocol: str, reason: str):
        self.url = url
        self.protocol = protocol
        self.reason = reason
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


@dataclass(frozen=True, eq=False)  # eq=False: comparing ndarrays elementwise has no single truth value
class MusicResult:
    """Generated audio: mono float32 samples in [-1, 1], their rate, and the seed that made them."""

    audio: np.ndarray
    sampling_rate: int
    seed: int

    @property
    def duration_s(self) -> float:
        return self.audio.shape[0] / self.sampling_rate


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
        try:
            return getattr(self._client, method)(*args, **kwargs, **self._call_options())
        except InferenceServerException as exc:
            if exc.status() in _UNAVAILABLE_STATUSES:
                raise ServerUnavailableError(self.url, self.protocol, exc.message()) from exc
            raise MusicServiceError(exc.status(), exc.message()) from exc
        except OSError as exc:  # the HTTP client's refused connection, DNS failure or socket timeout
            raise ServerUnavailableError(self.url, self.protocol, str(exc) or type(exc).__name__) from exc

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
        return {"client_timeout": self.timeout_s}


_TRANSPORTS = {transport.protocol: transport for transport in (_HttpTransport, _GrpcTransport)}
PROTOCOLS = tuple(_TRANSPORTS)


class MusicClient:
    """Client of the music models served by Triton.

    `url` is host:port without a scheme; when omitted, the local default port of `protocol`
    (8000 for http, 8001 for grpc). `timeout_s` bounds each request.
    """

    def __init__(self, url: Optional[str] = None, protocol: str = "http", timeout_s: float = DEFAULT_TIMEOUT_S):
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
    ) -> MusicResult:
        """Generate music from a text prompt. Options left as None take the server's defaults.

        Arguments are checked here against the served ranges so mistakes fail before any network
        traffic (ValueError, same wording as the server's); the server checks them again.
        """
        values = {PROMPT: _checked_text(PROMPT, prompt, required=True)}
        values.update(_audio_options(negative_prompt, num_inference_steps, audio_length_in_s, guidance_scale, seed))
        return self._infer_audio(TEXT2MUSIC, TEXT2MUSIC_INPUTS, values)

    def _infer_audio(self, model: str, specs: Tuple[TensorSpec, ...], values: Mapping[str, Any]) -> MusicResult:
        """Send the values given for `specs` (None: leave the optional input out) and decode the audio."""
        module = self._transport.module
        inputs = []
        for spec in specs:
            value = values.get(spec.name)
            if value is None:
                if not spec.optional:
                    raise _invalid(spec.name, "is required")
                continue
            inputs.append(_infer_input(module, spec, value))
        outputs = [module.InferRequestedOutput(spec.name) for spec in AUDIO_OUTPUTS]
        response = self._transport.call("infer", model, inputs, outputs=outputs)
        try:
            return MusicResult(
                audio=_output(response, AUDIO).reshape(-1).astype(np.float32, copy=False),
                sampling_rate=int(_output(response, SAMPLING_RATE).reshape(-1)[0]),
                seed=int(_output(response, SEED).reshape(-1)[0]),
            )
        except (ValueError, IndexError) as exc:  # a malformed answer is the server's fault, not the caller's
            raise MusicServiceError(None, f"{model} answered with unreadable outputs: {exc}") from exc


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
    negative_prompt: Optional[str],
    num_inference_steps: Optional[int],
    audio_length_in_s: Optional[float],
    guidance_scale: Optional[float],
    seed: Optional[int],
) -> Dict[str, Any]:
    """Check the options every audio-producing model shares; None stays None (server default)."""
    return {
        NEGATIVE_PROMPT: _checked_text(NEGATIVE_PROMPT, negative_prompt),
        NUM_INFERENCE_STEPS: _checked_number(STEPS_RANGE, int, num_inference_steps),
        AUDIO_LENGTH_IN_S: _checked_number(LENGTH_RANGE, float, audio_length_in_s),
        GUIDANCE_SCALE: _checked_number(GUIDANCE_RANGE, float, guidance_scale),
        SEED: _checked_number(SEED_RANGE, int, seed),
    }


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
    guidance_scale, seed.
    """
    with MusicClient(url, protocol, timeout_s) as client:
        return client.text_to_music(prompt, **options).audio


def save_wav(path: Union[str, os.PathLike], audio: np.ndarray, sampling_rate: int) -> Path:
    """Write `audio` (samples, or samples x channels) as 16-bit PCM WAV; returns the path.

    Samples are clipped to [-1, 1] first: not every libsndfile saturates when converting float to
    PCM, and one that wraps turns overshoots into loud clicks. Missing parent directories are created.
    """
    path = Path(path)
    data = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    if data.ndim not in (1, 2):
        raise ValueError(f"audio must be 1-D (mono) or 2-D (samples x channels), got shape {data.shape}")
    if sampling_rate <= 0:
        raise ValueError(f"sampling_rate={sampling_rate!r} must be positive")
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, data, int(sampling_rate), subtype="PCM_16", format="WAV")
    return path
