"""LLM step graphs run in the stage's own process, reading the KV cache where it lies.

A step graph call is `run(feeds) -> (logits [rows, vocab], new_key_values [layers, 2, rows, heads, new, head_dim])`
(`musicgen.llm.kv_cache.GraphRun`): the feeds carry the step's token inputs, the mask laid out over the cache and
the per-layer cache buffers (views of `KVCache`'s numpy arrays); only the step's new positions come back, and
`CachedStep` writes them into the buffers. So a decode step moves one token's tensors, never the cache:

- onnxruntime (`OrtStepSession`): IO binding, every input bound as an OrtValue over the numpy memory
  (`OrtValue.ortvalue_from_numpy` shares CPU memory: the session reads the buffers in place); logits and
  new_key_values come back as CPU numpy.
- paddle.inference (`PaddleStepSession`): every input handed over through DLPack (`paddle.from_dlpack` shares the
  numpy memory on the CPU), `predictor.run(tensors)`; the two outputs come back as numpy.

On a GPU the buffers stay in host memory (the runtime copies them to the device each step): correct, not fast;
export/LLM.md says what device-resident buffers would take.

`served_step` is the same call over BLS (`graphs: served`): the stage keeps the numpy `KVCache` and sends its
buffers with every step, by design, for stage-by-stage callers.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np

from musicgen_client import interface as api

from ..precision import onnx_file
from ..protocol import check_finite
from ..runtime import PADDLE_DIR, OnnxRunner, PaddleRunner, RuntimeOptions, check_precision, open_graph
from .kv_cache import GraphRun, cache_input_names

logger = logging.getLogger(__name__)

STEP_GRAPHS = (api.MINIGPT4_LLM_STEP, api.CHATGLM_LLM_STEP)


class OrtStepSession(OnnxRunner):
    """A step graph on onnxruntime reading its inputs, the cache buffers included, from numpy without a copy."""

    def __init__(self, model: Path, options: RuntimeOptions):
        super().__init__(model, options)
        import onnxruntime as ort

        self._ort_value = ort.OrtValue
        # An fp16 variant's cache inputs are fp16: the stage allocates its KVCache so, and binds it without a cast.
        self.cache_dtype = np.dtype(self.input_dtypes[cache_input_names(1)[0]])

    def bound(self, array: np.ndarray):
        """An OrtValue over `array`'s own memory (a C-contiguous view stays a view: no copy)."""
        return self._ort_value.ortvalue_from_numpy(np.ascontiguousarray(array))

    def __call__(self, feeds: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
        binding = self._session.io_binding()
        # In the graph's dtypes (no copy when they already are: the KVCache is allocated in `cache_dtype`).
        inputs = [self.bound(self.as_input(name, feeds[name])) for name in self.input_names]  # alive for the run
        for name, value in zip(self.input_names, inputs):
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        self._session.run_with_iobinding(binding)
        logits, new_key_values = binding.get_outputs()
        return logits.numpy(), new_key_values.numpy()


class PaddleStepSession(PaddleRunner):
    """A step graph on paddle.inference reading its inputs, the cache buffers included, from numpy through DLPack."""

    def __init__(self, model_dir: Path, options: RuntimeOptions):
        super().__init__(model_dir, options)
        import paddle

        self._paddle = paddle
        self._gpu = paddle.CUDAPlace(options.device_id) if options.device == "gpu" else None

    def tensor(self, array: np.ndarray):
        """A paddle Tensor over `array`'s own memory on the CPU (a copy on the device for a GPU predictor)."""
        array = np.ascontiguousarray(array)
        if self._gpu is not None:
            return self._paddle.to_tensor(array, place=self._gpu)
        return self._paddle.from_dlpack(array)

    def __call__(self, feeds: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
        logits, new_key_values = self._predictor.run([self.tensor(feeds[name]) for name in self.input_names])
        return logits.numpy(), new_key_values.numpy()


def open_step_session(version_dir: Path, options: RuntimeOptions) -> GraphRun:
    """A step graph's version folder, loaded in the chosen format as a raw step call (`GraphRun`)."""
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


def cache_dtype(run: GraphRun) -> np.dtype:
    """The dtype a KVCache for `run` holds: its graph's own (fp16 for an fp16 in-process ONNX variant), FP32 for
    everything else (Paddle graphs are fp32; a served graph model speaks the interface's FP32 and casts itself)."""
    return np.dtype(getattr(run, "cache_dtype", np.float32))


def served_step(run_stage, name: str) -> GraphRun:
    """A step graph reached through `run_stage` (BLS inside Triton): the cache buffers travel with every step."""
    return lambda feeds: tuple(run_stage(name, feeds))


def checked_step(run: GraphRun, name: str) -> GraphRun:
    """`run`, refusing non-finite logits (a broken or fp16-overflowing graph): BadOutputError naming `name`,
    never tokens picked from NaN."""
    def checked(feeds):
        logits, new_key_values = run(feeds)
        check_finite(name, logits, " in its logits")
        return logits, new_key_values
    return checked
