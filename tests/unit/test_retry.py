"""Client retries: capped exponential backoff with full jitter, only for refusals."""
import random

import pytest

from musicgen_client.api import MusicServiceError, ServerUnavailableError
from musicgen_client.retry import NO_RETRIES, RetryPolicy, call_with_retries


def test_delays_grow_exponentially_up_to_the_cap_with_jitter():
    policy = RetryPolicy(retries=6, base_s=0.5, cap_s=4.0)
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    runs = [list(policy.delays(random.Random(seed))) for seed in range(200)]
    assert all(len(run) == 6 for run in runs)
    for i, ceiling in enumerate(ceilings):
        drawn = [run[i] for run in runs]
        assert all(0 <= d <= ceiling for d in drawn)
        assert max(drawn) > 0.8 * ceiling and min(drawn) < 0.2 * ceiling  # spread out, not in step


def test_policy_is_checked():
    with pytest.raises(ValueError):
        RetryPolicy(retries=-1)
    with pytest.raises(ValueError):
        RetryPolicy(base_s=2, cap_s=1)


def _refused():
    return ServerUnavailableError("h:1", "grpc", "busy", retryable=True)


def test_refusals_are_retried_until_success():
    answers, slept = [_refused(), _refused(), "music"], []

    def call():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer
    assert call_with_retries(call, RetryPolicy(retries=3), lambda e: e.retryable, slept.append) == "music"
    assert len(slept) == 2


@pytest.mark.parametrize("policy, attempts", [(RetryPolicy(retries=2), 3), (NO_RETRIES, 1)])
def test_the_last_refusal_is_raised_when_retries_run_out(policy, attempts):
    calls = []

    def call():
        calls.append(1)
        raise _refused()
    with pytest.raises(ServerUnavailableError):
        call_with_retries(call, policy, lambda e: e.retryable, sleep=lambda s: None)
    assert len(calls) == attempts


@pytest.mark.parametrize("error", [MusicServiceError("400", "num_inference_steps: 0 is out of range"),
                                   ServerUnavailableError("h:1", "grpc", "Deadline Exceeded", retryable=False)])
def test_failures_and_timeouts_are_not_retried(error):
    calls = []

    def call():
        calls.append(1)
        raise error
    with pytest.raises(type(error)):
        call_with_retries(call, RetryPolicy(retries=3), lambda e: getattr(e, "retryable", False), lambda s: None)
    assert len(calls) == 1


def test_the_cli_takes_retries():
    from musicgen_client.cli import _client, build_parser

    args = build_parser().parse_args(["text", "rain", "--retries", "0"])
    with _client(args) as client:
        assert client.retry == NO_RETRIES
    assert build_parser().parse_args(["text", "rain"]).retries == RetryPolicy().retries
    with pytest.raises(SystemExit):
        build_parser().parse_args(["text", "rain", "--retries", "-1"])
