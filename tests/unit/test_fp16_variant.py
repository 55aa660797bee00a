"""fp16 variants: a graph with paddle2onnx's Resize (sizes given, scales an empty constant) still loads; an LLM
step graph's KV cache goes fp16 while its other inputs and outputs keep their dtypes."""
import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.precision import write_variant
from musicgen.runtime import ONNX_FILE, RuntimeOptions, open_graph


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


@pytest.mark.parametrize("past,present", [
    (["past_key_0", "past_value_0"], ["new_key_values"]),  # per-layer buffers in, the new positions out
])
def test_fp16_step_graph_keeps_only_its_kv_cache_in_fp16(tmp_path, past, present):
    """Token inputs and logits keep their dtypes; the cache tensors, picked by name (musicgen.precision), go fp16;
    the runner speaks fp32 at its boundary, so the served graph model's interface does not change."""
    version_dir = tmp_path / "step" / "1"
    version_dir.mkdir(parents=True)
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["logits"])]
    nodes += [helper.make_node("Add", [past[0], "x"], [present[0]])]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 4]) for n in ["x"] + past]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 4]) for n in ["logits"] + present]
    nodes += [helper.make_node("Identity", [name], [f"unused_{name}"]) for name in past[1:]]
    graph = helper.make_graph(nodes, "step", inputs, outputs, initializer=[weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(version_dir / ONNX_FILE))

    target = write_variant(version_dir, "fp16", calibration=[])
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    types = {t.name: t.type for t in session.get_inputs() + session.get_outputs()}
    assert {n for n, t in types.items() if t == "tensor(float16)"} == set(past + present)
    assert types["x"] == types["logits"] == "tensor(float)"

    runner = open_graph(version_dir, RuntimeOptions(precision="fp16"))
    feeds = {n: np.random.default_rng(1).standard_normal((4, 4)).astype(np.float32) for n in ["x"] + past}
    got = runner.run(feeds)  # fp32 cache fed: cast to the graph's fp16 at the boundary, widened back
    want = open_graph(version_dir, RuntimeOptions()).run(feeds)
    assert [g.dtype for g in got] == [np.float32, np.float32]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-2, atol=1e-2)
    assert runner.input_dtypes[past[0]] == np.float16 and runner.input_dtypes["x"] == np.float32
