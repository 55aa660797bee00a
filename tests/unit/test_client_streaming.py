"""Streamed calls without a server: a stand-in for tritonclient's gRPC stream API answers from a script."""
import io
import threading

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from musicgen_client import MusicClient
from musicgen_client.api import MusicServiceError
from musicgen_client.interface import AUDIO, DENOISE, STAGE, STEP, TOTAL
from musicgen_client.progress_bar import StageBars
from musicgen_client.streaming import stream_infer


class Result:
    def __init__(self, **outputs):
        self.outputs = outputs

    def as_numpy(self, name):
        return self.outputs.get(name)


def progress_result(stage, step, total):
    return Result(**{STAGE: np.array([stage.encode()], dtype=object), STEP: np.array([step], np.int32),
                     TOTAL: np.array([total], np.int32)})


class ScriptedStream:
    """start_stream / async_stream_infer / stop_stream; answers with `script` from another thread."""

    def __init__(self, script):
        self.script = script
        self.stopped_with = None
        self.sent = []

    def start_stream(self, callback, stream_timeout):
        self.callback = callback

    def async_stream_infer(self, model, inputs, outputs):
        self.sent.append(model)

        def answer():
            for item in self.script:
                if isinstance(item, Exception):
                    self.callback(result=None, error=item)
                else:
                    self.callback(result=item, error=None)
        threading.Thread(target=answer).start()

    def stop_stream(self, cancel_requests=False):
        self.stopped_with = cancel_requests

    def close(self):
        pass


def test_progress_in_order_then_the_result():
    final = Result(**{AUDIO: np.ones(3, np.float32)})
    stream = ScriptedStream([progress_result(DENOISE, i, 3) for i in (1, 2, 3)] + [final])
    heard = []
    assert stream_infer(stream, "text2music_stream", [], [], lambda *p: heard.append(p), 5) is final
    assert heard == [(DENOISE, 1, 3), (DENOISE, 2, 3), (DENOISE, 3, 3)]
    assert stream.sent == ["text2music_stream"]


def test_server_error_is_raised_and_the_stream_closed():
    stream = ScriptedStream([progress_result(DENOISE, 1, 3), InferenceServerException("stage audioldm_unet failed")])
    with pytest.raises(InferenceServerException, match="audioldm_unet"):
        stream_infer(stream, "m", [], [], lambda *p: None, 5)
    assert stream.stopped_with is True


def test_leaving_early_cancels_the_request():
    stream = ScriptedStream([progress_result(DENOISE, 1, 3)])

    def give_up(*progress):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stream_infer(stream, "m", [], [], give_up, 5)
    assert stream.stopped_with is True  # stop_stream(cancel_requests=True): the server stops the work


def test_progress_needs_grpc_and_says_so():
    with MusicClient("127.0.0.1:1", protocol="http") as client:
        with pytest.raises(ValueError, match="gRPC"):
            client.text_to_music("rain", progress=lambda *p: None)


def test_stream_errors_become_service_errors(monkeypatch):
    stream = ScriptedStream([InferenceServerException("num_inference_steps: bad")])
    with MusicClient("127.0.0.1:1", protocol="grpc") as client:
        monkeypatch.setattr(client._transport, "_client", stream)
        with pytest.raises(MusicServiceError, match="num_inference_steps"):
            client.text_to_music("rain", progress=lambda *p: None)


def test_stage_bars_one_bar_per_stage():
    out = io.StringIO()
    with StageBars(file=out) as bars:
        for progress in [("caption", 0, 1), ("caption", 1, 1), (DENOISE, 0, 4), (DENOISE, 2, 4), (DENOISE, 4, 4)]:
            bars(*progress)
    text = out.getvalue()
    assert "caption" in text and "1/1" in text and f"{DENOISE}" in text and "4/4" in text


def test_cli_progress_over_http_is_a_usage_error(capsys):
    from musicgen_client.cli import EXIT_BAD_INPUT, main

    assert main(["text", "rain", "--progress", "--url", "127.0.0.1:1", "--out", "/nonexistent-dir/x.wav"]) == EXIT_BAD_INPUT
    assert "gRPC" in capsys.readouterr().err


@pytest.mark.parametrize("argv,terminal,shown", [
    (["--protocol", "grpc"], True, True),      # the default: a bar on gRPC from a terminal
    (["--protocol", "grpc"], False, False),    # output captured by a script: no bar
    (["--protocol", "http"], True, False),     # HTTP cannot stream
    (["--protocol", "grpc", "--no-progress"], True, False),
    (["--protocol", "grpc", "--progress"], False, True),
])
def test_cli_progress_bar_default(monkeypatch, argv, terminal, shown):
    from musicgen_client import cli

    monkeypatch.setattr(cli.sys.stdout, "isatty", lambda: terminal, raising=False)
    monkeypatch.setattr(cli.sys.stderr, "isatty", lambda: terminal, raising=False)
    with cli._progress_bar(cli.build_parser().parse_args(["text", "rain", *argv])) as progress:
        assert isinstance(progress, StageBars) == shown
