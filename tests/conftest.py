"""Shared fixtures: a real tritonserver over a model repository, on free ports.

``triton_server`` serves the exported repository (env MUSICGEN_REPOSITORY, default
build/model_repository) once per session; tests that need their own repository use
``triton_server_factory``. When a test that used a server fails, the tail of that server's log is
attached to the report.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import pytest

from musicgen.serving import (
    DEFAULT_REPOSITORY,
    MissingRepositoryError,
    TritonServer,
    TritonServerError,
    check_model_repository,
    free_ports,
)

#: Readiness budget; the exported graphs take longer to load than toy models.
SERVER_READY_TIMEOUT_S = float(os.environ.get("MUSICGEN_SERVER_TIMEOUT", "120"))


def start_server(
    repo_path: os.PathLike | str,
    tmp_path_factory: pytest.TempPathFactory,
    timeout_s: float = SERVER_READY_TIMEOUT_S,
    **kwargs,
) -> TritonServer:
    """Start tritonserver over ``repo_path`` on free ports and wait until it is ready.

    The log goes to a fresh temporary folder. Fails the test (with the log tail) if the server
    does not come up; the caller must ``stop()`` the returned server.
    """
    http_port, grpc_port, metrics_port = free_ports(3)
    log_file = tmp_path_factory.mktemp("tritonserver") / "tritonserver.log"
    server = TritonServer(
        repo_path, http_port, grpc_port, metrics_port, log_file=log_file, **kwargs
    )
    server.start()
    try:
        server.wait_until_ready(timeout_s)
    except TritonServerError as exc:
        server.stop()
        pytest.fail(str(exc), pytrace=False)
    return server


@pytest.fixture(scope="session")
def model_repository() -> Path:
    """The exported model repository; fails (never skips) when it has not been built."""
    repo = Path(os.environ.get("MUSICGEN_REPOSITORY", DEFAULT_REPOSITORY))
    try:
        return check_model_repository(repo)
    except MissingRepositoryError as exc:
        pytest.fail(f"{exc} (or point MUSICGEN_REPOSITORY at one)", pytrace=False)


@pytest.fixture(scope="session")
def triton_server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., TritonServer]]:
    """``start(repo_path, **kwargs)`` -> a ready TritonServer; all are stopped at session end.

    Keyword arguments go to ``start_server`` (``timeout_s``) and on to TritonServer.
    """
    servers = []

    def start(repo_path: os.PathLike | str, **kwargs) -> TritonServer:
        server = start_server(repo_path, tmp_path_factory, **kwargs)
        servers.append(server)
        return server

    yield start
    # Side by side: each stop waits out its own drain, and a server whose stub the watchdog replaced waits its
    # whole exit timeout (TritonServer.stopped_cleanly); one after another, that was half a minute of teardown.
    with ThreadPoolExecutor(max_workers=max(len(servers), 1)) as pool:
        list(pool.map(TritonServer.stop, servers))


@pytest.fixture(scope="session")
def triton_server(
    model_repository: Path, triton_server_factory: Callable[..., TritonServer]
) -> TritonServer:
    """One tritonserver over the exported repository, shared by the whole session."""
    return triton_server_factory(model_repository)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Attach the log tail of every server a failed test used."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for name, value in getattr(item, "funcargs", {}).items():
        if isinstance(value, TritonServer):
            report.sections.append((f"tritonserver log ({name}): {value.log_path}", value.log_tail()))


@pytest.fixture(scope="session")
def tiny_weights() -> Path:
    """The save_pretrained folder the tiny repository was exported from: the eager reference."""
    weights = Path(os.environ.get("MUSICGEN_WEIGHTS", "build/weights/audioldm-tiny"))
    if not (weights / "model_index.json").exists():
        pytest.fail(f"no AudioLDM weights at {weights}: run `make export` (or set MUSICGEN_WEIGHTS)", pytrace=False)
    return weights


@pytest.fixture(scope="session")
def eager_audio(tiny_weights: Path):
    """`eager_audio(prompt, AudioOptions) -> waveform` from ppdiffusers' own AudioLDMPipeline on the tiny
    weights, seeded as its docs say: what every exported and served waveform must reproduce."""
    import paddle
    from ppdiffusers import AudioLDMPipeline

    pipe = AudioLDMPipeline.from_pretrained(str(tiny_weights))
    pipe.set_progress_bar_config(disable=True)

    def run(prompt, options):
        return pipe(
            prompt, negative_prompt=options.negative_prompt, num_inference_steps=options.num_inference_steps,
            audio_length_in_s=options.audio_length_in_s, guidance_scale=options.guidance_scale,
            generator=paddle.Generator().manual_seed(options.seed),
        ).audios[0]

    return run
