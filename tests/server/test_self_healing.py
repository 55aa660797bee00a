"""The watchdog against a real tritonserver on the tiny models: kill -9 a stub under load, watch it heal.

A few clients send text2music requests without pause; one stub (a component's or the orchestrator's)
is killed by pid. Every request must end (client timeouts: nothing hangs) either with audio or with an
error about the dead or reloading model; ``/v2/health/ready``, sampled throughout, must turn false and
then true again; and requests after the repair must give audio of the asked length.
"""
from __future__ import annotations

import os
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import pytest

from musicgen.serving import TritonServer
from musicgen.serving.stubs import stub_processes
from musicgen_client import MusicClient
from musicgen_client import interface as api

pytestmark = pytest.mark.e2e

CLIENTS = 3
CLIENT_TIMEOUT_S = 30.0  # per request: far above a tiny request (≈0.1-0.5 s), so a hang shows as a timeout
LENGTH_S = 0.32
STEPS = 4
SAMPLING_RATE = 16000
# Bounds that catch a watchdog that does not work, not a slow machine (no timing assertions: this shared
# 2-core machine runs at load average 9-12). The goal, kill → ready again ≤ 5 s, is measured and printed
# (run with -s): the watchdog notices in ≈0.15 s (it polls every 0.25 s); the rest is the model's reload,
# 1.4-6 s for audioldm_unet here, ≈0.6 s for text2music since it stopped importing paddle.
NOTICE_BOUND_S = 5.0
RECOVERY_BOUND_S = {api.AUDIOLDM_UNET: 60.0, api.TEXT2MUSIC: 180.0}
#: What a request caught by the failure may say: the dead stub, or the model being reloaded.
EXPECTED_FAILURES = ("is not healthy", "is not ready", "unknown model", "no available versions", "unavailable")


@dataclass
class Outcome:
    started: float
    ended: float
    samples: Optional[int] = None
    error: str = ""


@dataclass
class Load:
    """Clients sending text2music requests back to back, and a sampler of server readiness."""

    server: TritonServer
    outcomes: List[Outcome] = field(default_factory=list)
    readiness: List[Tuple[float, bool]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: List[threading.Thread] = field(default_factory=list)

    def _client(self, seed: int) -> None:
        with MusicClient(self.server.http_url, "http", timeout_s=CLIENT_TIMEOUT_S) as client:
            while not self.stop.is_set():
                outcome = Outcome(time.monotonic(), 0.0)
                try:
                    result = client.text_to_music("a calm piano melody", num_inference_steps=STEPS,
                                                  audio_length_in_s=LENGTH_S, seed=seed)
                    outcome.samples = len(result.audio)
                except Exception as exc:  # noqa: BLE001 - every outcome is recorded and judged below
                    outcome.error = f"{type(exc).__name__}: {exc}"
                    time.sleep(0.05)  # a failing server answers at once: do not spin
                outcome.ended = time.monotonic()
                self.outcomes.append(outcome)

    def _sample_readiness(self) -> None:
        url = f"http://{self.server.http_url}/v2/health/ready"
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    ready = response.status == 200
            except (urllib.error.URLError, OSError):
                ready = False
            self.readiness.append((time.monotonic(), ready))
            time.sleep(0.02)

    def __enter__(self) -> "Load":
        self.threads = [threading.Thread(target=self._client, args=(seed,)) for seed in range(CLIENTS)]
        self.threads.append(threading.Thread(target=self._sample_readiness))
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(CLIENT_TIMEOUT_S + 10)
        assert not any(thread.is_alive() for thread in self.threads), "a client is still waiting"


@pytest.fixture(scope="module")
def healing_server(model_repository, triton_server_factory) -> TritonServer:
    """A server of its own: its stubs get killed."""
    return triton_server_factory(model_repository)


def stub_pid(server: TritonServer, model: str) -> int:
    [stub] = [s for s in stub_processes(server.process.pid) if s.model == model and not s.dead]
    return stub.pid


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:g} s"
        time.sleep(0.02)


def completed(load: Load, count: int) -> bool:
    return sum(1 for o in load.outcomes if o.samples) >= count


@pytest.mark.parametrize("model", [api.AUDIOLDM_UNET, api.TEXT2MUSIC])
def test_killed_stub_is_reloaded_under_load(healing_server: TritonServer, model: str):
    server = healing_server
    repairs_before = len(server.watchdog.repairs)
    with Load(server) as load:
        wait_for(lambda: completed(load, CLIENTS), 120, "first requests")  # all clients busy
        pid = stub_pid(server, model)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(server.watchdog.repairs) > repairs_before, 60, "repair")
        wait_for(lambda: any(ok and t > killed_at for t, ok in load.readiness[-5:]), 60, "readiness again")
        successes_after = lambda: sum(1 for o in load.outcomes if o.samples and o.started > killed_at)  # noqa: E731
        wait_for(lambda: successes_after() >= 2 * CLIENTS, 120, "requests served after the repair")

    [repair] = server.watchdog.repairs[repairs_before:]
    assert repair.ok and repair.fault.model == model and repair.fault.cause == "stub died", repair
    assert stub_pid(server, model) != pid

    # Readiness told the truth: false during the repair, true before and after it.
    after_kill = [(t, ok) for t, ok in load.readiness if t > killed_at]
    assert any(not ok for _, ok in after_kill), "readiness never turned false"
    not_ready = [t for t, ok in after_kill if not ok]
    back_at = next(t for t, ok in after_kill if ok and t > not_ready[-1])
    recovery_s = back_at - killed_at
    failures = [o for o in load.outcomes if o.error]
    print(f"\n{model}: kill → repair {repair.started - killed_at:.2f} s, → ready again {recovery_s:.2f} s "
          f"(reload {repair.seconds:.2f} s); {len(load.outcomes)} requests, {len(failures)} failed, the "
          f"slowest failure after {max((o.ended - o.started for o in failures), default=0):.2f} s")
    assert repair.started - killed_at <= NOTICE_BOUND_S
    assert recovery_s <= RECOVERY_BOUND_S[model]

    # Nothing hung, every failure says what happened, and the ones after the repair succeed. Known limit: the
    # requests text2music's engine held when its own stub died are answered by nobody (their response senders
    # died with the stub, and Triton 2.51 does not fail them): they end at the client's deadline, at most one
    # per client. Everything else ends on its own.
    held = [o for o in load.outcomes if model == api.TEXT2MUSIC and o.started < killed_at
            and o.ended - o.started >= CLIENT_TIMEOUT_S - 1]
    assert len(held) <= CLIENTS
    assert all(o.ended - o.started < CLIENT_TIMEOUT_S for o in load.outcomes if o not in held)
    failures = [o for o in failures if o not in held]
    unexpected = [o.error for o in failures if not any(text in o.error for text in EXPECTED_FAILURES)]
    assert not unexpected, unexpected
    assert all(o.ended > killed_at for o in failures)  # no failure before the kill
    assert all(o.samples == round(LENGTH_S * SAMPLING_RATE) for o in load.outcomes if o.samples)
    assert all(o.samples for o in load.outcomes if o.started > back_at)
