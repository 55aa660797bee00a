"""Lay out a Triton model repository: one folder per model, config.pbtxt filled from the one template.

The template (`model_repository/config.pbtxt.in`) has `${key}` slots; `fill_template` refuses unknown keys
and unfilled slots, so a typo fails the build instead of serving a half-written config. Tensor blocks come
from the served interface and parameters from each model's declaration in `musicgen.params`.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from musicgen_client.interface import PROGRESS_OUTPUTS, STREAM_VARIANTS, TensorSpec

from .params import Param

SOURCE = Path(__file__).resolve().parent.parent / "model_repository"
TEMPLATE = SOURCE / "config.pbtxt.in"
_SLOT = re.compile(r"\$\{(\w+)\}")
_TRITON_TYPES = {"BYTES": "TYPE_STRING", "FP32": "TYPE_FP32", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64"}


def fill_template(template: str, values: Mapping[str, Any]) -> str:
    """Replace every `${key}`; unknown keys and unfilled slots are errors."""
    slots = set(_SLOT.findall(template))
    unknown = sorted(set(values) - slots)
    if unknown:
        raise KeyError(f"template has no slot for {unknown}; its slots are {sorted(slots)}")
    missing = sorted(slots - set(values))
    if missing:
        raise KeyError(f"template slots left unfilled: {missing}")
    return _SLOT.sub(lambda m: str(values[m.group(1)]), template)


def tensor_block(kind: str, specs: Sequence[TensorSpec]) -> str:
    entries = []
    for t in specs:
        lines = [f'    name: "{t.name}"', f"    data_type: {_TRITON_TYPES[t.datatype]}",
                 f"    dims: [ {', '.join(map(str, t.dims))} ]"]
        if t.optional:
            lines.append("    optional: true")
        entries.append("  {\n" + "\n".join(lines) + "\n  }")
    return f"{kind} [\n" + ",\n".join(entries) + "\n]"


def queue_block(max_queue_size: Optional[int]) -> str:
    """Triton's own bound on the requests waiting for a model that answers them one by one in `execute`
    (max_batch_size 0: the dynamic batcher only queues, it adds no batch dimension): more are refused at once
    with UNAVAILABLE (503), and a request's `timeout` parameter bounds its wait there too. None: no block (the
    models that answer from their own threads bound their own queue)."""
    if max_queue_size is None:
        return ""
    return ("dynamic_batching { default_queue_policy { max_queue_size: %d timeout_action: REJECT "
            "allow_timeout_override: true } }" % max_queue_size)


def parameters_block(schema: Sequence[Param], values: Mapping[str, Any]) -> str:
    known = {p.name: p for p in schema}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise KeyError(f"unknown parameters {unknown}: the model takes {sorted(known)}")
    blocks = []
    for name, param in known.items():
        text = param.render(values.get(name, param.default))
        param.parse(text)  # the server will parse it back: fail here, not at load time
        blocks.append(f'parameters {{ key: "{name}" value: {{ string_value: "{text}" }} }}')
    return "\n".join(blocks)


@dataclass(frozen=True)
class ModelEntry:
    """One served model: its tensors, its backend code (a folder under model_repository/) and parameters."""

    name: str
    backend_source: str  # folder under model_repository/ holding model.py
    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]
    schema: Sequence[Param] = ()
    parameters: Dict[str, Any] = field(default_factory=dict)
    instance_count: int = 1
    instance_kind: str = "KIND_CPU"
    decoupled: bool = False  # any number of responses per request: streams only (HTTP /infer answers 501)
    max_queue_size: Optional[int] = None  # see queue_block
    # KIND_GPU only: the GPUs that get `instance_count` instances each; empty: every GPU the server sees (one
    # GPU per pod in Kubernetes). Each instance is told its GPU (musicgen.devices.instance_device_id).
    gpus: Tuple[int, ...] = ()

    def render_config(self, template: str) -> str:
        if self.gpus and self.instance_kind != "KIND_GPU":
            raise ValueError(f"{self.name}: gpus {list(self.gpus)} given for a {self.instance_kind} instance group")
        return fill_template(template, {
            "name": self.name,
            "inputs": tensor_block("input", self.inputs),
            "outputs": tensor_block("output", self.outputs),
            "instance_kind": self.instance_kind,
            "instance_count": self.instance_count,
            "gpus": f" gpus: [ {', '.join(map(str, self.gpus))} ]" if self.gpus else "",
            "parameters": parameters_block(self.schema, self.parameters),
            "transaction_policy": "model_transaction_policy { decoupled: true }" if self.decoupled else "",
            "scheduling": queue_block(self.max_queue_size),
        })

    def stream_variant(self) -> "ModelEntry":
        """The decoupled twin of a unary model: the same backend code and inputs, streaming progress
        responses before the unary model's outputs (musicgen_client.interface.STREAM_VARIANTS)."""
        return replace(self, name=STREAM_VARIANTS[self.name], outputs=tuple(self.outputs) + PROGRESS_OUTPUTS,
                       decoupled=True)


def write_model(repository: Path, entry: ModelEntry) -> Path:
    """Write config.pbtxt and the backend's model.py; the version folder 1/ holds the graphs/assets."""
    folder = Path(repository) / entry.name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(entry.render_config(TEMPLATE.read_text()))
    shutil.copyfile(SOURCE / entry.backend_source / "model.py", folder / "1" / "model.py")
    return folder


def read_config(folder: Path) -> Dict[str, Any]:
    """A model's config.pbtxt in the JSON form Triton hands `initialize()` (what `read_parameters` reads), for
    running a model's code outside the server exactly as configured (benchmarks, tests)."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse((Path(folder) / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(config, preserving_proto_field_name=True)
