"""Lower-precision variants of an exported ONNX graph, made with onnxruntime's own tools, and their error.

    python -m export audioldm ... --precision int8-static                          every component
    python -m export audioldm ... --precision unet=int8-static,vocoder=int8-dynamic

Each variant is written as `model.<precision>.onnx` next to the fp32 `model.onnx`, which is always exported and
parity-checked; the served `precision` parameter picks the file (musicgen.precision). The variants:

- int8-dynamic: `quantize_dynamic`, int8 weights, activations quantized at run time (uint8, per tensor).
- int8-static: `quantize_static`, QDQ, uint8 activations with ranges calibrated on recorded real inputs and
  int8 per-channel weights: onnxruntime fuses the QDQ pairs into QLinearConv/QLinearMatMul (u8s8 kernels: VNNI
  where the CPU has it, AVX2 otherwise).
- fp16: `onnxruntime.transformers.float16` with fp32 inputs and outputs kept: the GPU option (it also loads
  and runs on the CPU provider, which is what the export's fidelity check uses).
bf16 is not offered: onnxruntime's x86 CPU provider has no bf16 kernels (benchmarks/README.md).

paddle2onnx stores weights as Constant nodes, which the quantizers take for activations; onnxruntime's own
`quant_pre_process` (shape inference plus its basic graph optimiser) turns them into initializers first.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from musicgen.precision import FP32, PRECISIONS, onnx_file
from musicgen.runtime import ONNX_FILE, RuntimeOptions, open_graph

from .core import ExportError, compare

logger = logging.getLogger(__name__)

Feeds = Dict[str, np.ndarray]
VARIANTS = tuple(p for p in PRECISIONS if p != FP32)


class _FeedsReader:
    """onnxruntime's CalibrationDataReader protocol over recorded feeds."""

    def __init__(self, feeds: Sequence[Feeds]):
        self._feeds: Iterator[Feeds] = iter(feeds)

    def get_next(self) -> Optional[Feeds]:
        return next(self._feeds, None)

    def __iter__(self):
        return self


def write_variant(version_dir: Path, precision: str, calibration: Sequence[Feeds]) -> Path:
    """Write `model.<precision>.onnx` from the fp32 `model.onnx` in version_dir; `calibration` feeds the
    static quantizer's range estimation (the other variants ignore it)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, \
        quantize_dynamic, quantize_static

    version_dir = Path(version_dir)
    source, target = version_dir / ONNX_FILE, version_dir / onnx_file(precision)
    if precision == "fp16":
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = onnx.load(str(source))
        _omit_empty_resize_scales(model)
        onnx.save(convert_float_to_float16(model, keep_io_types=True), str(target))
        return target
    with tempfile.TemporaryDirectory(dir=version_dir) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        if precision == "int8-dynamic":
            quantize_dynamic(prepared, target, weight_type=QuantType.QInt8, per_channel=False)
        elif precision == "int8-static":
            if not calibration:
                raise ExportError(f"{version_dir}: int8-static needs calibration inputs")
            quantize_static(
                prepared, target, _FeedsReader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                # MinMax keeps only each tensor's min and max per run: small at any model size. (Its
                # CalibMaxIntermediateOutputs option drops the collected data in onnxruntime 1.32: not used.)
                calibrate_method=CalibrationMethod.MinMax,
            )
        else:
            raise ValueError(f"no variant {precision!r}: choose from {', '.join(VARIANTS)}")
    return target


def _omit_empty_resize_scales(model) -> None:
    """paddle2onnx gives Resize (the UNet's upsampling) sizes AND an empty constant as scales. The fp16 converter
    casts that constant, after which onnxruntime can no longer see it is empty and refuses the graph ("Either
    `sizes` or `scales` must be provided, but not both"); ONNX's own way to leave an optional input out is "".
    """
    from onnx import numpy_helper

    empty = {node.output[0] for node in model.graph.node if node.op_type == "Constant"
             and any(a.name == "value" and numpy_helper.to_array(a.t).size == 0 for a in node.attribute)}
    empty |= {init.name for init in model.graph.initializer if numpy_helper.to_array(init).size == 0}
    for node in model.graph.node:
        if node.op_type == "Resize" and len(node.input) == 4 and node.input[3] and node.input[2] in empty:
            node.input[2] = ""


def compare_with_fp32(version_dir: Path, precision: str, cases: Dict[str, Feeds],
                      output_names: Sequence[str]) -> List[dict]:
    """Max abs / relative error of the variant against the fp32 graph, per input case and output."""
    reference = open_graph(version_dir, RuntimeOptions(precision=FP32))
    variant = open_graph(version_dir, RuntimeOptions(precision=precision))
    rows = []
    for case, feeds in cases.items():
        for name, ref, out in zip(output_names, reference.run(feeds), variant.run(feeds)):
            max_abs, max_rel = compare(ref, out)
            rows.append({"case": case, "output": name, "max_abs": max_abs, "max_rel": max_rel})
    return rows
