"""In-flight batching and unpadded text encoding over the real exported graphs change no result.

A request's waveforms (and their CLAP ranking) are the same whether it ran alone or among 9 others of other prompts,
seeds, lengths, steps, guidance scales, negative prompts and numbers of candidates; prompts encoded on their real
token length give the embeddings the pipeline's 512-token padding gives.
"""
import numpy as np
import pytest

from musicgen.audioldm.pipeline import AudioLDMRecipe
from musicgen.protocol import AudioOptions
from musicgen.runtime import RuntimeOptions, local_stage_runner
from musicgen_client import interface as api

TOLERANCE = 1e-5  # relative to the waveform's peak

REQUESTS = [
    ("a calm piano melody", AudioOptions(num_inference_steps=4, audio_length_in_s=1.0, guidance_scale=2.5, seed=1)),
    ("fast techno drums", AudioOptions(negative_prompt="low quality", num_inference_steps=4, audio_length_in_s=1.0,
                                       guidance_scale=3.5, seed=2)),
    ("rain on a tin roof", AudioOptions(num_inference_steps=6, audio_length_in_s=1.0, guidance_scale=1.0, seed=3)),
    ("a calm piano melody", AudioOptions(num_inference_steps=4, audio_length_in_s=1.0, guidance_scale=2.5, seed=4)),
    ("an orchestra tuning up before the concert begins", AudioOptions(
        negative_prompt="noise, hiss", num_inference_steps=3, audio_length_in_s=1.5, guidance_scale=2.0, seed=5)),
    ("birdsong", AudioOptions(num_inference_steps=5, audio_length_in_s=0.5, guidance_scale=7.0, seed=6)),
    ("jazz", AudioOptions(num_inference_steps=2, audio_length_in_s=1.0, guidance_scale=2.5, seed=7)),
    ("a choir", AudioOptions(negative_prompt="", num_inference_steps=4, audio_length_in_s=1.27,
                             guidance_scale=2.5, seed=8)),
    ("a calm piano melody", AudioOptions(negative_prompt="hiss", num_inference_steps=4, audio_length_in_s=1.0,
                                         guidance_scale=2.5, seed=9, num_waveforms_per_prompt=3)),
    ("jazz", AudioOptions(num_inference_steps=3, audio_length_in_s=0.5, guidance_scale=1.0, seed=10,
                          num_waveforms_per_prompt=2)),
]


@pytest.fixture(scope="module")
def recipe(model_repository):
    names = [c.name for c in api.AUDIOLDM_COMPONENTS] + [api.AUDIOLDM_CLAP_AUDIO]
    run_stage = local_stage_runner(model_repository, names, RuntimeOptions())
    return AudioLDMRecipe(model_repository / api.TEXT2MUSIC / "1", run_stage, repository=model_repository)


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_ten_requests_batched_equal_each_alone(recipe):
    together = recipe.generate(REQUESTS)
    for (prompt, options), result in zip(REQUESTS, together):
        recipe.engine.cache.clear()  # alone means alone: no embedding from the batched run either
        (expected,) = recipe.generate([(prompt, options)])
        assert result.audio.shape == expected.audio.shape == (options.candidates, options.audio_length_in_s * 16000)
        assert rel(result.audio, expected.audio) <= TOLERANCE, (prompt, options)
        np.testing.assert_allclose(result.scores, expected.scores, rtol=0, atol=1e-5)


def test_unpadded_prompt_embeddings_equal_the_padded_ones(recipe):
    """The pipeline pads every prompt to the tokenizer's limit (512 for CLAP); the engine encodes the real
    tokens only. The attention mask hides the padding, so the embeddings must agree."""
    engine = recipe.engine
    engine.cache.clear()
    limit = engine.tokenizer.model_max_length
    texts = [prompt for prompt, _ in REQUESTS] + ["", "x " * 600]
    unpadded = engine.encode_texts([(text, limit) for text in texts])
    for text in texts:
        ids = engine.tokenizer.encode(text, max_length=limit)
        padded_ids = np.full((1, limit), engine.tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros((1, limit), dtype=np.int64)
        padded_ids[0, :len(ids)], mask[0, :len(ids)] = ids, 1
        padded = engine.run_stage(api.AUDIOLDM_TEXT_ENCODER, {"input_ids": padded_ids, "attention_mask": mask})[0]
        assert rel(unpadded[(text, limit)], padded) <= TOLERANCE, text


def test_the_pipeline_runs_without_paddle(model_repository):
    """A whole request of two ranked candidates over the ONNX graphs in a fresh process: paddle, ppdiffusers and
    paddlenlp never load."""
    import json
    import subprocess
    import sys

    probe = f"""
import json, sys
from musicgen.audioldm.pipeline import AudioLDMRecipe
from musicgen.protocol import AudioOptions
from musicgen.runtime import RuntimeOptions, local_stage_runner
names = {[c.name for c in api.AUDIOLDM_COMPONENTS] + [api.AUDIOLDM_CLAP_AUDIO]!r}
repo = {str(model_repository)!r}
recipe = AudioLDMRecipe(repo + "/text2music/1", local_stage_runner(repo, names, RuntimeOptions()), repository=repo)
(result,) = recipe.generate([("a calm piano melody", AudioOptions(num_inference_steps=2, audio_length_in_s=0.5, seed=1,
                                                                  num_waveforms_per_prompt=2))])
print(json.dumps({{"modules": sorted({{m.split('.')[0] for m in sys.modules}}), "shape": list(result.audio.shape),
                  "scores": len(result.scores)}}))
"""
    out = json.loads(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout)
    assert out["shape"] == [2, 8000] and out["scores"] == 2
    assert not {"paddle", "ppdiffusers", "paddlenlp"} & set(out["modules"])
