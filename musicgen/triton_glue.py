"""Everything that touches `triton_python_backend_utils`: request → numpy, numpy → response, errors, BLS.

Imported only by the model.py adapters inside the Python backend stub (where pb_utils exists); the logic
they call lives in modules with no Triton import.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import Executor
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import triton_python_backend_utils as pb_utils

from musicgen_client import interface as api

from .audioldm.engine import EngineObserver
from .protocol import StageError, StageUnavailableError, status_of

logger = logging.getLogger(__name__)

# Status name -> TritonError code attribute. Looked up per error: the stub attaches TritonError to pb_utils
# only after model.py has been imported.
_ERROR_CODES = {"invalid_argument": "INVALID_ARG", "cancelled": "CANCELLED", "unavailable": "UNAVAILABLE",
                "internal": "INTERNAL"}


def read_inputs(request, names: Sequence[str]) -> Dict[str, Optional[np.ndarray]]:
    """Named inputs as numpy arrays; None for the optional ones the request left out."""
    out = {}
    for name in names:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        out[name] = None if tensor is None else tensor.as_numpy()
    return out


def make_response(outputs: Dict[str, np.ndarray]):
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in outputs.items()])


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


Respond = Callable[[Optional[Dict[str, np.ndarray]], Optional[BaseException]], None]


def respond_later(requests, submit: Callable[[object, Respond], None]) -> None:
    """Hand each request to `submit` with `respond(outputs, error)`, which sends its one response from any
    thread, later. With `execute` returning None this frees the model to take new requests while earlier ones
    run (the in-flight engine answers them): one instance serves many requests at once, no decoupled mode
    needed, so HTTP and gRPC unary calls work. An error raised by `submit` is answered at once."""
    for request in requests:
        sender = request.get_response_sender()

        def respond(outputs, error, sender=sender):
            response = error_response(error) if error is not None else make_response(outputs)
            sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

        try:
            submit(request, respond)
        except Exception as exc:  # noqa: BLE001 - a bad request gets its own error response
            respond(None, exc)


def respond_from_pool(requests, pool: Executor, handle: Callable[[object], Dict[str, np.ndarray]],
                      metrics: Optional["RequestMetrics"] = None) -> None:
    """Run each request's `handle(request) -> outputs` on a worker of `pool` and answer it from there: one
    model instance works on as many requests at once as the pool has workers. Triton's own request duration ends
    when `execute` returns, so `metrics` times each request to its answer."""
    def submit(request, respond: Respond) -> None:
        submitted = time.monotonic()

        def run() -> None:
            try:
                outputs = handle(request)
            except Exception as exc:  # noqa: BLE001 - becomes this request's error response
                respond(None, exc)
                outcome = status_of(exc)
            else:
                respond(outputs, None)
                outcome = "success"
            if metrics is not None:
                metrics.finished(outcome, time.monotonic() - submitted)
        pool.submit(run)

    respond_later(requests, submit)


# What Triton answers for a model whose stub died or that is being reloaded (by the launcher's watchdog).
_DOWN = ("is not healthy", "is not ready", "unavailable", "no version is available")


def bls_call(model: str, inputs: Dict[str, np.ndarray], output_names: Sequence[str]) -> Dict[str, np.ndarray]:
    """Run another served model from inside this one; its error becomes a StageError naming it."""
    request = pb_utils.InferenceRequest(
        model_name=model,
        inputs=[pb_utils.Tensor(k, np.ascontiguousarray(v)) for k, v in inputs.items()],
        requested_output_names=list(output_names),
    )
    response = request.exec()
    if response.has_error():
        error = response.error()
        if error.code() == pb_utils.TritonError.UNAVAILABLE or any(m in error.message() for m in _DOWN):
            raise StageUnavailableError(model, error.message())
        raise StageError(model, error.message())
    return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in output_names}


def bls_stage(name: str, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """A served component graph as a recipe's `run_stage`: outputs in interface order."""
    names = [t.name for t in api.COMPONENTS_BY_NAME[name].outputs]
    outputs = bls_call(name, feeds, names)
    return [outputs[n] for n in names]


_SECONDS = [0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]


class RequestMetrics:
    """Requests ended by outcome and their latency, for a model that answers after `execute` returned (Triton's
    nv_inference_request_duration_us then covers `execute` alone: measured 0.6 ms for a 1.7 s text2music request).
    The families are the same in every model that has them (text2music, image2music), told apart by `model`."""

    def __init__(self, model: str):
        family = pb_utils.MetricFamily
        self.model = model
        self._requests = family("musicgen_requests_total", "requests ended, by outcome", family.COUNTER)
        self._latency = family("musicgen_request_seconds", "seconds from submission to answer", family.HISTOGRAM)
        self._metrics: Dict[tuple, object] = {}

    def _metric(self, family, buckets=None, **labels):
        key = (id(family), tuple(sorted(labels.items())))
        if key not in self._metrics:
            labels = {"model": self.model, **labels}
            self._metrics[key] = family.Metric(labels=labels, buckets=buckets) if buckets else family.Metric(labels=labels)
        return self._metrics[key]

    def finished(self, outcome: str, seconds: float) -> None:
        self._metric(self._requests, outcome=outcome).increment(1)
        self._metric(self._latency, _SECONDS, outcome=outcome).observe(seconds)


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
        self._metric(self._batch_size, self._SIZES, stage=stage).observe(items)
        self._metric(self._stage_seconds, _SECONDS, stage=stage).observe(seconds)
        if stage == api.AUDIOLDM_UNET:
            self._metric(self._steps).increment(items)

    def depth(self, active: int, waiting: int) -> None:
        self._metric(self._depth, state="active").set(active)
        self._metric(self._depth, state="waiting").set(waiting)


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
