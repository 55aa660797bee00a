"""Streamed progress end to end: the decoupled `text2music_stream` and `image2music_stream` on a real tritonserver.

A stream carries one progress response per stage step, in order, then the unary model's result (the same
waveform for the same seed), flagged final. Closing the stream early cancels the work on the server.
"""
import json
import queue
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import soundfile
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from cases import PHOTO, arrays_of  # tests/cases.py
from musicgen_client import MusicClient, MusicServiceError
from musicgen_client import interface as api

pytestmark = pytest.mark.e2e

PROMPT = "a calm piano melody"
OPTIONS = dict(negative_prompt="low quality", num_inference_steps=5, audio_length_in_s=1.0, guidance_scale=3.0,
               seed=77)


def rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def grpc_inputs(fields):
    inputs = []
    for name, array in arrays_of(fields).items():
        datatype = "BYTES" if array.dtype == object else {np.float32: "FP32", np.int32: "INT32",
                                                          np.int64: "INT64"}[array.dtype.type]
        tensor = grpcclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def engine_counters(server, model):
    """{metric line name: value} of the engine's request and step counters for `model` on the metrics port."""
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        if f'model="{model}"' in line and line.startswith(("musicgen_requests_total", "musicgen_denoise_steps_total")):
            key = line.split("{")[0] + ("" if "outcome" not in line else line.split('outcome="')[1].split('"')[0])
            values[key] = float(line.rsplit(" ", 1)[1])
    return values


def wait_for_cancelled(server, before, timeout_s=60):
    """The stream model's counters once they show one more cancelled request than `before`."""
    deadline = time.monotonic() + timeout_s
    while True:
        after = engine_counters(server, api.TEXT2MUSIC_STREAM)
        if after.get("musicgen_requests_totalcancelled", 0) > before.get("musicgen_requests_totalcancelled", 0):
            return after
        assert time.monotonic() < deadline, f"no cancelled request in the engine's metrics: {after}"
        time.sleep(0.2)


@pytest.mark.parametrize("options", [OPTIONS, dict(OPTIONS, guidance_scale=1.0, num_inference_steps=3)])
def test_streamed_text2music_equals_unary_and_reports_every_step(triton_server, options):
    heard = []
    with MusicClient(triton_server.grpc_url, "grpc") as client:
        streamed = client.text_to_music(PROMPT, **options, progress=lambda *p: heard.append(p))
        unary = client.text_to_music(PROMPT, **options)
    steps = options["num_inference_steps"]
    assert heard == [(api.DENOISE, step, steps) for step in range(1, steps + 1)]
    assert streamed.seed == unary.seed == options["seed"] and streamed.audio.shape == unary.audio.shape
    assert rel_err(streamed.audio, unary.audio) <= 1e-6


def test_the_raw_stream_is_progress_then_the_result_flagged_final(triton_server):
    """What any KServe gRPC client sees: responses in order, the last one carrying the result and the final
    flag (tritonclient's enable_empty_final_response shows the flag on the response that has it)."""
    answers = queue.Queue()
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer(api.TEXT2MUSIC_STREAM, grpc_inputs(dict(prompt=PROMPT, num_inference_steps=4,
                                                                          audio_length_in_s=0.5, seed=3)),
                                  enable_empty_final_response=True)
        responses = []
        while True:
            result, error = answers.get(timeout=60)
            assert error is None, error
            responses.append(result)
            if result.get_response().parameters["triton_final_response"].bool_param:
                break
    finally:
        client.stop_stream()
        client.close()
    *progress, final = responses
    assert [(r.as_numpy(api.STAGE)[0], int(r.as_numpy(api.STEP)[0]), int(r.as_numpy(api.TOTAL)[0]))
            for r in progress] == [(api.DENOISE.encode(), step, 4) for step in range(1, 5)]
    assert final.as_numpy(api.AUDIO).shape == (8000,) and int(final.as_numpy(api.SEED)[0]) == 3


def test_a_bad_request_on_the_stream_gets_the_field_named(triton_server):
    answers = queue.Queue()
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer(api.TEXT2MUSIC_STREAM, grpc_inputs(dict(prompt=PROMPT, num_inference_steps=0)))
        result, error = answers.get(timeout=60)
    finally:
        client.stop_stream()
        client.close()
    assert result is None and "num_inference_steps: 0 is out of range" in error.message()


def test_closing_the_stream_cancels_the_work(triton_server):
    """A 500-step request whose stream is closed after its first step: the engine ends it as cancelled long
    before its 500 steps, and the server serves the next stream at once."""
    before = engine_counters(triton_server, api.TEXT2MUSIC_STREAM)

    class Closed(Exception):
        pass

    def close_after_first_step(stage, step, total):
        raise Closed  # leaving the call closes the stream with its request cancelled

    with MusicClient(triton_server.grpc_url, "grpc") as client:
        with pytest.raises(Closed):
            client.text_to_music(PROMPT, num_inference_steps=500, audio_length_in_s=1.0, seed=1,
                                 progress=close_after_first_step)
        after = wait_for_cancelled(triton_server, before)
        steps_done = after["musicgen_denoise_steps_total"] - before.get("musicgen_denoise_steps_total", 0)
        assert 1 <= steps_done < 500
        heard = []
        client.text_to_music(PROMPT, num_inference_steps=2, audio_length_in_s=0.5, seed=2,
                             progress=lambda *p: heard.append(p))
        assert heard == [(api.DENOISE, 1, 2), (api.DENOISE, 2, 2)]


def test_http_infer_on_a_stream_model_is_refused(triton_server):
    """Decoupled models stream over gRPC only: Triton answers HTTP /infer with 501 (README)."""
    tensor = httpclient.InferInput(api.PROMPT, [1], "BYTES")
    tensor.set_data_from_numpy(np.array([PROMPT.encode()], dtype=object))
    client = httpclient.InferenceServerClient(triton_server.http_url)
    try:
        with pytest.raises(InferenceServerException) as err:
            client.infer(api.TEXT2MUSIC_STREAM, [tensor])
    finally:
        client.close()
    assert err.value.status() == "501"


def sse_events(response):
    """The JSON events of a server-sent event stream, as they arrive."""
    for line in response:
        if line.startswith(b"data: "):
            yield json.loads(line[len(b"data: "):])


def generate_stream(server, fields):
    request = urllib.request.Request(f"http://{server.http_url}/v2/models/{api.TEXT2MUSIC_STREAM}/generate_stream",
                                     data=json.dumps(fields).encode(), headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(request, timeout=120)


def test_http_generate_stream_sends_progress_then_the_same_audio(triton_server):
    """Triton's HTTP generate_stream (server-sent events) serves the stream too: JSON inputs, one event per
    response."""
    fields = dict(prompt=PROMPT, num_inference_steps=3, audio_length_in_s=0.5, seed=4)
    with generate_stream(triton_server, fields) as response:
        *progress, final = list(sse_events(response))
    assert [(e[api.STAGE], e[api.STEP], e[api.TOTAL]) for e in progress] == [(api.DENOISE, i, 3) for i in (1, 2, 3)]
    with MusicClient(triton_server.grpc_url, "grpc") as client:
        unary = client.text_to_music(**fields)
    assert final[api.SEED] == 4 and rel_err(np.array(final[api.AUDIO], np.float32), unary.audio) <= 1e-6


def test_closing_the_http_event_stream_cancels_the_work(triton_server):
    """Over HTTP the server sees the closed connection at its next write, a progress event a step later."""
    before = engine_counters(triton_server, api.TEXT2MUSIC_STREAM)
    with generate_stream(triton_server, dict(prompt=PROMPT, num_inference_steps=500, audio_length_in_s=1.0,
                                             seed=5)) as response:
        next(sse_events(response))
    after = wait_for_cancelled(triton_server, before)
    assert after["musicgen_denoise_steps_total"] - before.get("musicgen_denoise_steps_total", 0) < 500


def test_streamed_image2music_equals_unary_with_every_stage_reported(triton_server):
    options = dict(num_inference_steps=3, audio_length_in_s=1.0, seed=120, negative_prompt="low quality")
    heard = []
    with MusicClient(triton_server.grpc_url, "grpc") as client:
        streamed = client.image_to_music(PHOTO, **options, progress=lambda *p: heard.append(p))
        unary = client.image_to_music(PHOTO, **options)
    assert heard == [(api.CAPTION, 0, 1), (api.CAPTION, 1, 1), (api.CHATGLM, 0, 1), (api.CHATGLM, 1, 1)] + \
        [(api.DENOISE, step, 3) for step in range(4)]
    assert (streamed.caption, streamed.music_prompt, streamed.seed) == (unary.caption, unary.music_prompt, 120)
    assert rel_err(streamed.audio, unary.audio) <= 1e-6


def test_stage_by_stage_progress_is_image2music_streams(triton_server):
    """The client's stage-by-stage mode reports the stages as image2music_stream does."""
    from musicgen_client import image_to_music_by_stages

    options = dict(num_inference_steps=2, audio_length_in_s=1.0, seed=8)
    heard, staged_heard = [], []
    with MusicClient(triton_server.grpc_url, "grpc") as client:
        served = client.image_to_music(PHOTO, **options, progress=lambda *p: heard.append(p))
        staged = image_to_music_by_stages(PHOTO, caption_client=client, llm_client=client, audio_client=client,
                                          progress=lambda *p: staged_heard.append(p), **options)
    assert staged_heard == heard
    assert staged.music_prompt == served.music_prompt and rel_err(staged.audio, served.audio) <= 1e-6


def test_streamed_image2music_names_a_bad_image(triton_server):
    with MusicClient(triton_server.grpc_url, "grpc") as client:
        with pytest.raises(MusicServiceError, match="image"):
            client.image_to_music(b"\x89PNG\r\n\x1a\n not really", progress=lambda *p: None)


def test_cli_progress_bar_over_grpc(triton_server, tmp_path):
    out = tmp_path / "calm.wav"
    proc = subprocess.run(
        [sys.executable, "-m", "musicgen_client.cli", "text", PROMPT, "--out", str(out), "--seed", "42",
         "--steps", "3", "--length", "1", "--url", triton_server.grpc_url, "--protocol", "grpc", "--progress"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{api.DENOISE}" in proc.stderr and "3/3" in proc.stderr  # the bar, on stderr
    assert str(out) in proc.stdout and "seed 42" in proc.stdout
    assert soundfile.read(out)[0].shape == (16000,)
