"""Graphs past protobuf's 2 GB: the weight-free conversion plus ONNX external data (export/external_data.py),
exercised on a small Paddle graph with the threshold at 0 so that it takes the large-graph path.

The external-data graph must give exactly what paddle2onnx's own single-file graph gives (same converted graph,
same weights), its data file must be covered by the manifest, and a damaged parameters file must be refused.
"""
import numpy as np
import pytest

from export.core import convert_to_onnx, save_paddle_inference
from export.external_data import attach_external_weights, program_parameters, stored_parameters, stored_tensors
from export.precision import has_external_data, write_variant
from musicgen import manifest
from musicgen.runtime import ONNX_FILE, PADDLE_DIR, PADDLE_PARAMS, PADDLE_PROGRAM, RuntimeOptions, open_graph


@pytest.fixture(scope="module")
def saved_graph(tmp_path_factory):
    """(version folder, eager layer, feeds): an embedding → linear → layer norm, saved as a Paddle graph."""
    import paddle

    class Small(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.embed = paddle.nn.Embedding(50, 16)
            self.proj = paddle.nn.Linear(16, 24)
            self.norm = paddle.nn.LayerNorm(24)

        def forward(self, input_ids):
            return self.norm(self.proj(self.embed(input_ids)))

    paddle.seed(3)
    layer = Small()
    layer.eval()
    version = tmp_path_factory.mktemp("small") / "1"
    save_paddle_inference(layer, [paddle.static.InputSpec([-1, -1], "int64", "input_ids")], version)
    feeds = {"input_ids": np.array([[1, 7, 49], [0, 3, 3]], dtype="int64")}
    return version, layer, feeds


def test_parameters_file_is_read_in_the_programs_sorted_order(saved_graph):
    version, layer, _ = saved_graph
    paddle_dir = version / PADDLE_DIR
    declared = program_parameters(paddle_dir / PADDLE_PROGRAM)
    assert list(declared) == sorted(declared)
    eager = {p.name: p.numpy() for p in layer.parameters()}  # the saved program keeps the eager names
    assert declared == {name: tuple(value.shape) for name, value in eager.items()}
    with open(paddle_dir / PADDLE_PARAMS, "rb") as stream:
        for name, tensor in stored_parameters(paddle_dir / PADDLE_PROGRAM, paddle_dir / PADDLE_PARAMS):
            stream.seek(tensor.offset)
            data = np.frombuffer(stream.read(tensor.nbytes), dtype="float32").reshape(tensor.dims)
            np.testing.assert_array_equal(data, eager[name], err_msg=name)


def test_external_data_graph_equals_single_file_graph_and_eager(saved_graph, tmp_path):
    import paddle

    version, layer, feeds = saved_graph
    single = tmp_path / "single" / "1"
    (single / PADDLE_DIR).mkdir(parents=True)
    for name in (PADDLE_PROGRAM, PADDLE_PARAMS):
        (single / PADDLE_DIR / name).write_bytes((version / PADDLE_DIR / name).read_bytes())
    convert_to_onnx(single)
    convert_to_onnx(version, external_above=0)
    data = version / f"{ONNX_FILE}.data"
    assert not (single / f"{ONNX_FILE}.data").exists() and data.exists()
    params_bytes = sum(t.nbytes for t in stored_tensors(version / PADDLE_DIR / PADDLE_PARAMS))
    # The graph file holds no weights; the data file holds them all (page-aligned, so a little more).
    assert (version / ONNX_FILE).stat().st_size < (single / ONNX_FILE).stat().st_size - params_bytes / 2
    assert params_bytes <= data.stat().st_size < params_bytes + 4096 * len(layer.parameters())

    external = open_graph(version, RuntimeOptions())
    [got] = external.run(feeds)
    [want] = open_graph(single, RuntimeOptions()).run(feeds)
    np.testing.assert_array_equal(got, want)
    with paddle.no_grad():
        eager = layer(paddle.to_tensor(feeds["input_ids"])).numpy()
    np.testing.assert_allclose(got, eager, rtol=0, atol=1e-5)


def test_manifest_covers_the_external_data(saved_graph):
    version, _, _ = saved_graph
    convert_to_onnx(version, external_above=0)
    manifest.write_manifest(version)
    open_graph(version, RuntimeOptions(), check_manifest=True)
    data = version / f"{ONNX_FILE}.data"
    original = data.read_bytes()
    try:
        data.write_bytes(original[:-4] + bytes(4))  # same size, other bytes
        with pytest.raises(manifest.ManifestError, match="model.onnx.data"):
            open_graph(version, RuntimeOptions(), check_manifest=True)
    finally:
        data.write_bytes(original)


def test_truncated_parameters_file_is_refused(saved_graph, tmp_path):
    version, _, _ = saved_graph
    cut = tmp_path / PADDLE_PARAMS
    cut.write_bytes((version / PADDLE_DIR / PADDLE_PARAMS).read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        list(stored_tensors(cut))


def test_weights_are_not_attached_twice(saved_graph, tmp_path):
    """paddle2onnx's single-file graph defines every parameter already: attaching would duplicate them."""
    version, _, _ = saved_graph
    paddle_dir = version / PADDLE_DIR
    convert_to_onnx(version)
    single = tmp_path / ONNX_FILE
    single.write_bytes((version / ONNX_FILE).read_bytes())
    with pytest.raises(ValueError, match="not a weight-free conversion"):
        attach_external_weights(single, paddle_dir / PADDLE_PROGRAM, paddle_dir / PADDLE_PARAMS)


@pytest.mark.parametrize("precision", ["fp16", "int8-dynamic"])
def test_precision_variant_of_an_external_data_graph_equals_the_single_file_ones(saved_graph, tmp_path, precision):
    """The quantizers are told to keep an external-data graph's weights outside theirs too (without, quantizing
    one fails even when it is small); the variant is the one the single-file graph gives."""
    version, _, feeds = saved_graph
    outputs = {}
    for name, external_above in (("single", None), ("external", 0)):
        folder = tmp_path / name / "1"
        (folder / PADDLE_DIR).mkdir(parents=True)
        for file in (PADDLE_PROGRAM, PADDLE_PARAMS):
            (folder / PADDLE_DIR / file).write_bytes((version / PADDLE_DIR / file).read_bytes())
        convert_to_onnx(folder, **({} if external_above is None else {"external_above": external_above}))
        assert has_external_data(folder) == (external_above is not None)
        write_variant(folder, precision, calibration=())
        manifest.write_manifest(folder)
        outputs[name] = open_graph(folder, RuntimeOptions(precision=precision), check_manifest=True).run(feeds)
    np.testing.assert_array_equal(outputs["external"][0], outputs["single"][0])
