"""The launcher and the server fixtures against a real tritonserver.

A toy Python-backend model that doubles an FP32 vector is served from a temporary repository and
queried over both HTTP and gRPC; then a server is stopped and must leave no process and no bound
port behind.
"""
from __future__ import annotations

import socket
import urllib.request
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from musicgen.serving import TritonServer, free_ports

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

pytestmark = pytest.mark.e2e

VALUES = np.array([1.0, -2.5, 3.25, 0.0], dtype=np.float32)


@pytest.fixture(scope="module")
def toy_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding only the ``double`` model."""
    repo = tmp_path_factory.mktemp("toy_repository")
    (repo / "double" / "1").mkdir(parents=True)
    (repo / "double" / "config.pbtxt").write_text(TOY_CONFIG)
    (repo / "double" / "1" / "model.py").write_text(TOY_MODEL)
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
