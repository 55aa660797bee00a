"""The soak's plan and its judgement of each answer (benchmarks/soak.py), without a server."""
import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from benchmarks import soak
from musicgen_client import interface as api


class Answer:
    """What tritonclient's result offers the judge: as_numpy."""

    def __init__(self, audio, seed=5, rate=16000):
        self.outputs = {api.AUDIO: np.asarray(audio, np.float32), api.SEED: np.array([seed]),
                        api.SAMPLING_RATE: np.array([rate])}

    def as_numpy(self, name):
        return self.outputs[name]


def valid(kind="text2music", length_s=0.5, seed=5):
    return soak.Request(0, kind, "http", api.TEXT2MUSIC,
                        soak.arrays_of(dict(prompt="x", audio_length_in_s=length_s, seed=seed)), length_s)


BAD = soak.Request(0, "bad", "grpc", api.TEXT2MUSIC, {}, message="seed: -1 is out of range")


def test_plan_has_the_asked_mix_and_is_reproducible():
    requests = soak.plan(200, 3, image_share=0.1, bad_share=0.2, cancel_share=0.1)
    kinds = [r.kind for r in requests]
    assert {k: kinds.count(k) for k in soak.KINDS} == {"text2music": 120, "image2music": 20, "bad": 40, "cancelled": 20}
    images = [r.arrays[api.IMAGE][0] for r in requests if r.kind == "image2music"]
    assert len(set(images)) == len(images)  # a different image per request
    assert all(r.protocol == "grpc" and (r.deadline_s is None) != (r.cancel_after_s is None)
               for r in requests if r.kind == "cancelled")
    messages = [r.message for r in requests if r.kind == "bad"]
    assert set(messages) == {m for _, _, m in soak.bad_requests()}  # the whole battery is sent
    again = soak.plan(200, 3, image_share=0.1, bad_share=0.2, cancel_share=0.1)
    assert [(r.kind, r.protocol, r.length_s) for r in again] == [(r.kind, r.protocol, r.length_s) for r in requests]


def test_shares_over_one_are_refused():
    with pytest.raises(ValueError):
        soak.kind_counts(10, 0.5, 0.4, 0.2)


def test_audio_must_have_the_asked_length_be_finite_and_carry_the_seed():
    assert soak.judge_answer(valid(), Answer(np.zeros(8000))) == ("ok", "")
    assert soak.judge_answer(valid(), Answer(np.zeros(8001)))[0] == "wrong"
    assert soak.judge_answer(valid(), Answer([np.nan] + [0.0] * 7999)) == ("wrong", "1 non-finite samples")
    assert soak.judge_answer(valid(), Answer(np.zeros(8000), seed=6))[0] == "wrong"
    assert soak.judge_answer(valid("cancelled"), Answer(np.zeros(8000)))[0] == "finished"
    assert soak.judge_answer(BAD, Answer(np.zeros(8000)))[0] == "wrong"


@pytest.mark.parametrize("request_,status,message,outcome", [
    (BAD, "400", "seed: -1 is out of range: allowed 0 to 9", "rejected"),
    (BAD, "StatusCode.INVALID_ARGUMENT", "seed: -1 is out of range", "rejected"),
    (BAD, "400", "prompt: must not be empty", "wrong"),  # refused for another reason
    (valid(), "503", "engine queue is full", "shed"),
    (valid(), "StatusCode.UNAVAILABLE", "engine queue is full", "shed"),
    (valid(), "500", "stage audioldm_unet failed: produced 3 non-finite values", "unexpected_5xx"),
    (valid(), "StatusCode.INTERNAL", "Stub process is not healthy", "unexpected_5xx"),
    (valid(), "StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", "lost"),  # a valid request must be answered
    (valid("cancelled"), "StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", "cancelled"),
    (valid("cancelled"), "StatusCode.CANCELLED", "Locally cancelled by application!", "cancelled"),
    (valid(), "400", "prompt: must not be empty", "wrong"),  # a valid request refused
])
def test_errors_are_told_apart(request_, status, message, outcome):
    assert soak.judge_error(request_, InferenceServerException(message, status=status))[0] == outcome


def test_failures_make_the_soak_fail():
    def result(outcomes, growth=0, after=""):
        return {"summary": {"outcomes": {**dict.fromkeys(soak.OUTCOMES, 0), **outcomes},
                            "server_rss": {"growth_bytes": growth}}, "after": after, "watchdog_repairs": 0}

    assert soak.failed(result({"ok": 10, "shed": 2, "cancelled": 1}), 100) == []
    assert soak.failed(result({"ok": 9, "lost": 1}), None) == ["1 lost"]
    assert soak.failed(result({"unexpected_5xx": 2}), None) == ["2 unexpected_5xx"]
    assert soak.failed(result({"ok": 1}, growth=200 * 2**20), 100) == ["server RSS grew 200 MB > 100 MB"]
    assert soak.failed(result({"ok": 1}, after="server not ready after the soak"), None) == [
        "server not ready after the soak"]
