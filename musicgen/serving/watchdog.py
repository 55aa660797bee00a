"""The watchdog: keeps every model of the repository served by live Python backend stubs.

Triton 2.51 never restarts a stub that died: the model stays "ready" while every request to it fails
with 500 "Stub process '<instance>' is not healthy". In explicit model-control mode a model can be
reloaded, which brings fresh stubs. So, each poll (``check``):

1. new stub processes of the server are learned (their command line names the model);
2. a learned stub that is gone or a zombie means its model is broken ("stub died"); one frozen
   (SIGSTOP, a tracer: state T) for longer than ``stuck_after_s`` is killed, then treated the same
   ("stub stuck") — a stub busy in a long computation is not stuck, and cannot be told apart cheaply;
3. a model the repository index shows UNAVAILABLE is broken too ("not loaded: <Triton's reason>"),
   retried with a doubling backoff so a model that cannot load does not spin the loop.

Repairing a model (``heal``) = unload, then load. Triton's ``/v2/health/ready`` answers 400 while any
model is UNLOADING or LOADING, and while one is UNAVAILABLE because its load failed (not after a plain
unload): so readiness is false from the repair's start until the model serves again, with nothing else
to run (measured on tritonserver 2.51; it is still true in the ≤ one poll before the death is seen).
The load does not wait for the unload: a version whose dead stub had received a request never finishes
unloading (its requests are never released), and Triton loads a fresh version beside the stuck one.

Pure logic over injected callables (the server's control API, the stub list, the process table, a
clock), so it is unit-tested with fakes; ``run`` is the thread body the launcher starts.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Set

from .control import READY, UNAVAILABLE, ControlError, ModelState
from .stubs import StubProcess, process_state, remove_shm_region

log = logging.getLogger("musicgen.serving.watchdog")


@dataclass(frozen=True)
class Fault:
    """Why a model needs repair."""

    model: str
    cause: str  # "stub died", "stub stuck", "not loaded"
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.model}: {self.cause}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class Repair:
    """One repair, as logged: what was wrong, whether the reload worked and how long it took."""

    fault: Fault
    ok: bool
    started: float  # on the watchdog's clock
    seconds: float
    error: str = ""


@dataclass
class _Backoff:
    delay_s: float
    next_at: float = 0.0


class Watchdog:
    """Finds broken models of one server and reloads them; see the module docstring.

    ``control`` needs ``index()``, ``load(model, timeout_s)`` and ``unload(model)`` (a TritonControl).
    ``list_stubs()`` returns the server's stub processes; ``state_of(pid)`` a process's state letter
    or None once it is gone; ``kill(pid)`` ends a stuck stub.
    """

    def __init__(
        self,
        control,
        list_stubs: Callable[[], Iterable[StubProcess]],
        state_of: Callable[[int], Optional[str]] = process_state,
        kill: Callable[[int], None] = lambda pid: os.kill(pid, signal.SIGKILL),
        clock: Callable[[], float] = time.monotonic,
        stuck_after_s: float = 5.0,
        load_timeout_s: float = 600.0,
        retry_after_s: float = 2.0,
        max_retry_after_s: float = 60.0,
        remove_shm: Callable[[str], bool] = remove_shm_region,
    ):
        self.control = control
        self.list_stubs = list_stubs
        self.state_of = state_of
        self.kill = kill
        self.clock = clock
        self.stuck_after_s = stuck_after_s
        self.load_timeout_s = load_timeout_s
        self.retry_after_s = retry_after_s
        self.max_retry_after_s = max_retry_after_s
        self.remove_shm = remove_shm
        self.repairs: List[Repair] = []
        self._stubs: Dict[int, StubProcess] = {}
        self._stopped_since: Dict[int, float] = {}
        self._backoff: Dict[str, _Backoff] = {}

    # ---- finding faults ------------------------------------------------------------------------
    def learn_stubs(self) -> None:
        """Start following the server's live stubs (a stub is only known dead if it was seen alive)."""
        for stub in self.list_stubs():
            if not stub.dead:
                self._stubs.setdefault(stub.pid, stub)

    def _stub_faults(self, ready_models: Set[str]) -> Dict[str, Fault]:
        faults: Dict[str, Fault] = {}
        now = self.clock()
        for pid, stub in list(self._stubs.items()):
            if stub.model not in ready_models:
                continue  # being (re)loaded or unloaded on purpose: its stubs come and go
            state = self.state_of(pid)
            if state is None or state in ("Z", "X"):
                faults.setdefault(stub.model, Fault(stub.model, "stub died", f"{stub.instance}, pid {pid}"))
            elif state in ("T", "t"):
                since = self._stopped_since.setdefault(pid, now)
                if now - since >= self.stuck_after_s:
                    self.kill(pid)
                    faults.setdefault(stub.model, Fault(
                        stub.model, "stub stuck", f"{stub.instance}, pid {pid}, stopped {now - since:.1f} s"))
            else:
                self._stopped_since.pop(pid, None)
        return faults

    def _load_faults(self, index: Dict[str, ModelState]) -> Dict[str, Fault]:
        now = self.clock()
        faults = {}
        for name, model in index.items():
            if model.state != UNAVAILABLE:
                continue
            backoff = self._backoff.get(name)
            if backoff is None or now >= backoff.next_at:
                faults[name] = Fault(name, "not loaded", model.reason)
        return faults

    def check(self) -> List[Fault]:
        """One look at the server: the models that need repair now (repairs nothing)."""
        index = self.control.index()
        self.learn_stubs()
        ready = {name for name, model in index.items() if model.state == READY}
        faults = self._stub_faults(ready)
        for name, fault in self._load_faults(index).items():
            faults.setdefault(name, fault)
        return list(faults.values())

    # ---- repairing -----------------------------------------------------------------------------
    def _forget_stubs(self, model: str) -> List[StubProcess]:
        gone = [stub for stub in self._stubs.values() if stub.model == model]
        for stub in gone:
            self._stubs.pop(stub.pid, None)
            self._stopped_since.pop(stub.pid, None)
        return gone

    def heal(self, fault: Fault) -> Repair:
        """Unload and load ``fault.model``; logs and records the outcome, never raises ControlError."""
        started = self.clock()
        log.warning("%s: reloading the model", fault)
        old_stubs = self._forget_stubs(fault.model)
        try:
            if fault.cause != "not loaded":
                self.control.unload(fault.model)
            # A model's load runs its initialize(): seconds for a graph, longer for a stage that imports
            # paddle; the call returns once the model is ready.
            self.control.load(fault.model, timeout_s=self.load_timeout_s)
        except ControlError as exc:
            repair = Repair(fault, False, started, self.clock() - started, str(exc))
            backoff = self._backoff.setdefault(fault.model, _Backoff(self.retry_after_s / 2))
            backoff.delay_s = min(backoff.delay_s * 2, self.max_retry_after_s)
            backoff.next_at = self.clock() + backoff.delay_s
            log.error("reloading %s failed after %.2f s (next try in %.0f s): %s",
                      fault.model, repair.seconds, backoff.delay_s, exc)
        else:
            repair = Repair(fault, True, started, self.clock() - started)
            self._backoff.pop(fault.model, None)
            log.warning("model %s reloaded in %.2f s", fault.model, repair.seconds)
            self.learn_stubs()  # now, so that a new stub dying before the next poll is not missed
        for stub in old_stubs:
            if self.state_of(stub.pid) in (None, "Z", "X"):
                self.remove_shm(stub.shm_region)  # the server leaves a dead stub's region behind
        self.repairs.append(repair)
        return repair

    def poll(self) -> List[Repair]:
        """Check once and repair what is broken."""
        return [self.heal(fault) for fault in self.check()]

    def run(self, stop: threading.Event, interval_s: float = 0.25) -> None:
        """Poll until ``stop`` is set; a server that does not answer is skipped, not fatal."""
        while not stop.wait(interval_s):
            try:
                self.poll()
            except ControlError as exc:
                log.debug("watchdog: server did not answer: %s", exc)
            except Exception:  # noqa: BLE001 - a watchdog that dies silently would be worse than any error
                log.exception("watchdog: unexpected error; carrying on")
