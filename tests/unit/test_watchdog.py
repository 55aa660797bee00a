"""The watchdog's decisions and the /proc reading under it, with a fake server, process table and clock."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from musicgen.serving.control import LOADING, READY, UNAVAILABLE, UNLOADING, ControlError, ModelState
from musicgen.serving.stubs import parse_stub_argv, process_state, remove_shm_region, stub_processes
from musicgen.serving.watchdog import Fault, Watchdog


def stub_argv(model: str, instance: str, region: str = "triton_python_backend_shm_region_1") -> List[str]:
    """A command line as the Python backend starts a stub (tritonserver 2.51)."""
    return [
        "/x/backends/python/triton_python_backend_stub", f"/repo/{model}/1/model.py", region,
        "1048576", "1048576", "4242", "/x/backends/python", "336", instance, "DEFAULT",
    ]


class FakeServer:
    """The control API: a repository index, and load/unload calls recorded; ``fail_loads`` makes loads fail."""

    def __init__(self, models):
        self.states: Dict[str, ModelState] = {m: ModelState(m, READY) for m in models}
        self.calls: List[str] = []
        self.fail_loads = 0

    def index(self):
        return dict(self.states)

    def unload(self, model):
        self.calls.append(f"unload {model}")
        self.states[model] = ModelState(model, UNLOADING)

    def load(self, model, timeout_s=None):
        self.calls.append(f"load {model}")
        if self.fail_loads:
            self.fail_loads -= 1
            self.states[model] = ModelState(model, UNAVAILABLE, "load failed: boom")
            raise ControlError(f"POST /v2/repository/models/{model}/load: HTTP 400: load failed: boom")
        self.states[model] = ModelState(model, READY)


class FakeProcesses:
    """The server's stubs and the process table: pid -> (argv, state)."""

    def __init__(self):
        self.table: Dict[int, tuple] = {}
        self.killed: List[int] = []

    def add(self, pid, model, instance=None, state="S"):
        self.table[pid] = (stub_argv(model, instance or f"{model}_0_0", f"region_{pid}"), state)

    def stubs(self):
        # As in /proc, a zombie's command line reads empty, so it is not listed.
        return [parse_stub_argv(pid, state, argv) for pid, (argv, state) in self.table.items() if state != "Z"]

    def state_of(self, pid) -> Optional[str]:
        return self.table[pid][1] if pid in self.table else None

    def set_state(self, pid, state):
        self.table[pid] = (self.table[pid][0], state)

    def kill(self, pid):
        self.killed.append(pid)
        self.set_state(pid, "Z")


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def world():
    server = FakeServer(["audioldm_unet", "text2music"])
    procs = FakeProcesses()
    procs.add(10, "audioldm_unet")
    procs.add(11, "text2music")
    clock = Clock()
    removed = []
    dog = Watchdog(server, procs.stubs, procs.state_of, procs.kill, clock, stuck_after_s=5, retry_after_s=2,
                   remove_shm=lambda name: removed.append(name) or True)
    return dog, server, procs, clock, removed


def test_healthy_server_needs_nothing(world):
    dog, server, procs, clock, _ = world
    assert dog.poll() == [] and dog.poll() == []
    assert server.calls == []


@pytest.mark.parametrize("how", ["zombie", "gone"])
def test_dead_stub_unloads_then_loads_its_model_and_removes_its_shm(world, how):
    dog, server, procs, clock, removed = world
    dog.poll()  # learns the stubs while they are alive
    if how == "zombie":
        procs.set_state(10, "Z")
    else:
        del procs.table[10]
    procs.add(20, "audioldm_unet")  # the fresh stub the reload brings
    [repair] = dog.poll()
    assert repair.ok and repair.fault == Fault("audioldm_unet", "stub died", "audioldm_unet_0_0, pid 10")
    assert server.calls == ["unload audioldm_unet", "load audioldm_unet"]
    assert removed == ["region_10"]
    # The new stub is watched, the old pid forgotten: nothing more to do until it dies too.
    assert dog.poll() == []
    procs.set_state(20, "Z")
    assert [r.fault.model for r in dog.poll()] == ["audioldm_unet"]


def test_two_dead_instances_of_one_model_reload_it_once(world):
    dog, server, procs, clock, _ = world
    procs.add(12, "audioldm_unet", "audioldm_unet_0_1")
    dog.poll()
    procs.set_state(10, "Z")
    procs.set_state(12, "Z")
    assert len(dog.poll()) == 1
    assert server.calls == ["unload audioldm_unet", "load audioldm_unet"]


def test_stub_never_seen_alive_is_not_learned(world):
    dog, server, procs, clock, _ = world
    procs.add(30, "text2music", state="Z")
    assert dog.poll() == []


@pytest.mark.parametrize("state", [LOADING, UNLOADING, UNAVAILABLE])
def test_stubs_of_a_model_that_is_not_ready_may_come_and_go(world, state):
    dog, server, procs, clock, _ = world
    dog.poll()
    server.states["text2music"] = ModelState("text2music", state, "unloaded")
    procs.set_state(11, "Z")
    faults = dog.check()
    # Only an UNAVAILABLE model is repaired, by loading it: its stubs' deaths are not the cause.
    assert [f.cause for f in faults] == (["not loaded"] if state == UNAVAILABLE else [])


def test_stopped_stub_is_killed_after_the_grace_then_reloaded(world):
    dog, server, procs, clock, _ = world
    dog.poll()
    procs.set_state(11, "T")
    assert dog.poll() == []
    clock.now += 4.9
    assert dog.poll() == [] and procs.killed == []
    clock.now += 0.2
    [repair] = dog.poll()
    assert procs.killed == [11]
    assert repair.fault.model == "text2music" and repair.fault.cause == "stub stuck"
    assert server.calls == ["unload text2music", "load text2music"]


def test_stopped_then_resumed_stub_is_left_alone(world):
    dog, server, procs, clock, _ = world
    dog.poll()
    procs.set_state(11, "T")
    dog.poll()
    clock.now += 3
    procs.set_state(11, "R")
    dog.poll()
    procs.set_state(11, "T")
    clock.now += 3  # 6 s since the first stop, 3 since this one
    assert dog.poll() == []


def test_failed_reload_is_logged_and_retried_with_backoff(world, caplog):
    dog, server, procs, clock, _ = world
    dog.poll()
    procs.set_state(10, "Z")
    server.fail_loads = 3
    [repair] = dog.poll()
    assert not repair.ok and "boom" in repair.error
    assert "reloading audioldm_unet failed" in caplog.text
    # UNAVAILABLE now: a plain load is retried after 2 s, then 4 s, then 8 s.
    tries = []
    for _ in range(16):
        clock.now += 1
        tries += [clock.now - 100 for r in dog.poll()]
    assert tries == [2, 6, 14]
    assert server.calls[:2] == ["unload audioldm_unet", "load audioldm_unet"]
    assert server.calls[2:] == ["load audioldm_unet"] * 3  # no unload of a model that is not loaded
    assert server.states["audioldm_unet"].state == READY and dog.repairs[-1].ok


def test_run_survives_a_server_that_does_not_answer():
    class Silent:
        def index(self):
            raise ControlError("connection refused")

    stop = threading.Event()
    dog = Watchdog(Silent(), list)
    thread = threading.Thread(target=dog.run, args=(stop, 0.01))
    thread.start()
    stop.wait(0.05)
    stop.set()
    thread.join(2)
    assert not thread.is_alive()


# ---- /proc reading -------------------------------------------------------------------------------
def fake_proc(root: Path, pid: int, ppid: int, state: str, argv: List[str], comm: str = "triton_python_b"):
    (root / str(pid)).mkdir(parents=True)
    (root / str(pid) / "stat").write_text(f"{pid} ({comm}) {state} {ppid} {pid} 0 0\n")
    (root / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + (b"\0" if argv else b""))


@pytest.mark.parametrize("children_files", [True, False], ids=["task children", "full scan"])
def test_stub_processes_lists_the_stubs_of_one_server(tmp_path, children_files):
    fake_proc(tmp_path, 101, 100, "S", stub_argv("audioldm_unet", "audioldm_unet_0_0", "shm_a"))
    fake_proc(tmp_path, 102, 100, "R", stub_argv("text2music", "text2music_0_0", "shm_b"))
    fake_proc(tmp_path, 103, 100, "Z", [])  # a zombie stub: its command line reads empty
    fake_proc(tmp_path, 104, 999, "S", stub_argv("other", "other_0_0"))  # another server's stub
    fake_proc(tmp_path, 105, 100, "S", ["/bin/sh", "-c", "x y"], comm="sh (weird) name")
    fake_proc(tmp_path, 100, 1, "S", ["tritonserver"], comm="tritonserver")
    if children_files:  # two of the server's threads forked children
        (tmp_path / "100" / "task" / "100").mkdir(parents=True)
        (tmp_path / "100" / "task" / "100" / "children").write_text("101 103 ")
        (tmp_path / "100" / "task" / "117").mkdir(parents=True)
        (tmp_path / "100" / "task" / "117" / "children").write_text("102 105 ")
    stubs = sorted(stub_processes(100, tmp_path), key=lambda s: s.pid)
    assert [(s.pid, s.model, s.instance, s.state, s.shm_region) for s in stubs] == [
        (101, "audioldm_unet", "audioldm_unet_0_0", "S", "shm_a"),
        (102, "text2music", "text2music_0_0", "R", "shm_b"),
    ]
    assert process_state(103, tmp_path) == "Z" and process_state(7, tmp_path) is None


def test_remove_shm_region_only_takes_a_plain_name(tmp_path):
    (tmp_path / "triton_python_backend_shm_region_x").write_bytes(b"")
    assert remove_shm_region("triton_python_backend_shm_region_x", tmp_path)
    assert not remove_shm_region("triton_python_backend_shm_region_x", tmp_path)
    with pytest.raises(ValueError):
        remove_shm_region("../etc/passwd", tmp_path)



def test_run_carries_on_after_an_unexpected_error(caplog):
    class Flaky:
        calls = 0

        def index(self):
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise PermissionError("/dev/shm: not yours")
            return {}

    stop = threading.Event()
    thread = threading.Thread(target=Watchdog(Flaky(), list).run, args=(stop, 0.01))
    thread.start()
    deadline = time.monotonic() + 5
    while Flaky.calls < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(2)
    assert Flaky.calls >= 3 and "unexpected error" in caplog.text
