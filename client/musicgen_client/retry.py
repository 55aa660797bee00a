"""Retrying a call the server refused for now (503 / UNAVAILABLE: busy, shutting down, a model being reloaded,
a refused connection): capped exponential backoff with full jitter, so that many refused clients do not come
back in step.

Only refusals are retried. A request that ran and failed (400, 500), was cancelled, or ran out of its time is
not: the same request would fail again, or would cost the whole time again.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, TypeVar

_Result = TypeVar("_Result")


@dataclass(frozen=True)
class RetryPolicy:
    """`retries` more attempts after the first; before retry i (0-based) a pause drawn uniformly from
    [0, min(cap_s, base_s * 2**i)]."""

    retries: int = 3
    base_s: float = 0.5
    cap_s: float = 8.0

    def __post_init__(self) -> None:
        if self.retries < 0 or not self.base_s > 0 or self.cap_s < self.base_s:
            raise ValueError(f"retries={self.retries} must be >= 0, base_s={self.base_s} > 0 and "
                             f"cap_s={self.cap_s} >= base_s")

    def delays(self, rng: Optional[random.Random] = None) -> Iterator[float]:
        rng = rng or random.Random()
        for attempt in range(self.retries):
            yield rng.uniform(0.0, min(self.cap_s, self.base_s * 2 ** attempt))


NO_RETRIES = RetryPolicy(retries=0)


def call_with_retries(call: Callable[[], _Result], policy: RetryPolicy, retryable: Callable[[Exception], bool],
                      sleep: Callable[[float], None] = time.sleep, rng: Optional[random.Random] = None) -> _Result:
    """`call()`, again after each pause of `policy` while it raises an error `retryable` accepts; the last
    error is raised when the retries run out."""
    delays = policy.delays(rng)
    while True:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - re-raised unless retryable
            if not retryable(exc):
                raise
            delay = next(delays, None)
            if delay is None:
                raise
            sleep(delay)
