"""Streamed calls to the decoupled `*_stream` models over gRPC: progress as it comes, then the result.

A streaming model (interface.STREAM_VARIANTS) answers one request with progress responses (`stage`, `step`,
`total`) and then one response holding the unary model's outputs. `stream_infer` relays the first to a
callback and returns the last. Leaving early, by an exception (the callback's own, a KeyboardInterrupt) or by
the time limit, closes the stream with its request cancelled: the server stops that work at its next step.
"""
from __future__ import annotations

import queue
from typing import Any, Callable, Optional, Sequence

from .interface import STAGE, STEP, TOTAL

# (stage, step, total): stage is one of interface.CAPTION, CHATGLM, DENOISE; step counts from 0 to total.
Progress = Callable[[str, int, int], None]


class StreamTimeout(Exception):
    """No answer within the time limit."""


def progress_of(result: Any) -> Optional[tuple]:
    """(stage, step, total) when `result` is a progress response, else None (the final result)."""
    stage = result.as_numpy(STAGE)
    if stage is None:
        return None
    return (stage.reshape(-1)[0].decode("utf-8"), int(result.as_numpy(STEP).reshape(-1)[0]),
            int(result.as_numpy(TOTAL).reshape(-1)[0]))


def stream_infer(client: Any, model: str, inputs: Sequence[Any], outputs: Sequence[Any], progress: Progress,
                 timeout_s: float) -> Any:
    """Send one request to the streaming `model` on `client` (a tritonclient.grpc InferenceServerClient, which
    holds one stream at a time); call `progress` for each progress response and return the final result.
    `outputs` must ask for the progress outputs (interface.PROGRESS_OUTPUTS) as well as the result's.

    Raises the server's error (tritonclient's InferenceServerException) or StreamTimeout.
    """
    answers: "queue.Queue[tuple]" = queue.Queue()
    # tritonclient calls back with keyword arguments (result=, error=).
    client.start_stream(callback=lambda result, error: answers.put((result, error)), stream_timeout=timeout_s)
    try:
        client.async_stream_infer(model, list(inputs), outputs=list(outputs))
        while True:
            try:
                # The stream's own deadline ends it with an error first; this only guards against silence.
                result, error = answers.get(timeout=timeout_s + 5)
            except queue.Empty:
                raise StreamTimeout(f"no answer from {model} in {timeout_s:g} s") from None
            if error is not None:
                raise error
            step = progress_of(result)
            if step is None:
                return result
            progress(*step)
    finally:
        # After the result this only closes the stream; before it, it also cancels the request on the server.
        client.stop_stream(cancel_requests=True)

