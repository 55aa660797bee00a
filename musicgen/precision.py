"""Precision variants of an exported ONNX graph: their names and files.

`python -m export ... --precision` writes each variant next to the fp32 `model.onnx` (always exported and
parity-checked); the served component's `precision` parameter picks the file. fp32 is the default.
"""

ONNX_FILE = "model.onnx"  # the fp32 graph
FP32 = "fp32"
# int8-*: onnxruntime quantization (CPU); fp16: the GPU option (onnxruntime.transformers.float16).
PRECISIONS = (FP32, "int8-dynamic", "int8-static", "fp16")


def onnx_file(precision: str) -> str:
    """model.onnx for fp32, model.<precision>.onnx for a variant."""
    return ONNX_FILE if precision == FP32 else f"model.{precision}.onnx"
