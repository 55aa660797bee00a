"""One typed reader for config.pbtxt `parameters`: every key known, every value parsed strictly.

Each model declares its parameters once (name, type, default, allowed values, what it does); the repository
generator writes them, `initialize()` reads them back with `read_parameters`, and the README's table is
generated from the same declarations.
"""
from __future__ import annotations

import math
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
    Param("allow_spinning", bool, False, "onnxruntime only: let idle intra-op threads spin-wait. Off by default: "
          "spinning threads of several models take the cores from the one that is working"),
    Param("prepack_weights", bool, True, "onnxruntime on CPU only: repack the weights of matrix products for its "
          "kernels at load. On by default (batched decode ≈1.8× faster); off, a graph holds ≈1× its weights in "
          "memory instead of ≈1.75× (the real-width ChatGLM step: 3.1 GB instead of 5.3 GB)"),
    Param("cuda_graphs", bool, False, "onnxruntime on device gpu only: replay the graphs whose shapes repeat (UNet, "
          "VAE decoder, vocoder, image encoder) as CUDA graphs, one per batch size rounded up to a power of two "
          "(text2music captures the default length's at load); export --device gpu turns it on"),
    Param("tf32", bool, False, "device gpu only: TensorFloat-32 matrix products, faster at ≈1e-3 relative error "
          "(off: fp32's ≈1e-6)"),
)

# A stage model (text2music, caption, chatglm) runs its graphs in its own process, or calls the served graph
# models over BLS; the runtime choices apply to the graphs it runs itself.
IN_PROCESS = "in_process"
SERVED = "served"
STAGE_GRAPH_PARAMETERS = (
    Param("graphs", str, IN_PROCESS, "in_process: the stage loads its graphs and runs them in its own process (no "
          "copy between processes per step; an LLM's KV cache stays in the runtime between steps); served: it calls "
          "the served graph models over BLS (the runtime parameters must then stay default: the served models' own "
          "configs decide)", (IN_PROCESS, SERVED)),
) + tuple(p for p in COMPONENT_PARAMETERS if p.name != "precision") + (
    Param("precision", str, "fp32", "onnxruntime only: the ONNX variant of each graph run in process, as export's "
          "--precision writes it: one precision for all (fp32) or graph=precision,... (audioldm_unet=int8-static)"),
)
TEXTGEN_PARAMETERS = STAGE_GRAPH_PARAMETERS + (  # caption and chatglm
    Param("max_active", int, 8, "requests decoding together, sharing each decode step (in-flight batching); 1 "
          "decodes one request at a time"),
    Param("max_waiting", int, 64, "requests waiting for a place; more are refused at once with UNAVAILABLE (503)"),
)

TEXT2MUSIC_PARAMETERS = STAGE_GRAPH_PARAMETERS + (
    Param("max_active", int, 8, "requests denoising together (in-flight batching); more wait their turn"),
    Param("max_waiting", int, 64, "requests waiting for a place; more are refused at once with UNAVAILABLE (503)"),
    Param("max_batch_requests", int, 8, "requests per UNet, VAE and vocoder call (a guided request is 2 UNet rows)"),
    Param("prompt_cache_size", int, 256, "text embeddings kept for repeated prompts and negative prompts; 0: off"),
    Param("capture_lengths", str, "5.0", "with cuda_graphs: audio lengths in seconds (comma-separated) whose CUDA "
          "graphs are captured at load, at every batch size; another length captures on first use (a one-time "
          "cost of ≈0.1-0.6 s per graph on an H200)"),
)



def capture_lengths(text: str) -> Tuple[float, ...]:
    """text2music's `capture_lengths` as seconds; ValueError naming the parameter (the model's load fails)."""
    try:
        lengths = tuple(float(item) for item in text.split(","))
    except ValueError:
        lengths = ()
    if not lengths or not all(math.isfinite(length) and length > 0 for length in lengths):
        raise ValueError(f"parameter capture_lengths={text!r}: expected seconds > 0, comma-separated (5.0,10.24)")
    return lengths


IMAGE2MUSIC_PARAMETERS = (
    Param("max_concurrent", int, 8, "image2music requests worked on at once (each waits on its caption, chatglm "
          "and text2music calls; their text2music calls batch together)"),
    Param("max_waiting", int, 16, "requests waiting for a worker; more are refused at once with UNAVAILABLE (503)"),
)


# Parameters the Python backend itself reads from any model's config (not ours to parse): a packed Python
# environment for the stub (conda-pack tarball or folder) and whether inputs are always copied to the CPU.
TRITON_PARAMETERS = frozenset({"EXECUTION_ENV_PATH", "FORCE_CPU_ONLY_INPUT_TENSORS"})


def read_parameters(model_config: Dict[str, Any], schema: Sequence[Param]) -> Dict[str, Any]:
    """Parse the `parameters` of a model config (Triton's JSON form) against `schema`.

    Unknown keys fail, naming the known ones; absent keys take their default. Triton's own keys
    (`TRITON_PARAMETERS`) pass through unread: the backend has used them before `initialize()` runs.
    """
    known = {p.name: p for p in schema}
    raw = model_config.get("parameters", {}) or {}
    unknown = sorted(set(raw) - set(known) - TRITON_PARAMETERS)
    if unknown:
        raise ValueError(f"unknown parameters {unknown}: this model takes {sorted(known)}")
    values = {}
    for name, param in known.items():
        entry = raw.get(name)
        values[name] = param.default if entry is None else param.parse(entry["string_value"])
    return values
