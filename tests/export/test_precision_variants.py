"""Precision variants on the tiny AudioLDM graphs: written by onnxruntime's tools, loadable, measured.

Runs on a copy of the exported repository's AudioLDM models so the shared one stays fp32-only.
"""
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from export.audioldm.precision import write_precision_variants
from export.precision import write_variant
from musicgen.audioldm.config import AudioLDMConfig
from musicgen.protocol import AudioOptions
from musicgen.runtime import RuntimeOptions, open_graph
from musicgen_client import interface as api

SHORT = AudioOptions(negative_prompt="low quality", num_inference_steps=2, audio_length_in_s=1.0, guidance_scale=2.5,
                     seed=3)


@pytest.fixture
def repository(model_repository, tmp_path) -> Path:
    for name in [c.name for c in api.AUDIOLDM_COMPONENTS] + [api.TEXT2MUSIC]:
        shutil.copytree(model_repository / name, tmp_path / name, ignore=shutil.ignore_patterns("paddle"))
    return tmp_path


@pytest.mark.parametrize("precision", ["int8-dynamic", "int8-static", "fp16"])
def test_variant_is_written_next_to_fp32_and_runs(repository, precision):
    version_dir = repository / api.AUDIOLDM_VOCODER / "1"
    mel_bins = AudioLDMConfig.load(repository / api.TEXT2MUSIC / "1").mel_bins
    rng = np.random.default_rng(0)
    mels = [{"mel_spectrogram": rng.standard_normal((1, 16, mel_bins)).astype(np.float32)} for _ in range(3)]
    path = write_variant(version_dir, precision, mels[:2])
    assert path.name == f"model.{precision}.onnx" and (version_dir / "model.onnx").exists()
    assert sorted(p.name for p in version_dir.iterdir() if p.suffix == ".onnx") == sorted(["model.onnx", path.name])
    fp32 = open_graph(version_dir, RuntimeOptions()).run(mels[2])[0]
    variant = open_graph(version_dir, RuntimeOptions(precision=precision)).run(mels[2])[0]
    assert variant.shape == fp32.shape and variant.dtype == np.float32  # fp16 keeps fp32 inputs and outputs
    assert np.isfinite(variant).all() and not np.array_equal(variant, fp32)  # really the other graph


def test_fidelity_report_lands_in_parity_json(repository, tiny_weights):
    chosen = {api.AUDIOLDM_VOCODER: "int8-static", api.AUDIOLDM_TEXT_ENCODER: "int8-dynamic"}
    write_precision_variants(tiny_weights, repository, chosen, SHORT)
    for name, precision in chosen.items():
        report = json.loads((repository / name / "1" / "parity.json").read_text())
        assert report["results"]  # the fp32 parity results are kept
        variant = report["precision_variants"][precision]
        assert variant["file"] == f"model.{precision}.onnx"
        assert (repository / name / "1" / variant["file"]).exists()
        assert variant["component"] and all(math.isfinite(r["max_rel"]) for r in variant["component"])
        pipeline = variant["pipeline"]
        assert pipeline["steps"] == 2 and pipeline["seed"] == 3
        assert 0 < pipeline["waveform_rel_error"] < math.inf and 0 <= pipeline["log_mel_distance_db"] < math.inf
    untouched = json.loads((repository / api.AUDIOLDM_UNET / "1" / "parity.json").read_text())
    assert "precision_variants" not in untouched
