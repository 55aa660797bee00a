"""Admission with a bound: a thread pool that refuses work once it holds as much as it may, instead of queueing
without end. A refused request is answered at once with 503 / UNAVAILABLE (retry later), so an overloaded
server sheds load instead of holding connections for minutes. No Triton import here.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from .protocol import UnavailableError


class BoundedPool:
    """`workers` threads and room for `max_waiting` more requests; `submit` raises UnavailableError beyond."""

    def __init__(self, workers: int, max_waiting: int, name: str):
        if workers < 1 or max_waiting < 0:
            raise ValueError(f"workers={workers} must be >= 1 and max_waiting={max_waiting} >= 0")
        self.workers, self.max_waiting = workers, max_waiting
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._slots = threading.BoundedSemaphore(workers + max_waiting)

    def submit(self, work: Callable[[], None]) -> None:
        if not self._slots.acquire(blocking=False):
            raise UnavailableError(f"busy: {self.workers} requests running and {self.max_waiting} waiting, the "
                                   "most this model takes; retry later")

        def run() -> None:
            try:
                work()
            finally:
                self._slots.release()

        try:
            self._pool.submit(run)
        except RuntimeError:  # the pool is shut down: the model is being unloaded
            self._slots.release()
            raise UnavailableError("the model is shutting down") from None

    def shutdown(self) -> None:
        """Finish what was admitted (every admitted request gets its answer), refuse the rest."""
        self._pool.shutdown(wait=True)
