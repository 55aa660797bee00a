"""The launcher and the server fixtures against a real tritonserver.

A toy Python-backend model that doubles an FP32 vector is served from a temporary repository and
queried over both HTTP and gRPC; then a server is stopped and must leave no process and no bound
port behind. A second toy model sleeps as long as asked: the launcher, run as a command, is stopped
with requests in flight (SIGTERM drains them and exits 0; a second SIGTERM stops at once).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from musicgen.serving import PROJECT_ROOT, TritonServer, free_ports
from musicgen.serving.stubs import stub_processes

TOY_CONFIG = """\
name: "double"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""

# The plain as_numpy()/Tensor(name, ndarray) path the real models use: it is also the path numpy 2 corrupts
# (requirements pin numpy<2), so this test would catch that regression.
TOY_MODEL = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out = pb_utils.Tensor("OUTPUT0", x * 2)
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""

SLEEP_CONFIG = """\
name: "sleep"
backend: "python"
max_batch_size: 0
input [ { name: "SECONDS" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "SECONDS_OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""

SLEEP_MODEL = """\
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            seconds = pb_utils.get_input_tensor_by_name(request, "SECONDS").as_numpy()
            time.sleep(float(seconds[0]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("SECONDS_OUT", seconds)]))
        return responses
"""

pytestmark = pytest.mark.e2e

VALUES = np.array([1.0, -2.5, 3.25, 0.0], dtype=np.float32)


@pytest.fixture(scope="module")
def toy_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding only the ``double`` model."""
    repo = tmp_path_factory.mktemp("toy_repository")
    (repo / "double" / "1").mkdir(parents=True)
    (repo / "double" / "config.pbtxt").write_text(TOY_CONFIG)
    (repo / "double" / "1" / "model.py").write_text(TOY_MODEL)
    (repo / "sleep" / "1").mkdir(parents=True)
    (repo / "sleep" / "config.pbtxt").write_text(SLEEP_CONFIG)
    (repo / "sleep" / "1" / "model.py").write_text(SLEEP_MODEL)
    return repo


@pytest.fixture(scope="module")
def toy_server(toy_repository: Path, triton_server_factory) -> Iterator[TritonServer]:
    """The toy repository served through the same factory the exported-repository tests use."""
    server = triton_server_factory(toy_repository, timeout_s=60)
    yield server
    server.stop()  # now rather than at session end


def live_group_members(pgid: int) -> list:
    """PIDs of the non-zombie processes in process group ``pgid`` (Linux /proc)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # exited while we looked
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        state, _ppid, pgrp = text.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def port_is_free(port: int) -> bool:
    """Whether a listener could bind ``port`` on the loopback (TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_infer_doubles_input(toy_server: TritonServer, protocol: str):
    lib, url = (httpclient, toy_server.http_url) if protocol == "http" else (grpcclient, toy_server.grpc_url)
    client = lib.InferenceServerClient(url)
    try:
        tensor = lib.InferInput("INPUT0", list(VALUES.shape), "FP32")
        tensor.set_data_from_numpy(VALUES)
        result = client.infer("double", [tensor]).as_numpy("OUTPUT0")
    finally:
        client.close()
    np.testing.assert_array_equal(result, VALUES * 2)


def test_metrics_endpoint_answers(toy_server: TritonServer):
    with urllib.request.urlopen(toy_server.metrics_url, timeout=5) as response:
        assert b"nv_inference_request_success" in response.read()


def test_stop_leaves_no_process_and_no_bound_port(toy_repository: Path, tmp_path: Path):
    ports = free_ports(3)
    with TritonServer(toy_repository, *ports, log_file=tmp_path / "server.log") as server:
        pgid = server.process.pid
        # The server and the Python backend stub it forked share the group stop() signals.
        assert len(live_group_members(pgid)) >= 2
        assert not any(port_is_free(port) for port in ports)
    assert server.process.returncode == 0, server.log_tail()
    assert live_group_members(pgid) == []
    assert all(port_is_free(port) for port in ports)
    assert server.stop() == 0  # idempotent


# ---- graceful stop of the launcher command ----------------------------------------------------------
def http_status(url: str, body: dict = None, timeout_s: float = 30) -> tuple:
    """(HTTP status or None, body text or the error) of a GET, or of a POST when ``body`` is given."""
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout_s) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return None, repr(exc)


class LauncherCommand:
    """``python -m musicgen.serving`` over the toy repository, as an operator runs it."""

    def __init__(self, repository: Path, tmp_path: Path, exit_timeout_s: int):
        self.http_port, grpc_port, metrics_port = free_ports(3)
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "musicgen.serving", "--repository", str(repository),
             "--http-port", str(self.http_port), "--grpc-port", str(grpc_port),
             "--metrics-port", str(metrics_port), "--log", str(tmp_path / "tritonserver.log"),
             "--exit-timeout", str(exit_timeout_s)],
            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        # Ready is the launcher's word, not Triton's: it prints its banner after its watchdog has learned the
        # stubs (a stub killed before that is never seen alive, so never seen dying).
        self._printed = []
        for line in self.process.stdout:
            self._printed.append(line)
            if line.startswith("Press Ctrl-C to stop."):
                break
        assert http_status(self.base + "/v2/health/ready", timeout_s=5)[0] == 200, self.output()
        [self.server_pid] = [pid for pid in children(self.process.pid)]

    def sleep(self, seconds: float, results: dict, key) -> threading.Thread:
        """A request that takes ``seconds`` in the model, sent from a thread."""
        body = {"inputs": [{"name": "SECONDS", "shape": [1], "datatype": "FP32", "data": [seconds]}]}

        def send():
            results[key] = http_status(f"{self.base}/v2/models/sleep/infer", body)

        thread = threading.Thread(target=send)
        thread.start()
        return thread

    def output(self) -> str:
        if self.process.poll() is None:
            return "".join(self._printed) + "(still running)"
        return "".join(self._printed) + self.process.stdout.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        try:
            os.killpg(self.server_pid, signal.SIGKILL)
        except (ProcessLookupError, AttributeError):
            pass


def children(pid: int) -> list:
    """PIDs of the live child processes of ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.fixture
def launcher(toy_repository: Path, tmp_path: Path):
    started = []

    def start(exit_timeout_s: int = 10, repository: Path = toy_repository) -> LauncherCommand:
        started.append(LauncherCommand(repository, tmp_path, exit_timeout_s))
        return started[-1]

    yield start
    for command in started:
        command.close()


def test_sigterm_drains_requests_in_flight_refuses_new_ones_and_exits_0(launcher):
    command = launcher(exit_timeout_s=10)
    results = {}
    # One instance: the second request waits for the first, so it is queued, not running, at the SIGTERM.
    threads = [command.sleep(1.5, results, "running"), command.sleep(1.5, results, "queued")]
    time.sleep(0.5)
    sent_at = time.monotonic()
    command.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    started = time.monotonic()
    refused = http_status(command.base + "/v2/health/ready", timeout_s=5)
    assert refused[0] is None and time.monotonic() - started < 2, refused  # refused at once, not held
    for thread in threads:
        thread.join(30)
    assert command.process.wait(30) == 0, command.output()
    took = time.monotonic() - sent_at
    assert results["running"][0] == 200 and results["queued"][0] == 200, results
    assert json.loads(results["queued"][1])["outputs"][0]["data"] == [1.5]
    assert live_group_members(command.server_pid) == []  # the server and its stubs are gone
    print(f"\ndrained 2 requests and exited 0 in {took:.2f} s after SIGTERM")
    assert "stopped cleanly" in command.output()


def test_second_sigterm_stops_at_once(launcher):
    command = launcher(exit_timeout_s=30)
    results = {}
    thread = command.sleep(60, results, "long")
    time.sleep(0.5)
    command.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert command.process.poll() is None  # draining: it would wait up to 30 s
    second_at = time.monotonic()
    command.process.send_signal(signal.SIGTERM)
    assert command.process.wait(10) == 1
    assert time.monotonic() - second_at < 5
    thread.join(10)
    assert results["long"][0] is None  # cut: the connection closed without an answer
    assert live_group_members(command.server_pid) == []
    assert "stopping at once" in command.output()


def test_drain_is_bounded_by_the_exit_timeout(launcher):
    command = launcher(exit_timeout_s=2)
    results = {}
    thread = command.sleep(30, results, "too long")
    time.sleep(0.5)
    sent_at = time.monotonic()
    command.process.send_signal(signal.SIGTERM)
    assert command.process.wait(20) == 1  # Triton: "Exit timeout expired. Exiting immediately."
    took = time.monotonic() - sent_at
    thread.join(10)
    assert results["too long"][0] is None
    assert took < 2 + 5 + 3  # the exit timeout, then stop()'s own 5 s before it kills, and some slack
    assert live_group_members(command.server_pid) == []
    assert "exited with code 1 while stopping" in command.output()


def test_stop_after_the_watchdog_replaced_a_dead_stub_is_clean(launcher):
    command = launcher(exit_timeout_s=3)
    results = {}
    thread = command.sleep(2, results, "on the dead stub")
    time.sleep(0.5)
    [stub] = [s for s in stub_processes(command.server_pid) if s.model == "sleep"]
    os.kill(stub.pid, signal.SIGKILL)
    thread.join(30)
    assert results["on the dead stub"][0] == 500 and "is not healthy" in results["on the dead stub"][1]
    deadline = time.monotonic() + 30
    while not [s for s in stub_processes(command.server_pid) if s.model == "sleep" and not s.dead]:
        assert time.monotonic() < deadline, "the sleep model was not reloaded"
        time.sleep(0.1)
    thread = command.sleep(0.1, results, "after the repair")
    thread.join(30)
    assert results["after the repair"][0] == 200, results
    command.process.send_signal(signal.SIGTERM)
    # tritonserver itself exits 1, waiting out its exit timeout for the dead stub's version.
    assert command.process.wait(30) == 0, command.output()
    output = command.output()
    assert "never unload" in output and "stopped cleanly" in output


def test_frozen_stub_is_killed_and_its_model_reloaded(toy_repository: Path, tmp_path: Path):
    with TritonServer(toy_repository, *free_ports(3), log_file=tmp_path / "server.log") as server:
        [stub] = [s for s in stub_processes(server.process.pid) if s.model == "double"]
        os.kill(stub.pid, signal.SIGSTOP)
        deadline = time.monotonic() + server.watchdog.stuck_after_s + 30
        while not server.watchdog.repairs:
            assert time.monotonic() < deadline, "the frozen stub was never noticed"
            time.sleep(0.1)
        [repair] = server.watchdog.repairs
        assert repair.ok and repair.fault.model == "double" and repair.fault.cause == "stub stuck", repair
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            tensor = httpclient.InferInput("INPUT0", list(VALUES.shape), "FP32")
            tensor.set_data_from_numpy(VALUES)
            np.testing.assert_array_equal(client.infer("double", [tensor]).as_numpy("OUTPUT0"), VALUES * 2)
        finally:
            client.close()


def test_model_that_fails_to_reload_is_not_ready_until_it_loads(launcher, toy_repository: Path, tmp_path: Path):
    repository = tmp_path / "repository"
    shutil.copytree(toy_repository, repository)
    command = launcher(repository=repository)
    model_file = repository / "sleep" / "1" / "model.py"
    model_file.write_text("raise RuntimeError('broken on purpose')\n")
    [stub] = [s for s in stub_processes(command.server_pid) if s.model == "sleep"]
    os.kill(stub.pid, signal.SIGKILL)

    def wait_until(predicate, what: str, timeout_s: float = 60):
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                command.process.kill()
                command.process.wait()
                pytest.fail(f"never {what}; launcher output:\n{command.output()}")
            time.sleep(0.1)

    def sleep_model_state():
        status, body = http_status(command.base + "/v2/repository/index", {})
        return {m["name"]: m for m in json.loads(body)}["sleep"] if status == 200 else {}

    wait_until(lambda: sleep_model_state().get("state") == "UNAVAILABLE", "UNAVAILABLE after the failed reload")
    assert "broken on purpose" in sleep_model_state()["reason"]  # Triton's reason, also in the launcher's log
    # A model that failed to load keeps the server not ready (one that was merely unloaded would not).
    for _ in range(5):
        assert http_status(command.base + "/v2/health/ready")[0] == 400
        time.sleep(0.2)
    model_file.write_text(SLEEP_MODEL)  # mended: the watchdog's next try (2, 4, 8 ... s) loads it
    wait_until(lambda: http_status(command.base + "/v2/health/ready")[0] == 200, "ready again")
    results = {}
    command.sleep(0.1, results, "mended").join(30)
    assert results["mended"][0] == 200, results
    command.process.send_signal(signal.SIGTERM)
    assert command.process.wait(30) == 0
    output = command.output()
    assert "reloading sleep failed" in output and "model sleep reloaded" in output
