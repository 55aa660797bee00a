"""Candidates end to end: num_waveforms_per_prompt through a real tritonserver, over HTTP and gRPC.

The served candidates are eager ppdiffusers' waveforms for the same k and seed, reordered best first by CLAP, with
descending scores; without the CLAP audio encoder in the repository the response says ranking is off.
"""
import numpy as np
import paddle
import pytest

from musicgen_client import MusicClient
from musicgen_client import interface as api
from test_text2music import infer, rel_err, variant_repository  # tests/e2e/test_text2music.py

pytestmark = pytest.mark.e2e

PROMPT = "a calm piano melody"
FIELDS = dict(prompt=PROMPT, negative_prompt="low quality", num_inference_steps=4, audio_length_in_s=1.0,
              guidance_scale=2.5, seed=120)


@pytest.fixture(scope="module")
def eager_candidates(tiny_weights):
    from ppdiffusers import AudioLDMPipeline

    pipe = AudioLDMPipeline.from_pretrained(str(tiny_weights))
    pipe.set_progress_bar_config(disable=True)

    def run(k, fields=FIELDS):
        return pipe(fields["prompt"], negative_prompt=fields["negative_prompt"],
                    num_inference_steps=fields["num_inference_steps"], audio_length_in_s=fields["audio_length_in_s"],
                    guidance_scale=fields["guidance_scale"], num_waveforms_per_prompt=k,
                    generator=paddle.Generator().manual_seed(fields["seed"])).audios

    return run


def matching_rows(served, eager):
    """For each served row, the eager row it is (≤1e-5 relative): a permutation when every row is found."""
    return [next(j for j, row in enumerate(eager) if rel_err(candidate, row) <= 1e-5) for candidate in served]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_three_candidates_are_eager_ones_best_first(triton_server, eager_candidates, protocol):
    result = infer(triton_server, protocol, num_waveforms_per_prompt=3, **FIELDS)
    audio, scores = result.as_numpy(api.AUDIO), result.as_numpy(api.SCORES)
    assert audio.shape == (3, 16000) and audio.dtype == np.float32
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert list(scores) == sorted(scores, reverse=True) and np.all(np.abs(scores) <= 1)
    assert result.as_numpy(api.RANKING)[0] == api.RANKING_CLAP.encode()
    assert int(result.as_numpy(api.SEED)[0]) == FIELDS["seed"]
    assert sorted(matching_rows(audio, eager_candidates(3))) == [0, 1, 2]


def test_without_the_input_the_audio_stays_flat_and_scored(triton_server, eager_candidates):
    """Backward compatible: no num_waveforms_per_prompt → one waveform, [samples] as before; k=1 sent → [1, samples]."""
    flat = infer(triton_server, **FIELDS)
    assert flat.as_numpy(api.AUDIO).shape == (16000,)
    assert flat.as_numpy(api.SCORES).shape == (1,)
    one = infer(triton_server, "grpc", num_waveforms_per_prompt=1, **FIELDS)
    assert one.as_numpy(api.AUDIO).shape == (1, 16000)
    np.testing.assert_array_equal(one.as_numpy(api.AUDIO)[0], flat.as_numpy(api.AUDIO))
    assert rel_err(flat.as_numpy(api.AUDIO), eager_candidates(1)[0]) <= 1e-5


def test_the_client_returns_candidates_and_scores(triton_server):
    with MusicClient(triton_server.grpc_url, protocol="grpc") as client:
        result = client.text_to_music(PROMPT, num_inference_steps=2, audio_length_in_s=0.5, seed=3,
                                      num_waveforms_per_prompt=4)
    assert result.candidates.shape == (4, 8000) and result.scores.shape == (4,)
    assert np.array_equal(result.audio, result.candidates[0]) and result.ranking == api.RANKING_CLAP
    with pytest.raises(ValueError, match="num_waveforms_per_prompt: 9 is out of range: allowed 1 to 8"):
        MusicClient(triton_server.http_url).text_to_music(PROMPT, num_waveforms_per_prompt=9)


@pytest.fixture(scope="module")
def unranked_server(model_repository, triton_server_factory, tmp_path_factory):
    """The AudioLDM graphs without audioldm_clap_audio: nothing to rank with."""
    return triton_server_factory(variant_repository(model_repository, tmp_path_factory.mktemp("unranked"), {}))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_without_an_audio_encoder_ranking_is_off_and_said_so(unranked_server, eager_candidates, protocol):
    result = infer(unranked_server, protocol, num_waveforms_per_prompt=2, **FIELDS)
    assert result.as_numpy(api.RANKING)[0].decode().startswith("off: no CLAP audio encoder")
    assert result.as_numpy(api.SCORES) is None
    np.testing.assert_allclose(result.as_numpy(api.AUDIO), eager_candidates(2), rtol=0,
                               atol=1e-5 * np.abs(eager_candidates(2)).max())  # as drawn: eager's order



def test_image2music_passes_candidates_through(triton_server):
    """image2music asks text2music for the same k and returns its candidates, scores and ranking as they are."""
    from cases import PHOTO  # tests/cases.py
    from test_image2music import OPTIONS, call, image_input, text  # tests/e2e/test_image2music.py

    k = {api.NUM_WAVEFORMS_PER_PROMPT: np.array([2], np.int32)}
    served = call(triton_server, api.IMAGE2MUSIC, {**image_input(PHOTO), **OPTIONS, **k}, protocol="grpc")
    assert served.as_numpy(api.AUDIO).shape == (2, 16000) and served.as_numpy(api.SCORES).shape == (2,)
    prompt = np.array([text(served, api.MUSIC_PROMPT).encode()], dtype=object)
    direct = call(triton_server, api.TEXT2MUSIC, {api.PROMPT: prompt, **OPTIONS, **k})
    for name in (api.AUDIO, api.SCORES, api.RANKING):
        assert np.array_equal(served.as_numpy(name), direct.as_numpy(name))
