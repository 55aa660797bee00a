"""musicgen.serving.launcher without a working model: bad repositories, dying and hanging servers."""
from __future__ import annotations

import importlib.util
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import musicgen.serving.launcher as launcher
from musicgen.serving.launcher import (
    PROJECT_ROOT,
    MissingRepositoryError,
    TritonServer,
    TritonServerError,
    TritonServerTimeout,
    free_ports,
    main,
)


def fake_tritonserver(tmp_path: Path, body: str) -> Path:
    """An executable shell script standing in for the tritonserver binary."""
    script = tmp_path / "fake_tritonserver"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def wait_for_log(server: TritonServer, text: str, timeout_s: float = 10) -> None:
    """Wait until ``text`` appears in the server's log."""
    deadline = time.monotonic() + timeout_s
    while text not in server.log_path.read_text():
        assert time.monotonic() < deadline, f"{text!r} never logged"
        time.sleep(0.02)


def toy_repository(tmp_path: Path) -> Path:
    """A repository with one (empty) model folder: enough to pass the repository check."""
    (tmp_path / "repo" / "model" / "1").mkdir(parents=True)
    return tmp_path / "repo"


@pytest.mark.parametrize("layout", ["missing", "empty", "files only"])
def test_main_exits_2_and_says_how_to_build_a_missing_repository(tmp_path, capsys, layout):
    repo = tmp_path / "model_repository"
    if layout != "missing":
        repo.mkdir()
    if layout == "files only":
        (repo / "README").write_text("no model folders here")
    assert main(["--repository", str(repo)]) == 2
    err = capsys.readouterr().err
    assert str(repo) in err and "make export" in err


def test_module_entry_point_exit_code(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "musicgen.serving", "--repository", str(tmp_path / "nope")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert "make export" in result.stderr


def test_start_refuses_a_missing_repository(tmp_path):
    with pytest.raises(MissingRepositoryError, match="make export"):
        TritonServer(tmp_path / "nope", *free_ports(3)).start()


@pytest.mark.e2e
def test_server_dying_at_start_raises_with_its_log(tmp_path):
    repo = tmp_path / "repo"
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\nthis is { not protobuf\n')
    server = TritonServer(repo, *free_ports(3), log_file=tmp_path / "server.log")
    server.start()
    try:
        with pytest.raises(TritonServerError, match="exited with code") as excinfo:
            server.wait_until_ready(timeout_s=60)
    finally:
        server.stop()
    assert not isinstance(excinfo.value, TritonServerTimeout)
    message = str(excinfo.value)
    assert "broken" in message  # Triton's own log lines about the failed model
    assert len(message.splitlines()) > 3


def test_hanging_server_times_out_with_its_log_and_stops(tmp_path, monkeypatch):
    # Another binary must not need the pytriton wheel.
    monkeypatch.setattr(launcher, "_pytriton_root", lambda: pytest.fail("wheel looked up"))
    script = fake_tritonserver(tmp_path, 'echo "fake server: args $*"\nexec sleep 60')
    server = TritonServer(
        toy_repository(tmp_path), *free_ports(3), log_file=tmp_path / "server.log", tritonserver=script
    )
    server.start()
    try:
        with pytest.raises(TritonServerTimeout, match="fake server: args --model-repository"):
            server.wait_until_ready(timeout_s=0.5)
    finally:
        code = server.stop(timeout_s=5)
    assert code == -15  # SIGTERM was enough
    assert server.stop() == -15  # idempotent


def test_stop_kills_a_server_that_ignores_sigterm(tmp_path):
    script = fake_tritonserver(tmp_path, "trap '' TERM\necho started\nwhile :; do sleep 0.1; done")
    server = TritonServer(
        toy_repository(tmp_path), *free_ports(3), log_file=tmp_path / "server.log", tritonserver=script
    )
    server.start()
    wait_for_log(server, "started")  # the trap is set
    assert server.stop(timeout_s=0.5) == -9
    assert not server.running


def test_other_binary_gets_its_own_backend_dir_and_extra_args_last(tmp_path):
    script = fake_tritonserver(tmp_path, "exit 0")
    default = TritonServer(tmp_path, tritonserver=script, extra_args=["--log-verbose=1"])
    argv, _ = default.command()
    assert argv[0] == str(script)
    assert "--backend-directory" not in argv and "--cache-directory" not in argv
    assert argv[-1] == "--log-verbose=1"
    # The NGC container's binary may have a GPU: the wheel's CPU-only shortcuts are not imposed on it.
    assert not [a for a in argv if a.startswith(("--allow-gpu-metrics", "--pinned-memory-pool-byte-size"))]
    given = TritonServer(tmp_path, tritonserver=script, backend_dir="/opt/tritonserver/backends")
    argv, _ = given.command()
    assert argv[argv.index("--backend-directory") + 1] == "/opt/tritonserver/backends"


def test_tritonserver_env_var_selects_the_binary(tmp_path, monkeypatch):
    script = fake_tritonserver(tmp_path, "exit 0")
    monkeypatch.setenv("TRITONSERVER", str(script))
    argv, _ = TritonServer(tmp_path).command()
    assert argv[0] == str(script)


def test_missing_binary_is_reported(tmp_path):
    with pytest.raises(TritonServerError, match="not found"):
        TritonServer(tmp_path, tritonserver=tmp_path / "no_such_binary").command()


@pytest.mark.skipif(importlib.util.find_spec("pytriton") is None, reason="nvidia-pytriton not installed")
def test_wheel_backend_dir_holds_the_stub_for_this_python(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITONSERVER", raising=False)
    argv, env = TritonServer(tmp_path, backend_dir=tmp_path / "backends").command()
    python_dir = tmp_path / "backends" / "python"
    for name in ("libtriton_python.so", "triton_python_backend_utils.py", "triton_python_backend_stub"):
        assert (python_dir / name).resolve().is_file(), name
    stub_version = (python_dir / "triton_python_backend_stub").resolve().parent.name
    assert stub_version == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert "--allow-gpu-metrics=false" in argv and "--pinned-memory-pool-byte-size=0" in argv  # CPU-only binary
    # Building it again is a no-op.
    assert TritonServer(tmp_path, backend_dir=tmp_path / "backends").command()[0] == argv


def test_default_command_binds_loopback_and_controls_models_explicitly(tmp_path):
    argv, _ = TritonServer(tmp_path, tritonserver=fake_tritonserver(tmp_path, "exit 0")).command()
    for endpoint in ("http", "grpc", "metrics"):
        assert f"--{endpoint}-address=127.0.0.1" in argv
    assert "--model-control-mode=explicit" in argv and "--load-model=*" in argv
    assert f"--exit-timeout-secs={TritonServer.EXIT_TIMEOUT_S}" in argv


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("example.org", False), ("", False),
])
def test_is_loopback(host, loopback):
    assert launcher.is_loopback(host) is loopback


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_binding_beyond_loopback_is_warned(tmp_path, caplog, host, warned):
    script = fake_tritonserver(tmp_path, "exec sleep 30")
    server = TritonServer(toy_repository(tmp_path), *free_ports(3), log_file=tmp_path / "server.log",
                          tritonserver=script, host=host)
    with caplog.at_level("WARNING", logger="musicgen.serving.launcher"):
        server.start()
        server.stop(timeout_s=5)
    assert ("reachable from other machines" in caplog.text) is warned
    assert f"--http-address={host}" in server.command()[0]


# As tritonserver 2.51 logs a stop (abridged): requests drained, then a model version that never unloads.
STOP_LOG = """\
I1130 20:00:22.509402 11472 server.cc:305] "Waiting for in-flight requests to complete."
I1130 20:00:22.509430 11472 server.cc:321] "Timeout 10: Found 1 model versions that have in-flight inferences"
I1130 20:00:23.509430 11472 server.cc:321] "Timeout 9: Found 0 model versions that have in-flight inferences"
I1130 20:00:23.509558 11472 server.cc:336] "All models are stopped, unloading models"
I1130 20:00:23.509567 11472 server.cc:345] "Timeout 9: Found 3 live models and 0 in-flight non-inference requests"
I1130 20:00:32.521118 11472 server.cc:345] "Timeout 0: Found 1 live models and 0 in-flight non-inference requests"
E1130 20:00:32.521172 11472 main.cc:535] "failed to stop server: Internal - Exit timeout expired. Exiting immediately."
"""


def test_requests_drained_reads_the_last_stop_of_the_log():
    assert launcher.requests_drained(STOP_LOG)
    cut = STOP_LOG.split("All models")[0]  # the exit timeout ran out with requests in flight
    assert not launcher.requests_drained(cut)
    assert not launcher.requests_drained("")
    # An earlier stop's lines do not count for a later one.
    assert not launcher.requests_drained(STOP_LOG + cut)
