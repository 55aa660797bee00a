"""The Python backend stub processes of one tritonserver, read from /proc (Linux).

Triton's Python backend runs every model instance in its own child process::

    triton_python_backend_stub <repo>/<model>/<version>/model.py <shm region> <shm size> <shm growth>
        <server pid> <backend dir> <ipc size> <instance name> <runtime>

A stub killed by a signal stays a zombie child of the server (nothing reaps it) and the backend never
starts a new one, so "the stub of an instance is gone or a zombie" is how a dead model shows here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

STUB_EXECUTABLE = "triton_python_backend_stub"
SHM_DIR = Path("/dev/shm")

# Fields of the stub's command line, by position after the executable.
_MODEL_PATH, _SHM_REGION, _INSTANCE = 0, 1, 7


@dataclass(frozen=True)
class StubProcess:
    """One stub process: which model instance it serves and its scheduler state (/proc/<pid>/stat)."""

    pid: int
    model: str  # the model's folder name in the repository (= its served name)
    instance: str  # Triton's instance name, e.g. "audioldm_unet_0_0"
    state: str  # R running, S sleeping, D disk wait, T/t stopped, Z zombie, X dead
    shm_region: str  # the shared-memory file under /dev/shm it and the server talk through

    @property
    def dead(self) -> bool:
        return self.state in ("Z", "X")

    @property
    def stopped(self) -> bool:
        """Frozen by SIGSTOP or a tracer: alive but serving nothing."""
        return self.state in ("T", "t")


def parse_stub_argv(pid: int, state: str, argv: Sequence[str]) -> Optional[StubProcess]:
    """A StubProcess from a command line, or None if it is not a Python backend stub's."""
    if not argv or os.path.basename(argv[0]) != STUB_EXECUTABLE or len(argv) <= _INSTANCE + 1:
        return None
    args = argv[1:]
    model = Path(args[_MODEL_PATH]).parent.parent.name
    return StubProcess(pid, model, args[_INSTANCE], state, args[_SHM_REGION])


def _stat_fields(stat_text: str) -> List[str]:
    # The command name in parentheses may hold spaces and ')': the fields start after the last ')'.
    return stat_text.rsplit(")", 1)[1].split()


def child_pids(pid: int, proc: Path = Path("/proc")) -> List[int]:
    """The children of ``pid``: from /proc/<pid>/task/*/children (a few small reads; each of the server's
    threads lists the processes it forked), or by scanning every process where the kernel lacks that file."""
    children_files = list(proc.glob(f"{pid}/task/*/children"))
    if children_files:
        pids = []
        for path in children_files:
            try:
                pids.extend(int(child) for child in path.read_text().split())
            except OSError:
                continue  # the thread ended while we looked
        return pids
    pids = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            if int(_stat_fields(stat.read_text())[1]) == pid:
                pids.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return pids


def stub_processes(server_pid: int, proc: Path = Path("/proc")) -> List[StubProcess]:
    """The stub processes whose parent is ``server_pid``.

    A zombie's command line reads empty, so a dead stub is not listed: the caller learns each stub
    while it is alive and follows it by pid (``process_state``).
    """
    stubs = []
    for pid in child_pids(server_pid, proc):
        try:
            state = _stat_fields((proc / str(pid) / "stat").read_text())[0]
            argv = [part.decode(errors="replace") for part in (proc / str(pid) / "cmdline").read_bytes().split(b"\0")]
        except (OSError, IndexError):
            continue  # exited while we looked
        stub = parse_stub_argv(pid, state, [part for part in argv if part])
        if stub is not None:
            stubs.append(stub)
    return stubs


def process_state(pid: int, proc: Path = Path("/proc")) -> Optional[str]:
    """The scheduler state letter of ``pid``, or None if it no longer exists."""
    try:
        return _stat_fields((proc / str(pid) / "stat").read_text())[0]
    except (OSError, IndexError):
        return None


def remove_shm_region(name: str, shm_dir: Path = SHM_DIR) -> bool:
    """Delete a dead stub's shared-memory file (the server leaves it behind); True if it was there."""
    if "/" in name or not name:
        raise ValueError(f"not a shared-memory region name: {name!r}")
    try:
        (shm_dir / name).unlink()
    except FileNotFoundError:
        return False
    return True
