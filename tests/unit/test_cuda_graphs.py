"""The GPU path's logic, without a GPU: batch padding, one captured graph per padded shape, the CUDA provider
required where asked, and the GPU configs export writes. The GPU itself is exercised by benchmarks/gpu/serve.sh."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from export.serving import Serving, write_stage
from musicgen.cuda_graphs import SKIP_CAPTURE, CudaGraphRunner, batch_rows, pad_rows, padded_rows
from musicgen.params import COMPONENT_PARAMETERS, TEXT2MUSIC_PARAMETERS, read_parameters
from musicgen.repository import read_config, write_model
from musicgen.runtime import RuntimeOptions, open_graph, replayable
from musicgen_client import interface as api


@pytest.mark.parametrize("rows, padded", [(1, 1), (2, 2), (3, 4), (5, 8), (8, 8), (9, 16), (16, 16)])
def test_rows_round_up_to_a_power_of_two(rows, padded):
    assert padded_rows(rows) == padded


def test_no_rows_is_an_error():
    with pytest.raises(ValueError):
        padded_rows(0)


def test_padding_repeats_the_last_row_and_keeps_the_others():
    feeds = {"sample": np.arange(6, dtype=np.float32).reshape(3, 2), "timestep": np.array([1.0, 2.0, 3.0])}
    padded = pad_rows(feeds, 4)
    np.testing.assert_array_equal(padded["sample"], [[0, 1], [2, 3], [4, 5], [4, 5]])
    np.testing.assert_array_equal(padded["timestep"], [1, 2, 3, 3])


def test_inputs_must_agree_on_the_batch():
    with pytest.raises(ValueError, match="disagree"):
        batch_rows({"a": np.zeros((2, 1)), "b": np.zeros((3,))})


class FakeOrt:
    """The slice of onnxruntime's API CudaGraphRunner uses, on the CPU: the graph doubles its input, and each
    run records the gpu_graph_id it was given."""

    class OrtValue:
        def __init__(self, array):
            self.array = array

        @classmethod
        def ortvalue_from_numpy(cls, array, device, device_id):
            assert (device, device_id) == ("cuda", 3)
            return cls(array.copy())

        def update_inplace(self, array):
            assert array.shape == self.array.shape, "a bound buffer never changes shape"
            self.array[...] = array

        def numpy(self):
            return self.array.copy()

    class RunOptions:
        def __init__(self):
            self.entries = {}

        def add_run_config_entry(self, key, value):
            self.entries[key] = value


class FakeSession:
    def __init__(self):
        self.graph_ids = []

    def get_inputs(self):
        return [type("Arg", (), {"name": "x"})]

    def get_outputs(self):
        return [type("Arg", (), {"name": "y"})]

    def io_binding(self):
        return FakeBinding()

    def run_with_iobinding(self, binding, options):
        self.graph_ids.append(int(options.entries["gpu_graph_id"]))
        binding.run()


class FakeBinding:
    def __init__(self):
        self.inputs, self.outputs = {}, {}

    def bind_ortvalue_input(self, name, value):
        self.inputs[name] = value

    def bind_output(self, name, device, device_id):
        self.outputs[name] = None  # allocated by the first run

    def bind_ortvalue_output(self, name, value):
        self.outputs[name] = value

    def run(self):
        result = self.inputs["x"].array * 2
        if self.outputs["y"] is None:
            self.outputs["y"] = FakeOrt.OrtValue(result)
        else:
            self.outputs["y"].array[...] = result

    def get_outputs(self):
        return [self.outputs["y"]]


def test_each_padded_shape_gets_one_graph_and_rows_come_back_unpadded():
    session = FakeSession()
    runner = CudaGraphRunner(session, FakeOrt, device_id=3, max_graphs=2)
    for rows in (3, 4, 3, 1):
        x = np.arange(rows * 2, dtype=np.float32).reshape(rows, 2)
        (y,) = runner.run({"x": x})
        np.testing.assert_array_equal(y, x * 2)
    # 3 and 4 rows share the 4-row graph; the first run of each shape allocates its outputs uncaptured; one
    # session run per call.
    assert session.graph_ids == [SKIP_CAPTURE, 0, 0, SKIP_CAPTURE]
    assert len(runner.captured_shapes) == 2


def test_shapes_past_the_limit_run_uncaptured():
    session = FakeSession()
    runner = CudaGraphRunner(session, FakeOrt, device_id=3, max_graphs=1)
    runner.run({"x": np.ones((1, 2), np.float32)})
    for _ in range(2):
        (y,) = runner.run({"x": np.ones((2, 2), np.float32)})
        np.testing.assert_array_equal(y, 2 * np.ones((2, 2)))
    runner.run({"x": np.ones((1, 2), np.float32)})
    # The 2-row shape is never given a graph id nor kept; the 1-row one replays its graph.
    assert session.graph_ids == [SKIP_CAPTURE, SKIP_CAPTURE, SKIP_CAPTURE, 0]
    assert [dict(shape)["x"] for shape in runner.captured_shapes] == [(1, 2)]


def _tiny_graph() -> bytes:
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_cuda_graphs_only_on_gpu_onnxruntime(tmp_path):
    folder = tmp_path / api.AUDIOLDM_UNET / "1"
    folder.mkdir(parents=True)
    onnx.save(onnx.load_from_string(_tiny_graph()), str(folder / "model.onnx"))
    with pytest.raises(ValueError, match="cuda_graphs"):
        open_graph(folder, RuntimeOptions(cuda_graphs=True))


def test_only_graphs_with_repeating_shapes_are_replayed():
    assert [c.name for c in api.AUDIOLDM_COMPONENTS if replayable(c.name)] == [
        api.AUDIOLDM_UNET, api.AUDIOLDM_VAE_DECODER, api.AUDIOLDM_VOCODER]
    assert not replayable(api.CHATGLM_LLM_STEP) and not replayable("not_a_component")


def test_gpu_export_configs_ask_for_gpu_instances_and_cuda_graphs(tmp_path):
    serving = Serving(device="gpu")
    unet = write_model(tmp_path, serving.component_entry(api.COMPONENTS_BY_NAME[api.AUDIOLDM_UNET]))
    text2music = write_stage(tmp_path, api.TEXT2MUSIC, serving)
    for folder, schema in ((unet, COMPONENT_PARAMETERS), (text2music, TEXT2MUSIC_PARAMETERS)):
        config = read_config(folder)
        assert config["instance_group"][0]["kind"] == "KIND_GPU"
        parameters = read_parameters(config, schema)
        assert (parameters["device"], parameters["cuda_graphs"], parameters["tf32"]) == ("gpu", True, False)
    cpu = read_parameters(read_config(write_stage(tmp_path / "cpu", api.TEXT2MUSIC, Serving())), TEXT2MUSIC_PARAMETERS)
    assert (cpu["device"], cpu["cuda_graphs"]) == ("cpu", False)

