"""Candidates and their ranking over the exported graphs, against the eager Paddle models with the same weights.

- Unranked, the k candidates of a request are the k waveforms ppdiffusers' eager AudioLDMPipeline returns for the
  same `num_waveforms_per_prompt` and seed (one noise draw of [k, C, H, W], one batched loop).
- Ranked, they come back ordered as AudioLDM2's `score_waveforms` orders them: eager paddlenlp ClapModel's
  `logits_per_text` on librosa-resampled waveforms through paddlenlp's ClapFeatureExtractor; the scores are those
  logits without the logit scale (the cosine similarity).
"""
from dataclasses import replace

import numpy as np
import paddle
import pytest

from musicgen.audioldm.pipeline import AudioLDMRecipe
from musicgen.protocol import AudioOptions
from musicgen.runtime import RuntimeOptions, local_stage_runner
from musicgen_client import interface as api

PROMPT = "a calm piano melody"
GRAPHS = [c.name for c in api.AUDIOLDM_COMPONENTS] + [api.AUDIOLDM_CLAP_AUDIO]
CASES = [
    AudioOptions(negative_prompt="low quality", num_inference_steps=4, audio_length_in_s=1.0, guidance_scale=2.5,
                 seed=42, num_waveforms_per_prompt=3),
    AudioOptions(num_inference_steps=3, audio_length_in_s=0.5, guidance_scale=1.0, seed=7, num_waveforms_per_prompt=4),
]


@pytest.fixture(scope="module")
def eager_pipeline(tiny_weights):
    from ppdiffusers import AudioLDMPipeline

    pipe = AudioLDMPipeline.from_pretrained(str(tiny_weights))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def eager_candidates(pipe, options):
    return pipe(PROMPT, negative_prompt=options.negative_prompt, num_inference_steps=options.num_inference_steps,
                audio_length_in_s=options.audio_length_in_s, guidance_scale=options.guidance_scale,
                num_waveforms_per_prompt=options.num_waveforms_per_prompt,
                generator=paddle.Generator().manual_seed(options.seed)).audios


def recipe(repository, backend="onnxruntime", ranked=True):
    run = local_stage_runner(repository, GRAPHS, RuntimeOptions(backend=backend))
    return AudioLDMRecipe(repository / api.TEXT2MUSIC / "1", run, repository=repository if ranked else None)


@pytest.mark.parametrize("backend", ["onnxruntime", "paddle"])
def test_unranked_candidates_equal_eager_pipeline(model_repository, eager_pipeline, backend):
    ours = recipe(model_repository, backend, ranked=False)
    for options in CASES:
        (result,) = ours.generate([(PROMPT, options)])
        expected = eager_candidates(eager_pipeline, options)
        assert result.scores is None
        assert result.audio.shape == expected.shape == (options.candidates, int(options.audio_length_in_s * 16000))
        rel = np.abs(result.audio - expected).max() / np.abs(expected).max()
        assert rel <= (0.0 if backend == "paddle" else 1e-5), f"{backend} {options}: relative error {rel:.3g}"


def eager_clap_logits(tiny_weights, waveforms):
    """AudioLDM2Pipeline.score_waveforms, in paddle: the CLAP model's logits_per_text for the prompt."""
    import librosa
    from paddlenlp.transformers import ClapFeatureExtractor, ClapModel
    from ppdiffusers.transformers import RobertaTokenizer

    clap = ClapModel.from_pretrained(str(tiny_weights / "clap"))
    clap.eval()
    extractor = ClapFeatureExtractor.from_pretrained(str(tiny_weights / "clap"))
    tokenizer = RobertaTokenizer.from_pretrained(str(tiny_weights / "tokenizer"))
    inputs = tokenizer(PROMPT, return_tensors="pd", padding=True)
    resampled = librosa.resample(waveforms, orig_sr=16000, target_sr=extractor.sampling_rate)
    features = extractor(list(resampled), return_tensors="pd", sampling_rate=extractor.sampling_rate).input_features
    with paddle.no_grad():
        out = clap(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                   input_features=features.astype("float32"))
    return out.logits_per_text.numpy()[0], clap.logit_scale_t.exp().item()


def test_ranking_equals_eager_clap_order_and_similarities(model_repository, tiny_weights, eager_pipeline):
    ours = recipe(model_repository)
    assert ours.engine.ranker.description == api.RANKING_CLAP
    options = replace(CASES[0], seed=45)  # a seed whose best candidate is not the first drawn
    (result,) = ours.generate([(PROMPT, options)])
    unranked = eager_candidates(eager_pipeline, options)
    logits, scale = eager_clap_logits(tiny_weights, unranked)
    order = np.argsort(-logits, kind="stable")
    assert order.tolist() != [0, 1, 2], "this case must reorder, or the check below proves nothing"
    assert np.diff(np.sort(logits / scale)).min() > 1e-4  # far enough apart for the order to be meaningful
    np.testing.assert_allclose(result.audio, unranked[order], rtol=0, atol=1e-5 * np.abs(unranked).max())
    np.testing.assert_allclose(result.scores, (logits / scale)[order], rtol=0, atol=1e-5)
    assert list(result.scores) == sorted(result.scores, reverse=True)


def test_clap_audio_parity_report(model_repository):
    import json

    report = json.loads((model_repository / api.AUDIOLDM_CLAP_AUDIO / "1" / "parity.json").read_text())
    assert {(r["backend"], r["case"]) for r in report["results"]} == {
        (backend, case) for backend in ("paddle", "onnxruntime") for case in ("sample", "one_long_clip")}
    assert all(r["ok"] and r["max_rel"] <= 1e-4 for r in report["results"])
