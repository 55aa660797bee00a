"""image2music end to end on a real tritonserver: MiniGPT4 caption → ChatGLM music prompt → AudioLDM.

The LLM graphs' token parity with paddlenlp's eager generate is tested in tests/llm; here the served flow must
equal its stages called one by one, repeat exactly for the same image and seed, and refuse bad images with 400.
"""

import time

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from cases import BAD_IMAGES, PHOTO, infer_raw  # tests/cases.py
from metrics import metric_value  # tests/metrics.py
from musicgen.llm.recipes import ImageToMusicPrompt
from musicgen.runtime import RuntimeOptions, local_stage_runner
from musicgen_client import flow
from musicgen_client import interface as api

pytestmark = pytest.mark.e2e

OPTIONS = {api.NUM_INFERENCE_STEPS: np.array([3], np.int32), api.AUDIO_LENGTH_IN_S: np.array([1.0], np.float32),
           api.SEED: np.array([120], np.int64), api.NEGATIVE_PROMPT: np.array([b"low quality"], dtype=object)}




def call(server, model, arrays, protocol="http"):
    return infer_raw(server, protocol, model, arrays)


def text(result, name):
    return result.as_numpy(name).reshape(-1)[0].decode("utf-8")


def image_input(data: bytes):
    return {api.IMAGE: np.array([data], dtype=object)}


@pytest.fixture(scope="module")
def served(triton_server):
    """One image2music answer over HTTP, shared by the checks below."""
    return call(triton_server, api.IMAGE2MUSIC, {**image_input(PHOTO), **OPTIONS})


def test_outputs_and_exact_repeat_over_grpc(triton_server, served):
    assert served.as_numpy(api.AUDIO).shape == (16000,) and int(served.as_numpy(api.SEED)[0]) == 120
    assert int(served.as_numpy(api.SAMPLING_RATE)[0]) == 16000
    again = call(triton_server, api.IMAGE2MUSIC, {**image_input(PHOTO), **OPTIONS}, protocol="grpc")
    for name in (api.CAPTION, api.MUSIC_PROMPT):
        assert text(again, name) == text(served, name)
    assert np.array_equal(again.as_numpy(api.AUDIO), served.as_numpy(api.AUDIO))


def test_requests_and_latency_appear_on_the_metrics_port(triton_server, served):
    """image2music answers after execute() returned: its own latency metric times the request to its answer."""
    labels = {"model": api.IMAGE2MUSIC, "outcome": "success"}
    before = {name: metric_value(triton_server, name, **labels)
              for name in ("musicgen_requests_total", "musicgen_request_seconds_count", "musicgen_request_seconds_sum")}
    start = time.monotonic()
    call(triton_server, api.IMAGE2MUSIC, {**image_input(PHOTO), **OPTIONS})
    elapsed = time.monotonic() - start
    assert metric_value(triton_server, "musicgen_requests_total", **labels) == before["musicgen_requests_total"] + 1
    assert metric_value(triton_server, "musicgen_request_seconds_count", **labels) == (
        before["musicgen_request_seconds_count"] + 1)
    seconds = metric_value(triton_server, "musicgen_request_seconds_sum", **labels) - before["musicgen_request_seconds_sum"]
    assert 0 < seconds <= elapsed
    # text2music, in the other stub, has the same families: both models' series are there.
    assert metric_value(triton_server, "musicgen_requests_total", model=api.TEXT2MUSIC, outcome="success") >= 1

def test_stages_called_alone_give_the_same_results(triton_server, served):
    caption = text(call(triton_server, api.CAPTION, image_input(PHOTO)), api.CAPTION)
    assert caption == text(served, api.CAPTION)
    question = flow.music_prompt_request(caption)
    answer = text(call(triton_server, api.CHATGLM, {api.PROMPT: np.array([question.encode()], dtype=object)}), api.TEXT)
    music_prompt = flow.audio_prompt(flow.music_prompt_from_answer(answer), caption, api.MAX_PROMPT_BYTES)
    assert music_prompt == text(served, api.MUSIC_PROMPT)
    audio = call(triton_server, api.TEXT2MUSIC, {api.PROMPT: np.array([music_prompt.encode()], dtype=object), **OPTIONS})
    assert np.array_equal(audio.as_numpy(api.AUDIO), served.as_numpy(api.AUDIO))


def test_served_caption_equals_the_recipe_over_local_graphs(model_repository, served):
    graphs = [c.name for c in api.MINIGPT4_COMPONENTS + api.CHATGLM_COMPONENTS]
    chain = ImageToMusicPrompt.from_repository(model_repository, local_stage_runner(model_repository, graphs, RuntimeOptions()))
    caption, music = chain(PHOTO)
    assert caption.caption == text(served, api.CAPTION)
    assert flow.audio_prompt(music.music_prompt, caption.caption, api.MAX_PROMPT_BYTES) == text(served, api.MUSIC_PROMPT)




@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", [api.IMAGE2MUSIC, api.CAPTION])
@pytest.mark.parametrize("data,message", BAD_IMAGES)
def test_bad_images_get_400(triton_server, protocol, model, data, message):
    with pytest.raises(InferenceServerException) as err:
        call(triton_server, model, image_input(data), protocol)
    assert message in err.value.message()
    assert err.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")


@pytest.mark.parametrize("model,arrays,message", [
    (api.IMAGE2MUSIC, {**image_input(PHOTO), api.NUM_INFERENCE_STEPS: np.array([0], np.int32)}, "num_inference_steps: 0"),
    (api.IMAGE2MUSIC, {**image_input(PHOTO), api.AUDIO_LENGTH_IN_S: np.array([np.nan], np.float32)}, "audio_length_in_s: nan"),
    (api.IMAGE2MUSIC, {api.SEED: np.array([1], np.int64)}, "image: is required"),
    (api.CAPTION, {**image_input(PHOTO), api.MAX_NEW_TOKENS: np.array([0], np.int32)}, "max_new_tokens: 0 is out of range"),
    (api.CHATGLM, {api.PROMPT: np.array([b"\xff\xfe"], dtype=object)}, "prompt: is not valid UTF-8"),
    (api.CHATGLM, {api.PROMPT: np.array([b"hi"], dtype=object), api.MAX_NEW_TOKENS: np.array([99999], np.int32)},
     "max_new_tokens: 99999 is out of range: allowed 1 to 4096"),
])
def test_bad_options_get_400(triton_server, model, arrays, message):
    with pytest.raises(InferenceServerException) as err:
        call(triton_server, model, arrays)
    assert message in err.value.message() and err.value.status() == "400"


def test_server_healthy_after_the_battery(triton_server):
    client = httpclient.InferenceServerClient(triton_server.http_url)
    names = [api.IMAGE2MUSIC, api.CAPTION, api.CHATGLM, api.TEXT2MUSIC] + list(api.COMPONENTS_BY_NAME)
    assert client.is_server_ready() and all(client.is_model_ready(n) for n in names)
    short = call(triton_server, api.CHATGLM, {api.PROMPT: np.array([b"a calm lake"], dtype=object),
                                              api.MAX_NEW_TOKENS: np.array([4], np.int32)})
    assert isinstance(text(short, api.TEXT), str)
