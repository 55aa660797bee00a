"""LLM step graphs run in the stage's own process, the KV cache kept in buffers the runtime owns.

A step graph maps (this step's token inputs, past KV cache) → (last logits, present KV cache). Served over BLS,
every decode step ships the whole cache to the graph model and back (four copies through shared memory and
numpy). Here the decoding loop and the graph share a process and the cache never becomes numpy:

- onnxruntime (`OrtStepSession`): IO binding. The small inputs are bound from numpy, `present_key_values` is
  bound as an output on the session's device and comes back as an OrtValue, which the next step binds as its
  `past_key_values` as is (on CUDA the cache never leaves the GPU). Only the logits are copied out.
- paddle.inference (`PaddleStepSession`): `predictor.run(list of paddle.Tensor)`, whose outputs are
  paddle Tensors; the present cache goes back in as the next step's past without a numpy round trip.

A step then moves one token's tensors across the runtime boundary, not the cache. The graph itself still
slices, concatenates and re-stacks the cache (copies inside the runtime that grow with the context);
export/LLM.md measures them and describes the graph change that removes them.

`StepFn` is what `musicgen.generation.generate` calls; `served_step` is the BLS form of the same thing, for
stage models configured to call the served step graphs.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np

from musicgen_client import interface as api

from ..generation import StepFn
from ..protocol import check_finite
from ..precision import onnx_file
from ..runtime import PADDLE_DIR, OnnxRunner, PaddleRunner, RuntimeOptions, check_precision, open_graph

logger = logging.getLogger(__name__)

STEP_GRAPHS = (api.MINIGPT4_LLM_STEP, api.CHATGLM_LLM_STEP)
PAST = api.PAST_KEY_VALUES.name


class OrtStepSession(OnnxRunner):
    """A step graph on onnxruntime whose present cache stays an OrtValue between steps."""

    def __init__(self, model: Path, options: RuntimeOptions):
        super().__init__(model, options)
        import onnxruntime as ort

        self._ort_value = ort.OrtValue
        # Where the cache lives: the first provider's device (CUDA keeps it on the GPU).
        self._cache_device = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        self._device_id = options.device_id if self._cache_device == "cuda" else 0

    def __call__(self, feeds: Dict[str, Any]) -> Tuple[np.ndarray, Any]:
        binding = self._session.io_binding()
        for name in self.input_names:
            value = feeds[name]
            if isinstance(value, self._ort_value):
                binding.bind_ortvalue_input(name, value)  # last step's present cache, where it was left
            else:
                # In the graph's dtype: an fp16 graph's cache is fp16 (the empty prefill cache is cast, free at
                # zero positions; every later past is the graph's own fp16 present).
                binding.bind_cpu_input(name, self.as_input(name, value))
        logits_name, present_name = self.output_names
        binding.bind_output(logits_name, "cpu")
        binding.bind_output(present_name, self._cache_device, self._device_id)
        self._session.run_with_iobinding(binding)
        logits, present = binding.get_outputs()
        return logits.numpy(), present


class PaddleStepSession(PaddleRunner):
    """A step graph on paddle.inference whose present cache stays a paddle Tensor between steps."""

    def __init__(self, model_dir: Path, options: RuntimeOptions):
        super().__init__(model_dir, options)
        import paddle

        self._paddle = paddle
        self._place = paddle.CUDAPlace(options.device_id) if options.device == "gpu" else paddle.CPUPlace()

    def __call__(self, feeds: Dict[str, Any]) -> Tuple[np.ndarray, Any]:
        tensors = [self._as_tensor(feeds[name]) for name in self.input_names]
        logits, present = self._predictor.run(tensors)  # outputs in graph order
        return logits.numpy(), present

    def _as_tensor(self, value):
        if isinstance(value, self._paddle.Tensor):
            return value
        return self._paddle.to_tensor(np.ascontiguousarray(value), place=self._place)


def open_step_session(version_dir: Path, options: RuntimeOptions) -> StepFn:
    """A step graph's version folder, loaded in the chosen format as a `StepFn` with a runtime-owned cache."""
    version_dir = Path(version_dir)
    check_precision(options)  # the Paddle graph is fp32 only: a variant asked of it fails the load, not ignored
    if options.backend == "onnxruntime":
        session: Any = OrtStepSession(version_dir / onnx_file(options.precision), options)
    elif options.backend == "paddle":
        session = PaddleStepSession(version_dir / PADDLE_DIR, options)
    else:
        return open_graph(version_dir, options)  # raises, naming the valid backends
    logger.info("step graph %s runs in process on %s", version_dir, options.backend)
    return session


def served_step(run_stage, name: str) -> StepFn:
    """A step graph reached through `run_stage` (BLS inside Triton): the cache travels as numpy both ways."""
    return lambda feeds: tuple(run_stage(name, feeds))


def checked_step(step: StepFn, name: str) -> StepFn:
    """`step`, refusing non-finite logits (a broken or fp16-overflowing graph): BadOutputError naming `name`,
    never tokens picked from NaN."""
    def run(feeds):
        logits, past = step(feeds)
        check_finite(name, logits, " in its logits")
        return logits, past
    return run
