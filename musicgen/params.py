"""One typed reader for config.pbtxt `parameters`: every key known, every value parsed strictly.

Each model declares its parameters once (name, type, default, allowed values, what it does); the repository
generator writes them, `initialize()` reads them back with `read_parameters`, and the README's table is
generated from the same declarations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

from .precision import PRECISIONS
from .runtime import BACKENDS


@dataclass(frozen=True)
class Param:
    name: str
    type: type  # str, int, float or bool
    default: Any
    doc: str
    choices: Optional[Tuple[Any, ...]] = None

    def parse(self, text: str) -> Any:
        if self.type is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false"):  # bool("false") is True: never let that through
                raise ValueError(f"parameter {self.name}={text!r}: expected true or false")
            value: Any = lowered == "true"
        else:
            try:
                value = self.type(text)
            except ValueError:
                raise ValueError(f"parameter {self.name}={text!r}: expected {self.type.__name__}") from None
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"parameter {self.name}={text!r}: choose one of {', '.join(map(str, self.choices))}")
        return value

    def render(self, value: Any) -> str:
        return str(value).lower() if self.type is bool else str(value)


COMPONENT_PARAMETERS = (
    Param("backend", str, "onnxruntime", "graph format and runtime: the ONNX graph on onnxruntime, or the Paddle "
          "inference graph on paddle.inference (exact to eager, slower on CPU)", BACKENDS),
    Param("device", str, "cpu", "where the graph runs: cpu, or gpu (onnxruntime CUDA provider / paddle GPU)",
          ("cpu", "gpu")),
    Param("threads", int, 0, "intra-op threads for the runtime; 0 lets it choose"),
    Param("use_onednn", bool, False, "paddle.inference on CPU only: oneDNN kernels. Off by default: on, they "
          "change the UNet's output by several percent"),
    Param("precision", str, "fp32", "onnxruntime only: which exported ONNX variant serves (model.onnx for fp32, "
          "model.<precision>.onnx otherwise, written by export's --precision); a missing file fails the load",
          PRECISIONS),
)


def read_parameters(model_config: Dict[str, Any], schema: Sequence[Param]) -> Dict[str, Any]:
    """Parse the `parameters` of a model config (Triton's JSON form) against `schema`.

    Unknown keys fail, naming the known ones; absent keys take their default.
    """
    known = {p.name: p for p in schema}
    raw = model_config.get("parameters", {}) or {}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"unknown parameters {unknown}: this model takes {sorted(known)}")
    values = {}
    for name, param in known.items():
        entry = raw.get(name)
        values[name] = param.default if entry is None else param.parse(entry["string_value"])
    return values
