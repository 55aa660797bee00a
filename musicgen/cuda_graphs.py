"""Run an ONNX graph on the GPU as replayed CUDA graphs: IO binding to fixed device buffers, one captured graph
per input shape, the batch dimension padded up to a few sizes so that a handful of graphs serve every batch.

Why: at these model sizes a UNet step on an H200 is launch-bound (FEASIBILITY.md: 15.5 ms with plain
`session.run`, 6.4 ms replayed as a CUDA graph with IO binding). onnxruntime captures a graph per
`gpu_graph_id` run option and replays it only into the buffers it was captured with, so each input shape gets
its own binding, device buffers and id. The in-flight batching engine sends a different number of rows
almost every step; padding rows up to the next power of two (repeating the last row: a valid input, whose
outputs are dropped) keeps the captured set small, as vLLM and TensorRT-LLM do with their batch-size buckets.

Every graph this serves is batch-first in all its inputs and outputs (the AudioLDM UNet, VAE decoder and
vocoder): rows never mix, so a padded row changes nothing in the others. Shapes past `max_graphs` run
uncaptured through the same binding path instead of capturing without bound.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Tuple

import numpy as np

logger = logging.getLogger(__name__)

SKIP_CAPTURE = -1  # onnxruntime's gpu_graph_id that runs without capturing or replaying (kCudaGraphAnnotationSkip)


def padded_rows(rows: int) -> int:
    """The batch size a request of `rows` runs at: the next power of two."""
    if rows < 1:
        raise ValueError(f"a batch needs at least one row, got {rows}")
    return 1 << (rows - 1).bit_length()


def pad_rows(feeds: Dict[str, np.ndarray], rows: int) -> Dict[str, np.ndarray]:
    """Every input grown along its first axis to `rows` by repeating its last row."""
    padded = {}
    for name, value in feeds.items():
        missing = rows - value.shape[0]
        if missing < 0:
            raise ValueError(f"{name} has {value.shape[0]} rows, more than {rows}")
        padded[name] = value if missing == 0 else np.concatenate([value, np.repeat(value[-1:], missing, axis=0)])
    return padded


def batch_rows(feeds: Dict[str, np.ndarray]) -> int:
    """The batch size of batch-first feeds; they must agree."""
    sizes = {value.shape[0] for value in feeds.values()}
    if len(sizes) != 1:
        raise ValueError(f"inputs disagree on the batch size: {({n: v.shape for n, v in feeds.items()})}")
    return sizes.pop()


Signature = Tuple[Tuple[str, Tuple[int, ...]], ...]


class _Bound:
    """One input shape's device buffers, binding and graph id. Its first run allocates the outputs (uncaptured);
    keeping them bound gives every later run, and so the captured graph, the same output addresses."""

    def __init__(self, session, ort, feeds: Dict[str, np.ndarray], device_id: int, graph_id: int):
        self.binding = session.io_binding()
        self.inputs = {}
        for name, value in feeds.items():
            buffer = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), "cuda", device_id)
            self.binding.bind_ortvalue_input(name, buffer)
            self.inputs[name] = buffer
        for output in session.get_outputs():
            self.binding.bind_output(output.name, "cuda", device_id)
        self.outputs = None  # until the first run has allocated them
        self._first, self._later = _run_options(ort, SKIP_CAPTURE), _run_options(ort, graph_id)
        self.graph_id = graph_id

    def run(self, session, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        if self.outputs is None:  # the buffers hold these feeds already
            session.run_with_iobinding(self.binding, self._first)
            self.outputs = self.binding.get_outputs()
            for output, buffer in zip(session.get_outputs(), self.outputs):
                self.binding.bind_ortvalue_output(output.name, buffer)
        else:
            for name, value in feeds.items():
                self.inputs[name].update_inplace(np.ascontiguousarray(value))
            session.run_with_iobinding(self.binding, self._later)
        return [buffer.numpy() for buffer in self.outputs]


def _run_options(ort, graph_id: int):
    options = ort.RunOptions()
    options.add_run_config_entry("gpu_graph_id", str(graph_id))
    return options


class CudaGraphRunner:
    """`run(feeds) -> outputs` of a batch-first graph, captured and replayed per padded shape."""

    def __init__(self, session, ort, device_id: int, max_graphs: int = 32):
        self._session, self._ort, self._device_id = session, ort, device_id
        self._max_graphs = max_graphs
        self._bound: Dict[Signature, _Bound] = {}  # the captured shapes, graph ids 0, 1, ...
        self.input_names = [i.name for i in session.get_inputs()]

    @property
    def captured_shapes(self) -> List[Signature]:
        return list(self._bound)

    def run(self, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        feeds = {name: feeds[name] for name in self.input_names}
        rows = batch_rows(feeds)
        padded = pad_rows(feeds, padded_rows(rows))
        signature: Signature = tuple((name, value.shape) for name, value in padded.items())
        bound = self._bound.get(signature)
        if bound is None:
            if len(self._bound) < self._max_graphs:
                bound = self._bound[signature] = _Bound(self._session, self._ort, padded, self._device_id,
                                                        len(self._bound))
                logger.info("CUDA graph %d for %s", bound.graph_id, signature)
            else:  # a one-off binding, dropped after the run: device memory stays bounded too
                logger.warning("%d CUDA graphs captured already: shape %s runs uncaptured", self._max_graphs,
                               signature)
                bound = _Bound(self._session, self._ort, padded, self._device_id, SKIP_CAPTURE)
        return [output[:rows] for output in bound.run(self._session, padded)]
