"""Load shedding, deadlines, client retries, image2music cancelling its children, and manifest checks, on a real
tritonserver over a copy of the repository with small bounds (README "Error model").
"""
import re
import shutil
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from cases import PHOTO  # tests/cases.py
from metrics import metric_value  # tests/metrics.py
from musicgen.manifest import write_manifest
from musicgen.serving import TritonServer, free_ports
from musicgen_client import MusicClient, interface as api
from musicgen_client.api import ServerUnavailableError
from musicgen_client.retry import NO_RETRIES, RetryPolicy

pytestmark = pytest.mark.e2e

CLIENTS = {"http": httpclient, "grpc": grpcclient}
TYPES = {np.dtype(object): "BYTES", np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32",
         np.dtype(np.int64): "INT64"}
LONG_MUSIC = {api.PROMPT: np.array([b"a long piece"], dtype=object),
              api.NUM_INFERENCE_STEPS: np.array([500], np.int32), api.AUDIO_LENGTH_IN_S: np.array([2.0], np.float32),
              api.SEED: np.array([7], np.int64)}
LONG_CHAT = {api.PROMPT: np.array([b"Describe a storm at sea"], dtype=object),
             api.MAX_NEW_TOKENS: np.array([2000], np.int32)}
# The bounds of the copy: text2music 1 denoising + 1 waiting, image2music 1 worker + none waiting, the LLM
# stages 1 decoding + 1 waiting and no stop tokens (so that their answers are long).
PARAMETERS = {api.TEXT2MUSIC: {"max_active": 1, "max_waiting": 1}, api.IMAGE2MUSIC: {"max_concurrent": 1,
              "max_waiting": 0}, api.CAPTION: {"max_active": 1, "max_waiting": 1},
              api.CHATGLM: {"max_active": 1, "max_waiting": 1}}
LLM_STAGES = (api.CAPTION, api.CHATGLM)


def _set_parameter(config: str, key: str, value) -> str:
    pattern = r'(key: "%s" value: \{ string_value: ")[^"]*(")' % key
    assert re.search(pattern, config), key
    return re.sub(pattern, rf"\g<1>{value}\g<2>", config)


def tight_copy(repository, out):
    """`repository` with the bounds above; the edited stage folders are copied (their manifests rewritten, as
    export would), the graph folders linked."""
    for folder in repository.iterdir():
        if not (folder / "config.pbtxt").exists():
            continue
        if folder.name not in PARAMETERS:
            (out / folder.name).symlink_to(folder.resolve())
            continue
        shutil.copytree(folder, out / folder.name, ignore=shutil.ignore_patterns("__pycache__"))
        config = (out / folder.name / "config.pbtxt").read_text()
        for key, value in PARAMETERS.get(folder.name, {}).items():
            config = _set_parameter(config, key, value)
        if folder.name in LLM_STAGES:
            textgen = out / folder.name / "1" / "textgen.json"
            textgen.write_text(re.sub(r'"stop_token_ids": \[[^\]]*\]', '"stop_token_ids": []', textgen.read_text()))
            write_manifest(out / folder.name / "1")
        (out / folder.name / "config.pbtxt").write_text(config)
    return out


@pytest.fixture(scope="module")
def server(model_repository, tmp_path_factory, triton_server_factory):
    return triton_server_factory(tight_copy(model_repository, tmp_path_factory.mktemp("tight")))


def _inputs(lib, arrays):
    inputs = []
    for name, array in arrays.items():
        tensor = lib.InferInput(name, list(array.shape), TYPES[array.dtype])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def infer(server, model, arrays, protocol="http", **kwargs):
    lib = CLIENTS[protocol]
    client = lib.InferenceServerClient(server.http_url if protocol == "http" else server.grpc_url)
    try:
        return client.infer(model, _inputs(lib, arrays), **kwargs)
    finally:
        client.close()


def _refusal(exc):
    return exc.status() in ("503", "StatusCode.UNAVAILABLE")


class Background:
    """Requests sent from threads, each ending in its result or its error, with its duration (from when it was
    taken: a refused one is sent again, so that the probes of `refused_within_a_second` cannot keep it out)."""

    def __init__(self):
        self.ends, self._threads = [], []

    def send(self, *args, **kwargs):
        def run():
            while True:
                start = time.monotonic()
                try:
                    infer(*args, **kwargs)
                    self.ends.append(("ok", time.monotonic() - start))
                except InferenceServerException as exc:
                    if _refusal(exc):
                        time.sleep(0.05)
                        continue
                    self.ends.append((exc, time.monotonic() - start))
                except Exception as exc:  # noqa: BLE001 - recorded for the test to see
                    self.ends.append((exc, time.monotonic() - start))
                return
        thread = threading.Thread(target=run)
        thread.start()
        self._threads.append(thread)

    def join(self, timeout_s=60):
        for thread in self._threads:
            thread.join(timeout_s)
            assert not thread.is_alive(), "a request never ended"
        return self.ends


def refused_within_a_second(server, model, arrays, protocol="http", load=None):
    """Send until the model refuses (it may still be taking the requests that fill it); the refusal must be
    immediate. Returns the error."""
    deadline = time.monotonic() + 30
    while True:
        start = time.monotonic()
        try:
            infer(server, model, arrays, protocol)
        except InferenceServerException as exc:
            if _refusal(exc):
                assert time.monotonic() - start < 1.0, f"refused after {time.monotonic() - start:.2f} s"
                return exc
            raise
        assert time.monotonic() < deadline, f"{model} never refused; the load's ends: {load and load.ends}"
        time.sleep(0.1)  # leave room for the requests that are to fill it


def test_text2music_sheds_load_and_stops_at_the_request_s_deadline(server):
    """1 running + 1 waiting fill it: the next is a 503 at once; the two long ones stop at their 4 s deadline
    (Triton's per-request `timeout`, over gRPC) with a clear error instead of running 500 steps."""
    load = Background()
    for _ in range(2):
        load.send(server, api.TEXT2MUSIC, LONG_MUSIC, "grpc", timeout=4_000_000)
    time.sleep(0.5)
    refused = refused_within_a_second(server, api.TEXT2MUSIC, {**LONG_MUSIC, api.NUM_INFERENCE_STEPS:
                                                              np.array([1], np.int32)})
    assert "busy: 1 requests running and 1 waiting" in refused.message()
    for error, seconds in load.join():
        assert isinstance(error, InferenceServerException), "a 500-step request finished before its deadline"
        assert error.status() == "StatusCode.CANCELLED" and "deadline exceeded: the request's timeout of 4 s" \
            in error.message()
        assert seconds < 4 + 3  # stopped at the next step, not after 500
    infer(server, api.TEXT2MUSIC, {**LONG_MUSIC, api.NUM_INFERENCE_STEPS: np.array([2], np.int32)})  # free again


def test_llm_stages_shed_load_at_their_engine_s_bound(server):
    load = Background()
    for _ in range(2):  # one decoding (2000 tokens: ≈ 3 s here), one waiting in the engine's queue of 1
        load.send(server, api.CHATGLM, LONG_CHAT, "grpc", timeout=6_000_000)
    time.sleep(0.5)
    refused = refused_within_a_second(server, api.CHATGLM, {**LONG_CHAT, api.MAX_NEW_TOKENS: np.array([50], np.int32)})
    assert "busy: 1 requests decoding and 1 waiting" in refused.message()
    for error, _ in load.join():
        assert error == "ok" or "deadline exceeded" in error.message()


def _child_cancellations(server):
    return re.findall(r"generation cancelled after (\d+) of at most (\d+) new tokens", server.log_path.read_text())


def _wait_for_outcome(server, model, outcome, before, timeout_s=30):
    """Waits until `model` counted one more request ended with `outcome` than `before` (its metrics)."""
    deadline = time.monotonic() + timeout_s
    while metric_value(server, "musicgen_requests_total", model=model, outcome=outcome) <= before:
        assert time.monotonic() < deadline, f"{model} ended no request as {outcome}"
        time.sleep(0.1)


def test_image2music_sheds_load_and_ends_a_cancelled_request_as_such(server):
    """image2music's one worker busy: the next is a 503 at once. A gRPC cancel then ends the busy one on the
    server as cancelled (whichever stage it was in), which frees the worker."""
    cancelled = metric_value(server, "musicgen_requests_total", model=api.IMAGE2MUSIC, outcome="cancelled")
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        image = {api.IMAGE: np.array([PHOTO], dtype=object), api.NUM_INFERENCE_STEPS: np.array([2], np.int32)}
        context = client.async_infer(api.IMAGE2MUSIC, _inputs(grpcclient, image), callback=lambda *_: None)
        time.sleep(0.5)
        refused = refused_within_a_second(server, api.IMAGE2MUSIC, image)
        assert "busy: 1 requests running and 0 waiting" in refused.message()
        context.cancel()
        _wait_for_outcome(server, api.IMAGE2MUSIC, "cancelled", cancelled)
    finally:
        client.close()


def test_a_cancelled_image2music_stops_its_child_at_its_next_token(server):
    """BLS cannot cancel the requests it sent; a cancel flag does. The stream is closed as image2music starts its
    chatglm stage (its progress says so; 2048 tokens follow, the tight copy has no stop token): the chatglm
    request stops at its next token, long before its budget."""
    before = len(_child_cancellations(server))
    chatglm_cancelled = metric_value(server, "musicgen_requests_total", model=api.CHATGLM, outcome="cancelled")

    class Closed(Exception):
        pass

    def close_as_chatglm_starts(stage, step, total):
        if stage == api.CHATGLM and step == 0:
            raise Closed  # leaving the call closes the stream with its request cancelled

    with MusicClient(server.grpc_url, "grpc", retry=NO_RETRIES) as client:
        with pytest.raises(Closed):
            client.image_to_music(PHOTO, num_inference_steps=2, progress=close_as_chatglm_starts)
    _wait_for_outcome(server, api.CHATGLM, "cancelled", chatglm_cancelled)
    [(done, budget)] = [(int(d), int(b)) for d, b in _child_cancellations(server)[before:]]
    assert done < budget


def test_image2music_passes_its_deadline_to_its_stages(server):
    """A 1.5 s timeout: the stage at work then (chatglm's 2048 tokens take ≈ 3 s here) stops at its next token,
    and image2music answers "deadline exceeded", not a stage failure."""
    load = Background()  # sent again while image2music's one worker is still busy with an earlier request
    load.send(server, api.IMAGE2MUSIC, {api.IMAGE: np.array([PHOTO], dtype=object)}, "grpc", timeout=1_500_000)
    [(error, seconds)] = load.join()
    assert isinstance(error, InferenceServerException) and error.status() == "StatusCode.CANCELLED", error
    assert re.match(r"deadline exceeded: .*\(in (caption|chatglm)\)$", error.message()), error.message()
    assert seconds < 1.5 + 2


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_client_retries_a_refusal_with_backoff(server, protocol):
    url = server.http_url if protocol == "http" else server.grpc_url
    load = Background()
    for _ in range(2):  # busy for 5 s
        load.send(server, api.TEXT2MUSIC, LONG_MUSIC, "grpc", timeout=5_000_000)
    time.sleep(0.5)
    refused_within_a_second(server, api.TEXT2MUSIC, {**LONG_MUSIC, api.NUM_INFERENCE_STEPS: np.array([1], np.int32)},
                            load=load)
    with MusicClient(url, protocol, retry=NO_RETRIES) as client:
        with pytest.raises(ServerUnavailableError, match="busy") as info:
            client.text_to_music("a short one", num_inference_steps=2, audio_length_in_s=0.5)
        assert info.value.retryable
    with MusicClient(url, protocol, retry=RetryPolicy(retries=10, base_s=0.25, cap_s=2.0)) as client:
        result = client.text_to_music("a short one", num_inference_steps=2, audio_length_in_s=0.5)
    assert result.audio.size == 8000 and np.isfinite(result.audio).all()
    load.join()


def test_a_truncated_graph_fails_its_load_naming_the_file(model_repository, tmp_path):
    """The damaged graph's model (and text2music, which runs it in process) fail their load naming the file;
    with --exit-on-error=false the server serves the others."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for folder in model_repository.iterdir():
        if (folder / "config.pbtxt").exists() and folder.name != api.AUDIOLDM_VOCODER:
            (repo / folder.name).symlink_to(folder.resolve())
    shutil.copytree(model_repository / api.AUDIOLDM_VOCODER, repo / api.AUDIOLDM_VOCODER)
    graph = repo / api.AUDIOLDM_VOCODER / "1" / "model.onnx"
    with open(graph, "r+b") as handle:
        handle.truncate(graph.stat().st_size - 100)
    http_port, grpc_port, metrics_port = free_ports(3)
    server = TritonServer(repo, http_port, grpc_port, metrics_port, log_file=tmp_path / "server.log",
                          watchdog=False, extra_args=["--exit-on-error=false"])
    server.start()
    try:
        client = httpclient.InferenceServerClient(server.http_url)
        deadline = time.monotonic() + 120
        while True:
            try:
                states = {m["name"]: m for m in client.get_model_repository_index()}
                if all(m.get("state") in ("READY", "UNAVAILABLE") for m in states.values()) and \
                        len(states) == len(list(repo.iterdir())):
                    break
            except (InferenceServerException, ConnectionError):  # not listening yet
                pass
            assert server.running and time.monotonic() < deadline, server.log_tail()
            time.sleep(0.5)
        failed = {name for name, m in states.items() if m["state"] == "UNAVAILABLE"}
        assert failed == {api.AUDIOLDM_VOCODER, api.TEXT2MUSIC, api.TEXT2MUSIC_STREAM}  # the twin runs it too
        for name in failed:
            assert f"{api.AUDIOLDM_VOCODER}/1/model.onnx is" in states[name]["reason"]
            assert "bytes, the export wrote" in states[name]["reason"]
        assert not client.is_server_ready()
        answer = client.infer(api.CHATGLM, _inputs(httpclient, {**LONG_CHAT, api.MAX_NEW_TOKENS:
                                                                np.array([4], np.int32)}))
        assert answer.as_numpy(api.TEXT).size == 1
        client.close()
    finally:
        server.stop()


def test_a_forged_cancel_flag_is_a_400(server):
    with pytest.raises(InferenceServerException, match="musicgen_cancel_flag: is not a cancel flag name") as info:
        infer(server, api.TEXT2MUSIC, {**LONG_MUSIC, api.NUM_INFERENCE_STEPS: np.array([1], np.int32)},
              parameters={"musicgen_cancel_flag": "../../etc/passwd"})
    assert info.value.status() == "400"
