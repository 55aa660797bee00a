"""BoundedPool: workers + max_waiting requests at most, the next refused at once with UNAVAILABLE."""
import threading
import time

import pytest

from musicgen.admission import BoundedPool
from musicgen.protocol import UnavailableError, status_of


def test_a_full_pool_refuses_at_once_and_frees_its_places():
    pool, release, ran = BoundedPool(workers=2, max_waiting=1, name="test"), threading.Event(), []
    try:
        for i in range(3):
            pool.submit(lambda i=i: (release.wait(10), ran.append(i)))
        with pytest.raises(UnavailableError, match="busy: 2 requests running and 1 waiting") as info:
            pool.submit(lambda: ran.append("refused"))
        assert status_of(info.value) == "unavailable"
        release.set()
    finally:
        pool.shutdown()
    assert sorted(ran) == [0, 1, 2]


def _submit_when_free(pool, work, tries=500):
    for _ in range(tries):  # a place comes back right after the work before it returned
        try:
            return pool.submit(work)
        except UnavailableError:
            time.sleep(0.01)
    raise AssertionError("the pool's place never came back")


def test_places_come_back_after_failures():
    pool, done = BoundedPool(workers=1, max_waiting=0, name="test"), []

    def fail():
        raise RuntimeError("boom")
    try:
        for _ in range(3):
            _submit_when_free(pool, fail)
            _submit_when_free(pool, lambda: done.append(1))
    finally:
        pool.shutdown()
    assert len(done) == 3


def test_a_shut_down_pool_is_unavailable():
    pool = BoundedPool(workers=1, max_waiting=0, name="test")
    pool.shutdown()
    with pytest.raises(UnavailableError, match="shutting down"):
        pool.submit(lambda: None)


def test_bounds_are_checked():
    with pytest.raises(ValueError):
        BoundedPool(workers=0, max_waiting=0, name="test")
