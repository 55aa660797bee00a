"""Run one exported graph on onnxruntime or paddle.inference behind one small interface.

Used by the component models in the server, by the export parity check and by the benchmarks, so the
graph the server runs is the graph that was checked. Each framework is imported only when chosen: a
stub serving the ONNX graph never loads paddle.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Sequence, Union

import numpy as np

from musicgen_client.interface import COMPONENTS_BY_NAME

from . import manifest
from .cuda_graphs import CudaGraphRunner
from .devices import onnx_providers, require_device_providers
from .precision import FP32, ONNX_FILE, PRECISIONS, external_data_file, onnx_file  # noqa: F401 - ONNX_FILE: the fp32 graph, for callers

logger = logging.getLogger(__name__)

PADDLE_DIR = "paddle"  # holds model.json (PIR program) + model.pdiparams
PADDLE_PROGRAM = "model.json"
PADDLE_PARAMS = "model.pdiparams"
BACKENDS = ("onnxruntime", "paddle")
_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
               "tensor(int32)": np.int32}  # the graphs' input types; another type is left as the feed has it (None)


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run a graph. `threads` 0 lets the framework decide."""

    backend: str = "onnxruntime"
    threads: int = 0
    # oneDNN changes the UNet's and the LLMs' numbers by several percent on CPU: off unless asked for.
    use_onednn: bool = False
    device: str = "cpu"  # "cpu" or "gpu"
    # onnxruntime's idle threads spin-wait by default: several stub processes (or the engine thread between
    # calls) then burn the same cores against each other. Measured on 2 cores: off removes most of the
    # serving tax (FEASIBILITY.md).
    allow_spinning: bool = False
    # onnxruntime on CPU: repack the matrix products' weights for its kernels at load. Batched decode and prefill
    # run faster so (≈1.8× and 1.1× on the real-width ChatGLM step), at ≈1.75× the weights in memory instead of
    # ≈1×; off, a one-row decode step is no slower (export/LLM.md, "Export memory").
    prepack_weights: bool = True
    precision: str = FP32  # which ONNX variant file (onnx_file); the Paddle graph is fp32 only
    device_id: int = 0  # the GPU of a device "gpu" graph (Triton's model_instance_device_id)
    # device "gpu", onnxruntime: replay graphs whose shapes repeat as CUDA graphs (musicgen.cuda_graphs).
    cuda_graphs: bool = False
    # device "gpu": TensorFloat-32 matrix products (faster, ≈1e-3 relative instead of fp32's ≈1e-6).
    tf32: bool = False


class GraphRunner:
    """A loaded graph: named numpy inputs in, outputs in graph order out."""

    input_names: List[str]
    output_names: List[str]

    def run(self, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        raise NotImplementedError


class OnnxRunner(GraphRunner):
    def __init__(self, model: Union[Path, bytes], options: RuntimeOptions):
        """`model`: an ONNX file, or a serialized graph (the benchmarks build graphs in memory)."""
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # unused-initializer warnings from paddle2onnx graphs are noise
        if options.threads:
            so.intra_op_num_threads = options.threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.allow_spinning else "0")
        if not options.prepack_weights:
            so.add_session_config_entry("session.disable_prepacking", "1")
        cuda_options = {"enable_cuda_graph": "1" if options.cuda_graphs else "0", "use_tf32": "1" if options.tf32 else "0"}
        self._session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), so,
                                             providers=onnx_providers(options.device, options.device_id, cuda_options))
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]
        # The graph's own input dtypes: an fp16 step graph takes its KV cache in fp16 (musicgen.precision).
        self.input_dtypes = {i.name: _ORT_DTYPES.get(i.type) for i in self._session.get_inputs()}
        self.providers = self._session.get_providers()
        require_device_providers(self.providers, options.device, ort.get_available_providers())
        self._graphs = CudaGraphRunner(self._session, ort, options.device_id) if options.cuda_graphs else None

    def run(self, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        if self._graphs is not None:
            return self._graphs.run(feeds)
        outputs = self._session.run(None, {name: self.as_input(name, feeds[name]) for name in self.input_names})
        # The interface's floats are FP32: an fp16 graph's fp16 outputs (its KV cache) are widened at this boundary.
        return [out.astype(np.float32) if out.dtype == np.float16 else out for out in outputs]

    def as_input(self, name: str, value: np.ndarray) -> np.ndarray:
        """`value` in the dtype the graph takes for input `name` (no copy when it already is)."""
        return np.ascontiguousarray(value, dtype=self.input_dtypes[name])


class PaddleRunner(GraphRunner):
    def __init__(self, model_dir: Path, options: RuntimeOptions):
        import paddle.inference as paddle_infer

        config = paddle_infer.Config(str(model_dir / PADDLE_PROGRAM), str(model_dir / PADDLE_PARAMS))
        if options.device == "gpu":
            config.enable_use_gpu(256, options.device_id)
        else:
            config.disable_gpu()
            if options.use_onednn:
                config.enable_mkldnn()
            else:
                config.disable_mkldnn()
            if options.threads:
                config.set_cpu_math_library_num_threads(options.threads)
        config.disable_glog_info()
        self._predictor = paddle_infer.create_predictor(config)
        self.input_names = list(self._predictor.get_input_names())
        self.output_names = list(self._predictor.get_output_names())

    def run(self, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        for name in self.input_names:
            handle = self._predictor.get_input_handle(name)
            handle.copy_from_cpu(np.ascontiguousarray(feeds[name]))
        self._predictor.run()
        return [self._predictor.get_output_handle(n).copy_to_cpu() for n in self.output_names]


def verify_graph(version_dir: Path, options: RuntimeOptions) -> None:
    """Check the files of the graph `options` choose against the folder's manifest (musicgen.manifest)."""
    if options.backend == "paddle":
        files = [f"{PADDLE_DIR}/{PADDLE_PROGRAM}", f"{PADDLE_DIR}/{PADDLE_PARAMS}"]
    else:
        graph = onnx_file(options.precision)
        data = external_data_file(graph)
        files = [graph] + ([data] if (Path(version_dir) / data).exists() else [])
    manifest.verify(version_dir, files)


def open_graph(version_dir: Path, options: RuntimeOptions, check_manifest: bool = False) -> GraphRunner:
    """Load the graph of one model version folder in the chosen format; `check_manifest` (what served models
    do) checks its files against the folder's manifest first (`verify_graph`). Export, which writes the
    manifest last, does not."""
    version_dir = Path(version_dir)
    check_precision(options)
    if options.cuda_graphs and (options.device != "gpu" or options.backend != "onnxruntime"):
        raise ValueError(f"cuda_graphs: onnxruntime on device gpu only, not {options.backend} on {options.device}")
    name = version_dir.parent.name
    if options.cuda_graphs and not replayable(name):
        logger.info("%s: no CUDA graphs (its input shapes vary from request to request)", name)
        options = replace(options, cuda_graphs=False)
    if options.backend == "onnxruntime":
        graph = version_dir / onnx_file(options.precision)
        if not graph.exists():
            raise FileNotFoundError(f"precision {options.precision!r}: no {graph.name} in {version_dir}; export it "
                                    f"with `python -m export ... --precision <component>={options.precision}`")
    if check_manifest and options.backend in BACKENDS:
        verify_graph(version_dir, options)
    if options.backend == "onnxruntime":
        runner: GraphRunner = OnnxRunner(graph, options)
    elif options.backend == "paddle":
        runner = PaddleRunner(version_dir / PADDLE_DIR, options)
    else:
        raise ValueError(f"unknown backend {options.backend!r}: choose one of {', '.join(BACKENDS)}")
    logger.info("loaded %s %s graph from %s (inputs %s)", options.backend, options.precision, version_dir,
                runner.input_names)
    return runner


def check_precision(options: RuntimeOptions) -> None:
    """A precision the chosen runtime has graphs for: the ONNX variants, or fp32 (the only Paddle graph)."""
    if options.precision not in PRECISIONS or (options.backend == "paddle" and options.precision != FP32):
        raise ValueError(f"precision {options.precision!r}: onnxruntime takes {', '.join(PRECISIONS)}, paddle {FP32}")


def replayable(name: str) -> bool:
    """Whether graph `name` keeps its shapes across requests (and so is worth capturing as CUDA graphs)."""
    spec = COMPONENTS_BY_NAME.get(name)
    return spec is not None and spec.replayable


def check_feeds(runner: GraphRunner, expected: Sequence[str]) -> None:
    """Fail early when a graph's inputs are not the ones the served interface names."""
    if sorted(runner.input_names) != sorted(expected):
        raise ValueError(f"graph inputs {runner.input_names} do not match the interface {list(expected)}")


def local_stage_runner(repository: Path, names: Sequence[str], options: RuntimeOptions):
    """`run_stage(name, feeds)` over graphs loaded straight from a model repository: the pipeline without a
    server (tests, benchmarks)."""
    runners = {name: open_graph(Path(repository) / name / "1", options) for name in names}
    return lambda name, feeds: runners[name].run(feeds)
