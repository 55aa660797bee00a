"""The conversion core every model family shares: eager Layer → Paddle inference graph → ONNX graph → parity.

Recipe (measured in FEASIBILITY.md): `paddle.jit.to_static(full_graph=True)` + `paddle.jit.save` writes a PIR
program (model.json + model.pdiparams); paddle2onnx turns that into ONNX. paddle2onnx abort()s the whole
process on an unsupported op, so it always runs in a child process. Parity runs both graphs through the same
runtime the server uses (onnxruntime without its weight prepacking, a second copy of the weights that only speeds
multi-row products up) and compares with the eager module on the same inputs.
"""
from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, ContextManager, Dict, List, Optional, Sequence

import numpy as np

from musicgen_client.interface import ComponentSpec
from musicgen.runtime import ONNX_FILE, PADDLE_DIR, PADDLE_PROGRAM, RuntimeOptions, open_graph

logger = logging.getLogger(__name__)

ONNX_OPSET = 17
PARITY_FILE = "parity.json"
SAMPLE_CASE = "sample"  # name of the input case every component has; `Component.more_cases` adds others


_PADDLE_DTYPES = {"INT64": "int64", "FP32": "float32"}


def configure_logging() -> None:
    """INFO logs for our own loggers. Importing paddle resets the root logger to WARNING, so the level is set
    on our namespaces rather than relied on from the root."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("export", "musicgen"):
        logging.getLogger(name).setLevel(logging.INFO)


# Random-weight presets save their weights in shards of at most this size, as large real checkpoints come: saving
# and loading (paddlenlp's low_cpu_mem_usage) then hold one shard beside the model instead of a whole second copy.
PRESET_SHARD_SIZE = "1GB"


def read_config(folder: Path) -> dict:
    """A save_pretrained folder's config.json."""
    return json.loads((Path(folder) / "config.json").read_text())


def preset_folder(family: str, preset: str, layers: Optional[int] = None) -> str:
    """The weights folder name of a random-weight preset, `--layers` included so depths do not overwrite each
    other."""
    name = preset if preset.startswith(family) else f"{family}-{preset}"
    return name + (f"-{layers}-layers" if layers else "")


def build_preset(build_module: str, preset: str, weights_root: Path, options: dict) -> Path:
    """`<build_module>.build_preset(preset, weights_root, **options)`, logging as the export does: the body of the
    child process `python -m export` builds a preset in (a module-level function, so that a spawned child finds
    it; `export.__main__` is not importable there)."""
    import importlib

    configure_logging()
    return importlib.import_module(build_module).build_preset(preset, weights_root, **options)


class ExportError(RuntimeError):
    """A conversion failed or its graph disagrees with the eager model."""


class UnsupportedModel(ExportError):
    """The weights use a model feature the exported graph does not reproduce."""


def save_paddle_inference(layer, input_spec: Sequence, version_dir: Path) -> Path:
    """Trace `layer` with `input_spec` and save the Paddle inference graph into version_dir/paddle/."""
    import paddle

    layer.eval()
    out_dir = Path(version_dir) / PADDLE_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    static = paddle.jit.to_static(layer, input_spec=list(input_spec), full_graph=True)
    paddle.jit.save(static, str(out_dir / "model"))
    if not (out_dir / PADDLE_PROGRAM).exists():
        raise ExportError(f"paddle.jit.save wrote no {PADDLE_PROGRAM} in {out_dir} (is PIR enabled?)")
    return out_dir


def convert_to_onnx(version_dir: Path, timeout_s: float = 1800, external_above: Optional[int] = None) -> Path:
    """Convert version_dir/paddle/ to version_dir/model.onnx in a child process; weights past `external_above`
    bytes (default: export.onnx_convert's) go to model.onnx.data as ONNX external data."""
    version_dir = Path(version_dir)
    paddle_dir = version_dir / PADDLE_DIR
    target = version_dir / ONNX_FILE
    cmd = [sys.executable, "-m", "export.onnx_convert", str(paddle_dir), str(target)]
    if external_above is not None:
        cmd += ["--external-above", str(external_above)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=_child_env())
    if proc.returncode != 0 or not target.exists():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise ExportError(f"paddle2onnx failed for {paddle_dir} (exit {proc.returncode}):\n{tail}")
    return target


def _child_env() -> Dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass
class ParityResult:
    component: str
    backend: str
    output: str
    max_abs: float
    max_rel: float  # max |a-b| / max |reference|: robust where the reference crosses zero
    tolerance: float
    case: str = SAMPLE_CASE

    @property
    def ok(self) -> bool:
        return self.max_rel <= self.tolerance


def compare(reference: np.ndarray, candidate: np.ndarray) -> tuple:
    if reference.shape != candidate.shape:
        raise ExportError(f"shape mismatch: eager {reference.shape} vs graph {candidate.shape}")
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    scale = max(float(np.abs(reference).max()), 1e-12)
    return float(diff.max()), float(diff.max() / scale)


def check_parity(
    component: str,
    version_dir: Path,
    expected: Dict[str, List[np.ndarray]],
    cases: Dict[str, Dict[str, np.ndarray]],
    output_names: Sequence[str],
    tolerance: float,
    backends: Sequence[str] = ("paddle", "onnxruntime"),
) -> List[ParityResult]:
    """Run each exported format on every named input case, compare with the eager outputs `expected[case]`,
    write parity.json, raise if any output is off."""
    results = []
    for backend in backends:
        # No onnxruntime weight prepacking: a second copy of the weights, for speed parity does not need.
        runner = open_graph(version_dir, RuntimeOptions(backend=backend, prepack_weights=False))
        for case, feeds in cases.items():
            got = runner.run(feeds)
            for name, ref, out in zip(output_names, expected[case], got):
                max_abs, max_rel = compare(ref, out)
                results.append(ParityResult(component, backend, name, max_abs, max_rel, tolerance, case))
        del runner, got  # one runtime's copy of the weights at a time
        gc.collect()
    first = next(iter(cases.values()))
    report = {
        "component": component,
        "inputs": {k: list(v.shape) for k, v in first.items()},
        "cases": {case: {k: list(v.shape) for k, v in feeds.items()} for case, feeds in cases.items()},
        "results": [asdict(r) | {"ok": r.ok} for r in results],
    }
    (Path(version_dir) / PARITY_FILE).write_text(json.dumps(report, indent=2))
    for r in results:
        logger.info("parity %s/%s [%s] %s: max abs %.3g, rel %.3g (tol %.0e)", component, r.backend, r.case,
                    r.output, r.max_abs, r.max_rel, r.tolerance)
    bad = [r for r in results if not r.ok]
    if bad:
        raise ExportError(f"{component}: exported graph disagrees with eager: {[asdict(r) for r in bad]}")
    return results


def paddle_outputs(layer) -> Callable[[Dict[str, np.ndarray]], List[np.ndarray]]:
    """Wrap an eager Layer as numpy-in, list-of-numpy-out, keyword inputs."""
    import paddle

    def run(feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        with paddle.no_grad():
            out = layer(**{k: paddle.to_tensor(v) for k, v in feeds.items()})
        outs = out if isinstance(out, (list, tuple)) else [out]
        return [o.numpy() for o in outs]

    return run


def _no_patches(_layer) -> ContextManager:
    return contextlib.nullcontext()


def _no_more_cases(_weights: Path, _rng: np.random.Generator) -> Dict[str, Dict[str, np.ndarray]]:
    return {}


def _dynamic_dims(_weights: Path) -> Dict[str, List[int]]:
    return {}


@dataclass(frozen=True)
class Component:
    """One exportable graph: how its eager Layer loads from a weights folder, and how to feed it for parity."""

    spec: ComponentSpec
    load: Callable[[Path], object]  # weights folder -> eager paddle Layer whose forward takes spec.inputs
    sample_feeds: Callable[[Path, np.random.Generator], Dict[str, np.ndarray]]
    tolerance: float  # max |graph - eager| / max |eager|
    # Patches active while tracing the loaded layer (its eager outputs are taken before, unpatched).
    trace_context: Callable[[object], ContextManager] = _no_patches
    # Further named input cases checked like the sample one, e.g. a decode step with a non-empty KV cache
    # beside the zero-length-past prefill.
    more_cases: Callable[[Path, np.random.Generator], Dict[str, Dict[str, np.ndarray]]] = _no_more_cases
    # Input dims the graph is traced with where the interface's -1 cannot be (a model that computes with its
    # input's shape in Python), from the weights' configs; the others as the interface declares them.
    static_dims: Callable[[Path], Dict[str, List[int]]] = _dynamic_dims
    # An LLM step graph (spec.kv_cache): its number of layers, from the weights' config. The Layer's forward then
    # takes the per-layer cache inputs as one last argument, a list (to_static takes no *args).
    cache_layers: Optional[Callable[[Path], int]] = None
    # The eager outputs parity compares with, when not the loaded Layer's own: reference(layer) -> feeds -> outputs
    # (a step graph is checked against the unpatched model fed the logical cache).
    reference: Optional[Callable[[object], Callable[[Dict[str, np.ndarray]], List[np.ndarray]]]] = None

    def served_spec(self, weights: Path) -> ComponentSpec:
        """The graph's tensors for these weights: a step graph's per-layer cache inputs spelled out."""
        if self.spec.kv_cache:
            return self.spec.with_cache_inputs(self.cache_layers(Path(weights)))
        return self.spec

    def input_spec(self, weights: Path) -> list:
        import paddle

        fixed = self.static_dims(Path(weights))
        specs = [
            paddle.static.InputSpec(shape=list(fixed.get(t.name, t.dims)), dtype=_PADDLE_DTYPES[t.datatype],
                                    name=t.name)
            for t in self.served_spec(weights).inputs
        ]
        if self.spec.kv_cache:
            own = len(self.spec.inputs)
            return specs[:own] + [specs[own:]]
        return specs


def parity_cases(component: Component, weights: Path, seed: int = 0) -> Dict[str, Dict[str, np.ndarray]]:
    """The named input cases a component's graphs are checked on: the sample case, then its more_cases."""
    rng = np.random.default_rng(seed)
    cases = {SAMPLE_CASE: component.sample_feeds(Path(weights), rng)}
    cases.update(component.more_cases(Path(weights), rng))
    return cases


def export_component(component: Component, weights: Path, version_dir: Path, seed: int = 0) -> List[ParityResult]:
    """Eager → Paddle inference → ONNX for one component, then check both graphs against eager."""
    layer = component.load(Path(weights))
    layer.eval()
    log_peak_memory(component.spec.name, "loading the eager model")
    cases = parity_cases(component, weights, seed)
    # Eager outputs first: tracing may mutate cached state on some models.
    eager = component.reference(layer) if component.reference else paddle_outputs(layer)
    expected = {case: eager(feeds) for case, feeds in cases.items()}
    with component.trace_context(layer):
        save_paddle_inference(layer, component.input_spec(weights), version_dir)
    # The eager weights are not needed past this point: free them before the conversion and the parity runtimes
    # load the graph's own copy (what keeps the export's peak near one copy of the weights, export/LLM.md).
    log_peak_memory(component.spec.name, "tracing and saving the Paddle graph")
    del layer, eager
    gc.collect()
    convert_to_onnx(version_dir)
    results = check_parity(
        component.spec.name, version_dir, expected, cases, [t.name for t in component.spec.outputs],
        component.tolerance,
    )
    log_peak_memory(component.spec.name, "the parity check")
    return results


def log_peak_memory(component: str, phase: str) -> None:
    """Log this process's peak RSS so far (what export/LLM.md's memory figures are read from)."""
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    logger.info("%s: peak RSS %.2f GB after %s", component, peak_kib * 1024 / 1e9, phase)


def run_job(family: str, component: str, weights: Path, repository: Path, serving_json: str) -> None:
    """Export one component, its served config included, in a child process (export.job); its log streams
    through, failures raise."""
    cmd = [sys.executable, "-m", "export.job", family, component, str(weights), str(repository), serving_json]
    proc = subprocess.run(cmd, env=_child_env())
    if proc.returncode != 0:
        raise ExportError(f"exporting {family}/{component} failed (exit {proc.returncode}); see the log above")
