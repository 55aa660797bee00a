"""The served side of an export: each graph folder becomes a served component model, each family adds its
stage model, and `image2music` appears once the three stages it calls are all in the repository.

Every config is a `musicgen.repository.ModelEntry` filled into the one template; the graph models share
`model_repository/component/model.py`, the stages have their own thin adapters.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence, Tuple

from musicgen.params import COMPONENT_PARAMETERS, IMAGE2MUSIC_PARAMETERS, TEXT2MUSIC_PARAMETERS, TEXTGEN_PARAMETERS
from musicgen.precision import FP32, render_precisions
from musicgen.repository import ModelEntry, write_model
from musicgen_client import interface as api

from .core import Component, export_component, run_job

logger = logging.getLogger(__name__)

# Triton's queue bound (musicgen.repository.queue_block) for the models that answer in `execute`, one request
# after another: beyond it a request is refused at once with 503 instead of waiting behind minutes of work.
# text2music, caption, chatglm and image2music answer from their own threads and bound their own queues
# (max_waiting).
COMPONENT_QUEUE_SIZE = 64


@dataclass(frozen=True)
class Serving:
    """How the graph models are served: runtime, device, and the precision variant per component (both graph
    formats and the fp32 ONNX graph are always exported; a component not in `precisions` serves fp32).
    `gpus` (device gpu only): the GPUs each model gets an instance on; empty: every GPU the server sees."""

    backend: str = "onnxruntime"
    device: str = "cpu"
    precisions: Mapping[str, str] = field(default_factory=dict)
    gpus: Tuple[int, ...] = ()

    def component_entry(self, spec: api.ComponentSpec) -> ModelEntry:
        return ModelEntry(spec.name, "component", spec.inputs, spec.outputs, COMPONENT_PARAMETERS,
                          self.runtime_parameters() | {"precision": self.precisions.get(spec.name, FP32)},
                          instance_kind=self.instance_kind, max_queue_size=COMPONENT_QUEUE_SIZE, gpus=self.gpus)

    def runtime_parameters(self) -> dict:
        """What a stage model running graphs in process is told: the runtime, and each graph's precision."""
        return {"backend": self.backend, "device": self.device, "precision": render_precisions(self.precisions),
                "cuda_graphs": self.device == "gpu" and self.backend == "onnxruntime"}

    def to_json(self) -> str:
        return json.dumps({"backend": self.backend, "device": self.device, "precisions": dict(self.precisions),
                           "gpus": list(self.gpus)})

    @classmethod
    def from_json(cls, text: str) -> "Serving":
        fields = json.loads(text)
        return cls(**(fields | {"gpus": tuple(fields["gpus"])}))

    @property
    def instance_kind(self) -> str:
        return "KIND_GPU" if self.device == "gpu" else "KIND_CPU"


def export_components(family: str, names: Sequence[str], weights: Path, repository: Path, serving: Serving) -> None:
    """Each named component of `family` exported in a child process (export.job: its served config, then its
    graphs into `<name>/1/`). This process never loads the family's components module: that imports paddle
    (≈ 0.3 GB resident), which would stay here beside the child's peak while it traces."""
    for i, name in enumerate(names, 1):
        logger.info("[%d/%d] exporting %s from %s", i, len(names), name, weights)
        run_job(family, name, weights, repository, serving.to_json())


def export_component_model(component: Component, weights: Path, repository: Path, serving: Serving) -> Path:
    """A component's served config in `repository`, its graphs exported into its version folder (in export.job)."""
    folder = write_model(repository, serving.component_entry(component.served_spec(weights)))
    export_component(component, weights, folder / "1")
    return folder


# The stage models: their backend folder under model_repository/ is named after the model.
STAGES = {
    api.TEXT2MUSIC: ModelEntry(api.TEXT2MUSIC, api.TEXT2MUSIC, api.TEXT2MUSIC_INPUTS, api.TEXT2MUSIC_OUTPUTS),
    api.CAPTION: ModelEntry(api.CAPTION, api.CAPTION, api.CAPTION_INPUTS, api.CAPTION_OUTPUTS),
    api.CHATGLM: ModelEntry(api.CHATGLM, api.CHATGLM, api.CHATGLM_INPUTS, api.CHATGLM_OUTPUTS),
    api.IMAGE2MUSIC: ModelEntry(api.IMAGE2MUSIC, api.IMAGE2MUSIC, api.IMAGE2MUSIC_INPUTS, api.IMAGE2MUSIC_OUTPUTS,
                                IMAGE2MUSIC_PARAMETERS),
}
IMAGE2MUSIC_CALLS = (api.TEXT2MUSIC, api.CAPTION, api.CHATGLM)
# The stages that run their graphs in process (musicgen.stage_graphs) take the graph models' runtime.
GRAPH_STAGES = {api.TEXT2MUSIC: TEXT2MUSIC_PARAMETERS, api.CAPTION: TEXTGEN_PARAMETERS, api.CHATGLM: TEXTGEN_PARAMETERS}


def write_stage(repository: Path, name: str, serving: Serving = Serving(), parameters: Mapping = {}) -> Path:
    """Write a stage model, and its streaming twin when it has one (api.STREAM_VARIANTS); returns the folder
    of the first. A twin is a model of its own: it needs the same assets in its own version folder.
    `parameters`: values for the stage's own parameters (text2music's max_active ...) over the defaults."""
    entry = replace(STAGES[name], parameters=dict(parameters))
    if name in GRAPH_STAGES:
        entry = replace(entry, schema=GRAPH_STAGES[name], parameters=serving.runtime_parameters() | entry.parameters,
                        instance_kind=serving.instance_kind, gpus=serving.gpus)
    entries = [entry] + ([entry.stream_variant()] if name in api.STREAM_VARIANTS else [])
    folders = [write_model(repository, e) for e in entries]
    logger.info("%s written to %s", " and ".join(e.name for e in entries), ", ".join(map(str, folders)))
    return folders[0]


def stage_asset_folders(repository: Path, name: str) -> list:
    """The version folders that hold a stage's assets: its own, and its streaming twin's."""
    names = [name] + ([api.STREAM_VARIANTS[name]] if name in api.STREAM_VARIANTS else [])
    return [Path(repository) / n / "1" for n in names]


def write_flow_models(repository: Path) -> None:
    """Add image2music when the repository serves every stage it calls; say what is missing otherwise."""
    missing = [m for m in IMAGE2MUSIC_CALLS if not (Path(repository) / m / "config.pbtxt").exists()]
    if missing:
        logger.info("image2music not written yet: export %s too", ", ".join(missing))
        return
    write_stage(repository, api.IMAGE2MUSIC)
