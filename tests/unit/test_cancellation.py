"""Watch (a request's keep_going: cancel, deadline, parent's flag) and the cancel flags between processes."""
import threading
import time

import pytest

from musicgen.cancellation import CancelFlags, Watch, cancelling_children
from musicgen.protocol import DeadlineExceededError, status_of


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_watch_follows_cancellation_and_deadline():
    clock, cancelled = Clock(), [False]
    watch = Watch(lambda: cancelled[0], timeout_s=2.0, clock=clock)
    assert watch() and watch.remaining_s() == 2.0
    clock.now += 1.5
    assert watch() and watch.remaining_s() == pytest.approx(0.5)
    clock.now += 0.5
    with pytest.raises(DeadlineExceededError, match="^deadline exceeded: the request's timeout of 2 s") as info:
        watch()
    assert status_of(info.value) == "deadline_exceeded"
    cancelled[0] = True
    assert watch() is False  # a cancelled request is cancelled, whatever its deadline


def test_watch_without_timeout_never_expires():
    clock = Clock()
    watch = Watch(lambda: False, clock=clock)
    clock.now += 1e9
    assert watch() and watch.remaining_s() is None


def test_flags_are_seen_across_watches(tmp_path):
    flags = CancelFlags(tmp_path)
    token = flags.new()
    child = Watch(lambda: False, flags=flags, flag=token)
    assert child()
    flags.raise_flag(token)
    assert child() is False and flags.is_raised(token)
    flags.clear(token)
    assert child() and not flags.is_raised(token)


@pytest.mark.parametrize("token", ["../../etc/passwd", "", "ABC", "0" * 31])
def test_a_flag_name_never_names_a_path(tmp_path, token):
    with pytest.raises(ValueError, match="is not a cancel flag name"):
        CancelFlags(tmp_path).is_raised(token)


def test_cancelling_children_raises_the_flag_when_the_parent_is_cancelled(tmp_path):
    flags, cancelled = CancelFlags(tmp_path), threading.Event()
    parent = Watch(cancelled.is_set)
    with cancelling_children(parent, flags) as token:
        child = Watch(lambda: False, flags=flags, flag=token)
        assert child()
        cancelled.set()
        deadline = time.monotonic() + 5
        while child() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert child() is False
    assert not flags.is_raised(token)  # cleaned up with the block


def test_cancelling_children_leaves_no_flag_when_all_went_well(tmp_path):
    flags = CancelFlags(tmp_path)
    with cancelling_children(Watch(lambda: False), flags) as token:
        pass
    assert not flags.is_raised(token) and list(tmp_path.iterdir()) == []
