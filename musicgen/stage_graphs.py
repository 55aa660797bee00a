"""A stage model's graphs (text2music's AudioLDM components, caption's and chatglm's MiniGPT4 / ChatGLM graphs),
run in the stage's own process or reached over BLS as served graph models, behind one interface:
`graphs(name, feeds) -> outputs` (a recipe's `run_stage`) and `graphs.step(name)` (an LLM step graph's raw call,
`run(feeds) -> (logits, new_key_values)`, which the recipes drive over their own `KVCache`).
The `graphs` parameter of `musicgen.params.STAGE_GRAPH_PARAMETERS` chooses.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .llm.kv_cache import GraphRun
from .llm.step_session import STEP_GRAPHS, open_step_session, served_step
from .params import SERVED, STAGE_GRAPH_PARAMETERS
from .precision import FP32, parse_precisions
from .runtime import RuntimeOptions, open_graph, verify_graph


class InProcessGraphs:
    """A family's graphs loaded from a model repository into this process, each checked against its folder's
    manifest: `graphs(name, feeds)` runs a one-shot graph (image encoder, token embedding) as a recipe's
    `run_stage`, `graphs.step(name)` is a step graph's session."""

    def __init__(self, repository: Path, names: Sequence[str], options: RuntimeOptions,
                 precisions: Optional[Dict[str, str]] = None, check_manifest: bool = True):
        """`precisions`: the ONNX variant per graph (musicgen.precision); the others run fp32. `check_manifest`:
        off only for the export itself, which writes the manifests last."""
        precisions = precisions or {}
        self._steps, self._runners = {}, {}
        for name in names:
            folder = Path(repository) / name / "1"
            graph_options = replace(options, precision=precisions.get(name, FP32))
            if name in STEP_GRAPHS:
                if check_manifest:
                    verify_graph(folder, graph_options)  # a damaged graph fails the stage's load, naming the file
                self._steps[name] = open_step_session(folder, graph_options)
            else:
                self._runners[name] = open_graph(folder, graph_options, check_manifest=check_manifest)

    def __call__(self, name: str, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        return self._runners[name].run(feeds)

    def step(self, name: str) -> GraphRun:
        return self._steps[name]


class ServedGraphs:
    """The same two calls over served graph models: every call, the step graph's included, goes to `run_stage`."""

    def __init__(self, run_stage):
        self._run_stage = run_stage

    def __call__(self, name: str, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        return self._run_stage(name, feeds)

    def step(self, name: str) -> GraphRun:
        return served_step(self._run_stage, name)


def open_stage_graphs(parameters: Dict[str, Any], repository: Path, names: Sequence[str], bls_stage,
                      device_id: int = 0):
    """A stage's graphs as its `STAGE_GRAPH_PARAMETERS` say: in process (on GPU `device_id` when on a GPU), or
    served (over `bls_stage`).

    Runtime choices only apply in process: set with `graphs` served they would be ignored, so they are refused.
    """
    runtime_names = [p.name for p in STAGE_GRAPH_PARAMETERS if p.name != "graphs"]
    if parameters["graphs"] == SERVED:
        changed = sorted(p.name for p in STAGE_GRAPH_PARAMETERS if p.name in runtime_names
                         and parameters[p.name] != p.default)
        if changed:
            raise ValueError(f"parameters {changed} apply to graphs run in process: with graphs=served the served "
                             "graph models' own configs decide")
        return ServedGraphs(bls_stage)
    precisions = parse_precisions(parameters["precision"], names)
    runtime = RuntimeOptions(**{name: parameters[name] for name in runtime_names if name != "precision"},
                             device_id=device_id)
    return InProcessGraphs(repository, names, runtime, precisions)
