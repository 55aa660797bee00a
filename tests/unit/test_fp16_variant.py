"""The fp16 variant of a graph with paddle2onnx's Resize (sizes given, scales an empty constant) still loads."""
import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

from export.precision import write_variant
from musicgen.runtime import ONNX_FILE


def test_fp16_upsampling_graph_loads_and_matches_fp32(tmp_path):
    constants = [
        helper.make_node("Constant", [], ["roi"], value=numpy_helper.from_array(np.zeros(0, np.float32))),
        helper.make_node("Constant", [], ["scales"], value=numpy_helper.from_array(np.zeros(0, np.float32))),
        helper.make_node("Constant", [], ["sizes"], value=numpy_helper.from_array(np.array([1, 2, 8, 8], np.int64))),
    ]
    resize = helper.make_node("Resize", ["x", "roi", "scales", "sizes"], ["y"], mode="nearest")
    graph = helper.make_graph(constants + [resize], "upsample",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / ONNX_FILE))
    target = write_variant(tmp_path, "fp16", calibration=[])
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    fp32 = onnxruntime.InferenceSession(str(tmp_path / ONNX_FILE), providers=["CPUExecutionProvider"])
    fp16 = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(fp16.run(None, {"x": x})[0], fp32.run(None, {"x": x})[0], rtol=1e-3, atol=1e-3)
