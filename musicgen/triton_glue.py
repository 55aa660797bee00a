"""Everything that touches `triton_python_backend_utils`: request → numpy, numpy → response, errors, BLS.

Imported only by the model.py adapters inside the Python backend stub (where pb_utils exists); the logic
they call lives in modules with no Triton import.
"""
from __future__ import annotations

import json
import logging
import time
import threading
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import triton_python_backend_utils as pb_utils

from musicgen_client import interface as api

from . import manifest
from .admission import BoundedPool
from .inflight import EngineObserver
from .cancellation import CANCEL_FLAG_PARAMETER, CancelFlags, Watch, cancelling_children, is_flag_name
from .protocol import (CancelledError, DeadlineExceededError, InvalidRequestError, StageError, StageUnavailableError,
                       status_of, throttled)

logger = logging.getLogger(__name__)

# Status name -> TritonError code attribute. Looked up per error: the stub attaches TritonError to pb_utils
# only after model.py has been imported. Triton has no DEADLINE_EXCEEDED code: a request past its own timeout
# is CANCELLED, its message starting "deadline exceeded".
_ERROR_CODES = {"invalid_argument": "INVALID_ARG", "cancelled": "CANCELLED", "deadline_exceeded": "CANCELLED",
                "unavailable": "UNAVAILABLE", "internal": "INTERNAL"}
_FLAGS = CancelFlags()


def watch(request, responder: Optional["Responder"] = None) -> Watch:
    """The request's `keep_going()`: its gRPC cancellation (a decoupled model's through its `responder`), its
    `timeout` parameter (Triton's per-request timeout, µs; 0 is none) counted from now, and the cancel flag a
    parent request may have sent with it. Asking whether the client cancelled is a round trip to the server
    process: it is asked at most every 20 ms (musicgen.protocol.throttled), not at every GPU step."""
    timeout_us = request.timeout()
    flag = json.loads(request.parameters() or "{}").get(CANCEL_FLAG_PARAMETER)
    if flag is not None and not is_flag_name(flag):
        raise InvalidRequestError(CANCEL_FLAG_PARAMETER, "is not a cancel flag name (set by image2music only)")
    is_cancelled = responder.is_cancelled if responder is not None else request.is_cancelled
    return Watch(throttled(is_cancelled), timeout_us / 1e6 if timeout_us else None, _FLAGS, flag)


def verified_version_dir(args) -> Path:
    """This model's version folder (from `initialize`'s args), every file checked against its manifest: a
    damaged asset fails the load naming the file (musicgen.manifest)."""
    folder = Path(args["model_repository"]) / args["model_version"]
    manifest.verify(folder)
    return folder


def read_inputs(request, names: Sequence[str]) -> Dict[str, Optional[np.ndarray]]:
    """Named inputs as numpy arrays; None for the optional ones the request left out."""
    out = {}
    for name in names:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        out[name] = None if tensor is None else tensor.as_numpy()
    return out


def make_response(outputs: Dict[str, np.ndarray]):
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in outputs.items()])


def progress_tensors(stage: str, step: int, total: int) -> Dict[str, np.ndarray]:
    """A streamed progress response's outputs (api.PROGRESS_OUTPUTS)."""
    return {api.STAGE: np.array([stage.encode("utf-8")], dtype=object), api.STEP: np.array([step], dtype=np.int32),
            api.TOTAL: np.array([total], dtype=np.int32)}


def error_response(exc: BaseException):
    status = status_of(exc)
    if status == "internal":
        logger.exception("request failed")  # ours: keep the traceback in the server log
    code = getattr(pb_utils.TritonError, _ERROR_CODES[status])
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), code))


def respond_each(requests, handle: Callable[[object], Dict[str, np.ndarray]]) -> List:
    """One response per request: a failing request gets its own error, its neighbours still get results."""
    responses = []
    for request in requests:
        try:
            responses.append(make_response(handle(request)))
        except Exception as exc:  # noqa: BLE001 - every error becomes this request's response
            responses.append(error_response(exc))
    return responses


def is_decoupled(model_config: dict) -> bool:
    """Whether the model's config makes it decoupled (a streaming variant, musicgen.repository)."""
    return bool(model_config.get("model_transaction_policy", {}).get("decoupled", False))


class Responder:
    """How one request is answered, from any thread: `responder(outputs, error)` sends its final response. A
    decoupled model's responder also streams `progress(stage, step, total)` responses before it; a unary
    model's ignores them. `is_cancelled()` says whether the client cancelled (`watch` adds the deadline)."""

    def __init__(self, request, decoupled: bool):
        self._request = request
        self._sender = request.get_response_sender()
        self.decoupled = decoupled

    def __call__(self, outputs: Optional[Dict[str, np.ndarray]], error: Optional[BaseException]) -> None:
        response = error_response(error) if error is not None else make_response(outputs)
        self._sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def is_cancelled(self) -> bool:
        # A decoupled model reads cancellation from the request's response sender, a unary one from the request.
        return self._sender.is_cancelled() if self.decoupled else self._request.is_cancelled()

    def progress(self, stage: str, step: int, total: int) -> None:
        if not self.decoupled:
            return
        try:
            self._sender.send(make_response(progress_tensors(stage, step, total)))
        except Exception:  # noqa: BLE001 - a lost progress message must not fail the work; cancellation is
            logger.debug("progress not sent", exc_info=True)  # seen through is_cancelled()


def respond_later(requests, submit: Callable[[object, Responder], None], decoupled: bool = False) -> None:
    """Hand each request to `submit` with its Responder, which sends its one final response from any thread,
    later (and progress before it, when `decoupled`). With `execute` returning None this frees the model to take
    new requests while earlier ones run (the in-flight engine answers them): one instance serves many requests
    at once, and a unary model needs no decoupled mode, so HTTP and gRPC unary calls work. An error raised by
    `submit` is answered at once."""
    for request in requests:
        respond = Responder(request, decoupled)
        try:
            submit(request, respond)
        except Exception as exc:  # noqa: BLE001 - a bad request gets its own error response
            respond(None, exc)


def answer_when_done(future: Future, respond: "Responder", outputs_of: Callable[[Any], Dict[str, np.ndarray]]) -> None:
    """Answer a request from its in-flight engine's future, on whichever thread completes it: `outputs_of(result)`
    is the response; the future's error, or one raised building the outputs, is the request's error response."""
    def done(finished: Future) -> None:
        try:
            outputs = outputs_of(finished.result())
        except Exception as exc:  # noqa: BLE001 - becomes this request's error response
            respond(None, exc)
            return
        respond(outputs, None)

    future.add_done_callback(done)


def respond_from_pool(requests, pool: BoundedPool, handle: Callable[[object, Responder], Dict[str, np.ndarray]],
                      decoupled: bool = False, metrics: Optional["RequestMetrics"] = None) -> None:
    """Run each request's `handle(request, responder) -> outputs` on a worker of `pool` and answer it from
    there: one model instance works on as many requests at once as the pool has workers; a full pool answers
    503. Triton's own request duration ends when `execute` returns, so `metrics` times each request to its
    answer."""
    def submit(request, respond: Responder) -> None:
        submitted = time.monotonic()

        def run() -> None:
            try:
                outputs = handle(request, respond)
            except Exception as exc:  # noqa: BLE001 - becomes this request's error response
                respond(None, exc)
                outcome = status_of(exc)
            else:
                respond(outputs, None)
                outcome = "success"
            if metrics is not None:
                metrics.finished(outcome, time.monotonic() - submitted)
        pool.submit(run)

    respond_later(requests, submit, decoupled)


# How the errors of a child that stopped begin (CancelledError's messages, DeadlineExceededError's prefix).
_STOPPED = ("cancelled ", DeadlineExceededError.PREFIX)
# What Triton answers for a model whose stub died or that is being reloaded (by the launcher's watchdog).
_DOWN = ("is not healthy", "is not ready", "unavailable", "no version is available")


def _bls_request(model: str, inputs: Dict[str, np.ndarray], output_names: Sequence[str], **options):
    return pb_utils.InferenceRequest(
        model_name=model,
        inputs=[pb_utils.Tensor(k, np.ascontiguousarray(v)) for k, v in inputs.items()],
        requested_output_names=list(output_names), **options)


@contextmanager
def _child_of(parent: Optional[Watch]) -> Iterator[dict]:
    """The BLS request options that tie a child to its `parent` request: what is left of the parent's deadline
    as the child's timeout, and a cancel flag raised once the parent is cancelled (BLS cannot cancel), which
    stops the child at its next step or token."""
    if parent is None:
        yield {}
        return
    remaining_s = parent.remaining_s()
    timeout = {} if remaining_s is None else {"timeout": max(1, int(remaining_s * 1e6))}
    with cancelling_children(parent, _FLAGS) as flag:
        yield {"parameters": {CANCEL_FLAG_PARAMETER: flag}, **timeout}


def _check_bls_response(model: str, response) -> None:
    """A BLS response's error as the error to raise: the child's stop (its parent's cancel or deadline) as
    such, StageUnavailableError while the model is down, otherwise a StageError naming it."""
    if response.has_error():
        error = response.error()
        # The child stopped because its parent did (BLS does not always carry the CANCELLED code: the message)
        if error.code() == pb_utils.TritonError.CANCELLED or error.message().startswith(_STOPPED):
            if error.message().startswith(DeadlineExceededError.PREFIX):
                raise DeadlineExceededError(f"{error.message()[len(DeadlineExceededError.PREFIX) + 2:]} (in {model})")
            raise CancelledError(f"in {model}: {error.message()}")
        if error.code() == pb_utils.TritonError.UNAVAILABLE or any(m in error.message() for m in _DOWN):
            raise StageUnavailableError(model, error.message())
        raise StageError(model, error.message())


def bls_call(model: str, inputs: Dict[str, np.ndarray], output_names: Sequence[str],
             parent: Optional[Watch] = None) -> Dict[str, np.ndarray]:
    """Run another served model from inside this one (as a child of the `parent` request's Watch, when given);
    its error becomes a StageError naming it. An output it did not produce (text2music's `scores` while ranking
    is off) is left out of the result."""
    with _child_of(parent) as options:
        response = _bls_request(model, inputs, output_names, **options).exec()
    _check_bls_response(model, response)
    tensors = {name: pb_utils.get_output_tensor_by_name(response, name) for name in output_names}
    return {name: tensor.as_numpy() for name, tensor in tensors.items() if tensor is not None}


def bls_stream(model: str, inputs: Dict[str, np.ndarray], output_names: Sequence[str],
               progress: Callable[[str, int, int], None], parent: Optional[Watch] = None) -> Dict[str, np.ndarray]:
    """Run a streaming (decoupled) model from inside this one, as a child of `parent`: its progress responses go
    to `progress`, its result's `output_names` are returned."""
    outputs = None
    with _child_of(parent) as options:
        names = list(output_names) + [t.name for t in api.PROGRESS_OUTPUTS]
        for response in _bls_request(model, inputs, names, **options).exec(decoupled=True):
            _check_bls_response(model, response)
            tensors = {t.name(): t for t in response.output_tensors()}
            if api.STAGE in tensors:
                progress(tensors[api.STAGE].as_numpy()[0].decode("utf-8"), int(tensors[api.STEP].as_numpy()[0]),
                         int(tensors[api.TOTAL].as_numpy()[0]))
            elif output_names[0] in tensors:  # an output the model did not produce (`scores`) is left out
                outputs = {name: tensors[name].as_numpy() for name in output_names if name in tensors}
    if outputs is None:
        raise StageError(model, "the stream ended without a result")
    return outputs


def bls_stage(name: str, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """A served component graph as a recipe's `run_stage`: outputs in interface order."""
    names = [t.name for t in api.COMPONENTS_BY_NAME[name].outputs]
    outputs = bls_call(name, feeds, names)
    return [outputs[n] for n in names]


_SECONDS = [0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]


class RequestMetrics:
    """Requests ended by outcome and their latency, for a model that answers after `execute` returned (Triton's
    nv_inference_request_duration_us then covers `execute` alone: measured 0.6 ms for a 1.7 s text2music request).
    The families are the same in every model that has them (text2music, image2music), told apart by `model`.

    Each metric update is a round trip from this stub to the server process: a few per denoising step cost more
    than a GPU UNet step's share of the host time. So updates are recorded here and sent when a request ends
    (before its response goes out: a client that reads the metrics after its answer sees its request counted)
    or once `flush_s` has passed, for long requests.
    """

    def __init__(self, model: str, flush_s: float = 1.0):
        family = pb_utils.MetricFamily
        self.model = model
        self._requests = family("musicgen_requests_total", "requests ended, by outcome", family.COUNTER)
        self._latency = family("musicgen_request_seconds", "seconds from submission to answer", family.HISTOGRAM)
        self._metrics: Dict[tuple, object] = {}
        self._lock = threading.Lock()  # image2music's workers end requests concurrently
        self._pending: List[Tuple[object, str, float]] = []  # (metric, "observe" or "increment", value)
        self._gauges: Dict[object, float] = {}  # a gauge's last value is all that counts
        self._flush_s, self._flushed_at = flush_s, time.monotonic()

    def _metric(self, family, buckets=None, **labels):
        key = (id(family), tuple(sorted(labels.items())))
        if key not in self._metrics:
            labels = {"model": self.model, **labels}
            self._metrics[key] = family.Metric(labels=labels, buckets=buckets) if buckets else family.Metric(labels=labels)
        return self._metrics[key]

    def _record(self, metric, update: str, value: float) -> None:
        with self._lock:
            if update == "set":
                self._gauges[metric] = value
            else:
                self._pending.append((metric, update, value))
            due = time.monotonic() - self._flushed_at >= self._flush_s
        if due:
            self.flush()

    def finished(self, outcome: str, seconds: float) -> None:
        with self._lock:
            self._pending.append((self._metric(self._requests, outcome=outcome), "increment", 1))
            self._pending.append((self._metric(self._latency, _SECONDS, outcome=outcome), "observe", seconds))
        self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            gauges, self._gauges = self._gauges, {}
            self._flushed_at = time.monotonic()
        for metric, update, value in pending + [(metric, "set", value) for metric, value in gauges.items()]:
            getattr(metric, update)(value)


class EngineMetrics(RequestMetrics, EngineObserver):
    """The AudioLDM engine's reports as Prometheus metrics beside Triton's own on the metrics port."""

    _SIZES = [1, 2, 4, 8, 16, 32, 64]

    def __init__(self, model: str):
        super().__init__(model)
        family = pb_utils.MetricFamily
        self._batch_size = family("musicgen_batch_size", "requests per component call of the batching engine",
                                  family.HISTOGRAM)
        self._stage_seconds = family("musicgen_stage_seconds", "seconds per component call", family.HISTOGRAM)
        self._steps = family("musicgen_denoise_steps_total", "denoising steps done, summed over requests",
                             family.COUNTER)
        self._depth = family("musicgen_engine_requests", "requests in the engine, by state", family.GAUGE)

    def batch(self, stage: str, items: int, seconds: float) -> None:
        self._record(self._metric(self._batch_size, self._SIZES, stage=stage), "observe", items)
        self._record(self._metric(self._stage_seconds, _SECONDS, stage=stage), "observe", seconds)
        if stage == api.AUDIOLDM_UNET:
            self._record(self._metric(self._steps), "increment", items)

    def depth(self, active: int, waiting: int) -> None:
        self._record(self._metric(self._depth, state="active"), "set", active)
        self._record(self._metric(self._depth, state="waiting"), "set", waiting)


class GenerationMetrics:
    """An LLM stage's (caption, chatglm) requests as Prometheus metrics: tokens generated and seconds per request,
    so that tokens/s is rate(musicgen_generated_tokens_total) / rate(musicgen_generation_seconds_sum)."""

    def __init__(self, model: str):
        family = pb_utils.MetricFamily
        labels = {"model": model}
        # The families must outlive their metrics (Triton refuses to update a metric of a deleted family): keep both.
        self._families = (family("musicgen_generated_tokens_total", "tokens generated by an LLM stage", family.COUNTER),
                          family("musicgen_generation_seconds", "seconds per LLM stage request, the image or prompt "
                                 "encoding included", family.HISTOGRAM))
        self._tokens = self._families[0].Metric(labels=labels)
        self._seconds = self._families[1].Metric(labels=labels, buckets=_SECONDS)

    def observe(self, tokens: int, seconds: float) -> None:
        self._tokens.increment(tokens)
        self._seconds.observe(seconds)
