"""Everything that touches `triton_python_backend_utils`: request → numpy, numpy → response, errors, BLS.

Imported only by the model.py adapters inside the Python backend stub (where pb_utils exists); the logic
they call lives in modules with no Triton import.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import triton_python_backend_utils as pb_utils

from musicgen_client import interface as api

from .protocol import StageError, status_of

logger = logging.getLogger(__name__)

# Status name -> TritonError code attribute. Looked up per error: the stub attaches TritonError to pb_utils
# only after model.py has been imported.
_ERROR_CODES = {"invalid_argument": "INVALID_ARG", "cancelled": "CANCELLED", "internal": "INTERNAL"}


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


def bls_call(model: str, inputs: Dict[str, np.ndarray], output_names: Sequence[str]) -> Dict[str, np.ndarray]:
    """Run another served model from inside this one; its error becomes a StageError naming it."""
    request = pb_utils.InferenceRequest(
        model_name=model,
        inputs=[pb_utils.Tensor(k, np.ascontiguousarray(v)) for k, v in inputs.items()],
        requested_output_names=list(output_names),
    )
    response = request.exec()
    if response.has_error():
        raise StageError(model, response.error().message())
    return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in output_names}


def bls_stage(name: str, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """A served component graph as a recipe's `run_stage`: outputs in interface order."""
    names = [t.name for t in api.COMPONENTS_BY_NAME[name].outputs]
    outputs = bls_call(name, feeds, names)
    return [outputs[n] for n in names]
