"""The served `precision` parameter: the component model loads the variant it names, or fails its load clearly.

Each test serves a one-model repository: the tiny vocoder with the config export writes for --precision.
"""
import shutil

import numpy as np
import pytest
import tritonclient.http as httpclient

from export.precision import write_variant
from export.serving import Serving
from musicgen.audioldm.config import AudioLDMConfig
from musicgen.manifest import write_manifest
from musicgen.repository import write_model
from musicgen.runtime import RuntimeOptions, open_graph
from musicgen.serving import TritonServer, TritonServerError, free_ports
from musicgen_client import interface as api

pytestmark = pytest.mark.e2e

VOCODER = api.COMPONENTS_BY_NAME[api.AUDIOLDM_VOCODER]


def vocoder_repository(model_repository, root, precision, with_variant):
    """A repository serving only the tiny vocoder at `precision`; the variant file written or not."""
    folder = write_model(root, Serving(precisions={VOCODER.name: precision}).component_entry(VOCODER))
    shutil.copyfile(model_repository / VOCODER.name / "1" / "model.onnx", folder / "1" / "model.onnx")
    if with_variant:
        write_variant(folder / "1", precision, calibration=[])
    write_manifest(folder / "1")  # as export does last
    return root


def mel(model_repository):
    mel_bins = AudioLDMConfig.load(model_repository / api.TEXT2MUSIC / "1").mel_bins
    return np.random.default_rng(0).standard_normal((1, 24, mel_bins)).astype(np.float32)


def serve(repository, tmp_path) -> TritonServer:
    http, grpc, metrics = free_ports(3)
    return TritonServer(repository, http, grpc, metrics, log_file=tmp_path / "tritonserver.log").start()


def test_precision_parameter_serves_the_variant(model_repository, tmp_path):
    repository = vocoder_repository(model_repository, tmp_path / "repo", "int8-dynamic", with_variant=True)
    config = (repository / VOCODER.name / "config.pbtxt").read_text()
    assert 'key: "precision" value: { string_value: "int8-dynamic" }' in config
    server = serve(repository, tmp_path)
    try:
        server.wait_until_ready(120)
        client = httpclient.InferenceServerClient(server.http_url)
        feed = httpclient.InferInput("mel_spectrogram", list(mel(model_repository).shape), "FP32")
        feed.set_data_from_numpy(mel(model_repository))
        served = client.infer(VOCODER.name, [feed]).as_numpy("waveform")
    finally:
        server.stop()
    version_dir = repository / VOCODER.name / "1"
    feeds = {"mel_spectrogram": mel(model_repository)}
    expected = open_graph(version_dir, RuntimeOptions(precision="int8-dynamic")).run(feeds)[0]
    fp32 = open_graph(version_dir, RuntimeOptions()).run(feeds)[0]
    assert np.array_equal(served, expected) and not np.array_equal(served, fp32)


def test_missing_variant_fails_the_load_naming_the_file(model_repository, tmp_path):
    repository = vocoder_repository(model_repository, tmp_path / "repo", "int8-static", with_variant=False)
    server = serve(repository, tmp_path)
    try:
        with pytest.raises(TritonServerError, match="precision 'int8-static': no model.int8-static.onnx in"):
            server.wait_until_ready(120)
    finally:
        server.stop()
