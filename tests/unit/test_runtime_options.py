"""RuntimeOptions reach the onnxruntime session they configure, and do not change what the graph computes."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from musicgen.runtime import ONNX_FILE, RuntimeOptions, open_graph

PREPACKING_OFF = "session.disable_prepacking"


def matmul_graph(folder):
    weight = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", 32])],
                              initializer=[numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(folder / ONNX_FILE))
    return weight


@pytest.mark.parametrize("prepack", [True, False])
def test_prepack_weights_sets_the_session_option_and_keeps_the_result(tmp_path, prepack):
    weight = matmul_graph(tmp_path)
    runner = open_graph(tmp_path, RuntimeOptions(prepack_weights=prepack))
    options = runner._session.get_session_options()
    if prepack:  # onnxruntime's default: the option is not set at all
        with pytest.raises(RuntimeError, match="does not have configuration"):
            options.get_session_config_entry(PREPACKING_OFF)
    else:
        assert options.get_session_config_entry(PREPACKING_OFF) == "1"
    x = np.random.default_rng(1).standard_normal((5, 64)).astype(np.float32)
    np.testing.assert_allclose(runner.run({"x": x})[0], x @ weight, rtol=1e-5, atol=1e-5)
