"""The short soak (benchmarks/soak.py) against the session's server: ~60 mixed requests at concurrency 8 — valid
text2music and image2music, the batteries' bad inputs, cancelled gRPC requests — must all end as expected: none
lost, no unexpected 5xx, every waveform of the asked length and finite, the server serving after. No timing is
judged; the RSS is reported, not bounded (a shared machine's numbers)."""
import pytest

from benchmarks import soak

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def short_soak(triton_server):
    args = soak.parse_args(["--requests", "60", "--concurrency", "8", "--seed", "7", "--image-share", "0.1",
                            "--bad-share", "0.2", "--cancel-share", "0.15"])
    urls = {"http": triton_server.http_url, "grpc": triton_server.grpc_url}
    return soak.soak(args, urls, triton_server.process.pid, triton_server)


def test_nothing_lost_and_no_unexpected_errors(short_soak):
    summary = short_soak["summary"]
    assert summary["requests"] == 60
    assert sum(summary["outcomes"].values()) == 60  # every request ended exactly once
    assert summary["failures"] == 0, summary["failed"]
    assert soak.failed(short_soak, None) == []


def test_every_kind_ended_as_it_should(short_soak):
    by_kind = short_soak["summary"]["by_kind"]
    counts = soak.kind_counts(60, 0.1, 0.2, 0.15)
    # Valid requests: audio checked (length, finiteness, seed) or, only under overload, shed with 503.
    for kind in ("text2music", "image2music"):
        assert set(by_kind[kind]) <= {"ok", "shed"} and by_kind[kind].get("ok", 0) >= 1, by_kind[kind]
    assert by_kind["bad"] == {"rejected": counts["bad"]}  # each a 400 naming its field
    assert set(by_kind["cancelled"]) <= {"cancelled", "finished", "shed"} and by_kind["cancelled"].get("cancelled")


def test_server_serves_after_and_memory_is_reported(short_soak):
    assert short_soak["after"] == ""
    assert short_soak["watchdog_repairs"] == 0
    memory = short_soak["summary"]["server_rss"]
    assert 0 < memory["start_bytes"] <= memory["peak_bytes"] and memory["end_bytes"] <= memory["peak_bytes"]
    assert len(memory["timeline"]) >= 11
