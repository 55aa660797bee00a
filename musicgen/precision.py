"""Precision variants of an exported ONNX graph: their names, files, and how a choice per graph is written.

`python -m export ... --precision` writes each variant next to the fp32 `model.onnx` (always exported and
parity-checked); the served component's `precision` parameter picks the file. fp32 is the default.
"""

from typing import Dict, Sequence

ONNX_FILE = "model.onnx"  # the fp32 graph
FP32 = "fp32"
# int8-*: onnxruntime quantization (CPU); fp16: the GPU option (onnxruntime.transformers.float16).
PRECISIONS = (FP32, "int8-dynamic", "int8-static", "fp16")
# The KV cache tensors of an LLM step graph, by name: the per-layer `past_key_<i>` / `past_value_<i>` in and
# `new_key_values` out. An fp16 step graph keeps these in fp16 (half the cache memory and bandwidth); every other
# input and output keeps the interface's dtype.
KV_CACHE_PREFIXES = ("past_key_", "past_value_", "new_key_values")


def is_kv_cache(tensor_name: str) -> bool:
    return tensor_name.startswith(KV_CACHE_PREFIXES)


def onnx_file(precision: str) -> str:
    """model.onnx for fp32, model.<precision>.onnx for a variant."""
    return ONNX_FILE if precision == FP32 else f"model.{precision}.onnx"


def external_data_file(graph: str) -> str:
    """Where an ONNX graph past protobuf's 2 GB keeps its weights: `<graph file>.data` beside it (ONNX external
    data), for every graph file the export writes; the manifest and the runtime look for it by this name."""
    return f"{graph}.data"


def parse_precisions(text: str, components: Sequence[str]) -> Dict[str, str]:
    """`int8-static` (every component) or `unet=int8-static,vocoder=fp16` → {component: precision}.

    A component is named in full (`audioldm_unet`) or without its family prefix (`unet`); fp32 entries are
    dropped (fp32 is always exported). Unknown components and precisions raise ValueError naming the choices.
    """
    aliases = {name: name for name in components} | {name.split("_", 1)[1]: name for name in components}
    text = text.strip()
    if "=" not in text:
        return {name: p for name in components if (p := _precision(text)) != FP32}
    chosen: Dict[str, str] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key.strip() not in aliases:
            raise ValueError(f"precision {item!r}: unknown component {key.strip()!r}; choose from "
                             f"{', '.join(sorted(aliases))}")
        name = aliases[key.strip()]
        if name in chosen:
            raise ValueError(f"precision: {key.strip()!r} given twice")
        chosen[name] = _precision(value)
    return {name: p for name, p in chosen.items() if p != FP32}


def _precision(value: str) -> str:
    value = value.strip()
    if value not in PRECISIONS:
        raise ValueError(f"precision: unknown precision {value!r}; choose from {', '.join(PRECISIONS)}")
    return value


def render_precisions(chosen: Dict[str, str]) -> str:
    """{graph: precision} as `parse_precisions` reads it back; fp32 everywhere is `fp32`."""
    return ",".join(f"{name}={p}" for name, p in sorted(chosen.items()) if p != FP32) or FP32
