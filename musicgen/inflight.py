"""What the two in-flight batching engines share (musicgen.audioldm.engine for denoising steps,
musicgen.llm.engine for decode steps): a bounded waiting queue fed from Triton's threads, one serving loop that
steps while there is work, and the metrics hooks.

A request waits in `_waiting` until the engine admits it into `_active`; the loop calls the engine's `step()` (one
iteration over everything in flight) until `stop()`, then answers what is left with UnavailableError. An
iteration that raises fails the requests it held (`_fail_all`), never the loop: nobody waits forever.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Deque, List, Optional

from .protocol import UnavailableError

logger = logging.getLogger(__name__)


class EngineObserver:
    """What an engine reports as it works (metrics); this base ignores everything."""

    def batch(self, stage: str, items: int, seconds: float) -> None:
        """One graph call for `items` requests (texts, for the text encoder; rows, for a decode step) took `seconds`."""

    def finished(self, outcome: str, seconds: float) -> None:
        """A request ended, `seconds` after it was submitted: outcome 'success', 'bad_output' (NaN, inf or
        silence from a stage), or the status of its error ('cancelled', 'unavailable', 'internal')."""

    def depth(self, active: int, waiting: int) -> None:
        """Requests in flight and waiting, after each iteration."""


class InflightLoop:
    """The queue and the loop; a subclass implements `step()` and `_fail_all(error)`. `submit`-side methods are
    thread-safe; `step` and `run_forever` run on one thread (`start()` makes it)."""

    def __init__(self, name: str, max_waiting: int, busy_verb: str = "running"):
        self.name = name  # the engine's name in logs and thread names
        self._max_waiting = max_waiting
        self._busy_verb = busy_verb  # what active requests are doing, for the 503's message
        self._waiting: Deque = deque()
        self._active: List = []
        self._wake = threading.Condition()
        self._stopped = False
        self._thread: Optional[threading.Thread] = None

    def _enqueue(self, item) -> None:
        """Queue `item`; UnavailableError at once when the waiting queue is full or the engine stopped."""
        with self._wake:
            if self._stopped:
                raise UnavailableError("the server is shutting down")
            if len(self._waiting) >= self._max_waiting:
                raise UnavailableError(f"busy: {len(self._active)} requests {self._busy_verb} and "
                                       f"{len(self._waiting)} waiting; retry later")
            self._waiting.append(item)
            self._wake.notify()

    @property
    def idle(self) -> bool:
        return not self._active and not self._waiting

    def step(self) -> None:
        raise NotImplementedError

    def _fail_all(self, error: BaseException) -> None:
        raise NotImplementedError

    def run_forever(self) -> None:
        """The serving loop: sleep while there is nothing to do, else step. Returns after `stop()`."""
        while True:
            with self._wake:
                while self.idle and not self._stopped:
                    self._wake.wait()
                if self._stopped:
                    break
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - a bug here must not leave requests waiting forever
                logger.exception("%s engine iteration failed: failing the requests it held", self.name)
                self._fail_all(exc)
        self._fail_all(UnavailableError("the server is shutting down"))

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify_all()

    def start(self) -> None:
        """Run the loop in a daemon thread of its own, as a served stage does; `close()` ends it."""
        self._thread = threading.Thread(target=self.run_forever, name=f"{self.name}-engine", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop, answer what is left (UnavailableError) and wait for the loop's thread."""
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout)
