"""Precision variants, the pure parts: the --precision flag, the served parameter, the fidelity metrics."""
import numpy as np
import pytest

from export.__main__ import main as export_main
from export.fidelity import log_mel_distance, mel_filterbank, waveform_relative_error
from musicgen.llm.step_session import open_step_session
from musicgen.params import COMPONENT_PARAMETERS, read_parameters
from musicgen.precision import onnx_file, parse_precisions, render_precisions
from musicgen.runtime import RuntimeOptions, open_graph
from musicgen_client import interface as api

AUDIOLDM = [c.name for c in api.AUDIOLDM_COMPONENTS]


def test_one_value_applies_to_every_component():
    assert parse_precisions("int8-dynamic", AUDIOLDM) == {name: "int8-dynamic" for name in AUDIOLDM}
    assert parse_precisions("fp32", AUDIOLDM) == {}


def test_per_component_by_short_or_full_name_and_fp32_dropped():
    chosen = parse_precisions("unet=int8-static, audioldm_vocoder=fp16,vae_decoder=fp32", AUDIOLDM)
    assert chosen == {api.AUDIOLDM_UNET: "int8-static", api.AUDIOLDM_VOCODER: "fp16"}
    # A stage model's `precision` parameter is this mapping, written by export and read back the same.
    assert parse_precisions(render_precisions(chosen), AUDIOLDM) == chosen
    assert render_precisions({}) == "fp32"


@pytest.mark.parametrize("text,message", [
    ("int4", "unknown precision 'int4'; choose from fp32, int8-dynamic, int8-static, fp16"),
    ("unet=bf16", "unknown precision 'bf16'"),
    ("unett=int8-static", "unknown component 'unett'; choose from"),
    ("unet=int8-static,audioldm_unet=fp16", "'audioldm_unet' given twice"),
])
def test_rejects_unknown_components_and_precisions(text, message):
    with pytest.raises(ValueError, match=message):
        parse_precisions(text, AUDIOLDM)


@pytest.mark.parametrize("argv,message", [
    (["audioldm", "--preset", "tiny", "--precision", "unet=int4"], "unknown precision 'int4'"),
    (["audioldm", "--preset", "tiny", "--precision", "int8-static", "--backend", "paddle"], "--backend onnxruntime"),
    (["chatglm", "--preset", "tiny", "--precision", "int8-static"],
     "chatglm_llm_step=int8-static: chatglm writes fp32, fp16, int8-dynamic"),
    (["minigpt4", "--preset", "tiny", "--precision", "llm_step=fp16,unet=fp16"], "unknown component 'unet'"),
])
def test_export_flag_fails_before_exporting(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        export_main(argv + ["--out", str(tmp_path / "repo"), "--weights-dir", str(tmp_path / "weights")])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_served_parameter_defaults_to_fp32_and_is_strict():
    assert read_parameters({}, COMPONENT_PARAMETERS)["precision"] == "fp32"
    config = {"parameters": {"precision": {"string_value": "int8-static"}}}
    assert RuntimeOptions(**read_parameters(config, COMPONENT_PARAMETERS)).precision == "int8-static"
    with pytest.raises(ValueError, match="choose one of fp32, int8-dynamic, int8-static, fp16"):
        read_parameters({"parameters": {"precision": {"string_value": "bf16"}}}, COMPONENT_PARAMETERS)


def test_variant_file_names():
    assert onnx_file("fp32") == "model.onnx" and onnx_file("int8-static") == "model.int8-static.onnx"


def test_missing_variant_fails_clearly(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"")  # the fp32 graph is there, the variant is not
    with pytest.raises(FileNotFoundError, match="precision 'int8-dynamic': no model.int8-dynamic.onnx in"):
        open_graph(tmp_path, RuntimeOptions(precision="int8-dynamic"))
    with pytest.raises(ValueError, match="paddle fp32"):
        open_graph(tmp_path, RuntimeOptions(backend="paddle", precision="int8-dynamic"))
    with pytest.raises(ValueError, match="paddle fp32"):  # an LLM step graph's session too: never silently fp32
        open_step_session(tmp_path, RuntimeOptions(backend="paddle", precision="fp16"))


def _noise(seconds=1.0, rate=16000, seed=0):
    return np.random.default_rng(seed).standard_normal(int(seconds * rate)).astype(np.float32)


def test_identical_waveforms_are_zero_apart():
    wave = _noise()
    assert waveform_relative_error(wave, wave) == 0.0
    assert log_mel_distance(wave, wave, 16000) == 0.0


def test_a_gain_change_reads_as_its_decibels():
    wave = _noise()
    assert waveform_relative_error(2 * wave, wave) == pytest.approx(1.0)
    # White noise fills every mel band far above the -80 dB floor: a 2× gain is +6.02 dB everywhere.
    assert log_mel_distance(2 * wave, wave, 16000) == pytest.approx(20 * np.log10(2), rel=1e-6)


def test_a_different_sound_is_far_in_both():
    wave, other = _noise(seed=0), _noise(seed=1)
    assert waveform_relative_error(other, wave) > 1.0
    assert 0.5 < log_mel_distance(other, wave, 16000) < 20  # same spectrum on average, different detail


def test_lengths_must_match():
    with pytest.raises(ValueError, match="differ in length"):
        waveform_relative_error(_noise(1.0), _noise(0.5))


def test_mel_filterbank_is_librosas():
    librosa = pytest.importorskip("librosa")
    ours = mel_filterbank(16000, 1024, 64)
    assert np.allclose(ours, librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64), atol=1e-6)
