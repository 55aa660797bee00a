"""Whether the caller still wants a request: its own cancellation, its deadline, and its parent's cancel flag.

Every loop (denoising steps, both token loops) asks a `keep_going()` before each step. `Watch` is that callable:
False once the request is cancelled (gRPC cancel or deadline, or the parent request that called this one over
BLS was cancelled), DeadlineExceededError once the request's own `timeout` has passed.

Why cancel flags: Triton 2.51's BLS has no way to cancel a request it sent (`exec()` blocks, `async_exec()`
returns a future nobody can cancel), so a cancelled image2music could not stop the caption, chatglm and
text2music work it started. The parent names a flag in the child request's parameters; the child's Watch
looks for it; a small thread of the parent's raises it when the parent is cancelled. Flags are empty files
in one directory shared by the stub processes of one server (all on one host): a stat per step, nothing else.
No Triton import here (musicgen.triton_glue wires it to requests).
"""
from __future__ import annotations

import os
import re
import secrets
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from .protocol import DeadlineExceededError

# The request parameter that carries a cancel flag's name from a parent request to its children.
CANCEL_FLAG_PARAMETER = "musicgen_cancel_flag"
_TOKEN = re.compile(r"[0-9a-f]{32}")
# How often a parent looks at its own cancellation while a child works: the child then stops at its next step.
POLL_S = 0.05


def is_flag_name(token: str) -> bool:
    return isinstance(token, str) and _TOKEN.fullmatch(token) is not None


def _default_directory() -> Path:
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"musicgen-cancel-{os.getuid()}"


class CancelFlags:
    """Named cancel flags visible to every process of this user on this host."""

    def __init__(self, directory: Optional[Path] = None):
        self.directory = Path(directory) if directory else _default_directory()

    def new(self) -> str:
        return secrets.token_hex(16)

    def raise_flag(self, token: str) -> None:
        self.directory.mkdir(mode=0o700, exist_ok=True)
        self._path(token).touch()

    def is_raised(self, token: str) -> bool:
        return self._path(token).exists()

    def clear(self, token: str) -> None:
        self._path(token).unlink(missing_ok=True)

    def _path(self, token: str) -> Path:
        if not is_flag_name(token):  # a request parameter: never let it name a path
            raise ValueError(f"{CANCEL_FLAG_PARAMETER}: {token!r} is not a cancel flag name")
        return self.directory / token


class Watch:
    """`keep_going()` of one request: False when cancelled (itself or through its parent's flag), raises
    DeadlineExceededError past its deadline (`timeout_s` from when the model took the request)."""

    def __init__(self, is_cancelled: Callable[[], bool], timeout_s: Optional[float] = None,
                 flags: Optional[CancelFlags] = None, flag: Optional[str] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.is_cancelled = is_cancelled
        self.timeout_s = timeout_s
        self.flags, self.flag = flags, flag
        self.clock = clock
        self.deadline = None if timeout_s is None else clock() + timeout_s

    def cancelled(self) -> bool:
        return self.is_cancelled() or (self.flag is not None and self.flags.is_raised(self.flag))

    def remaining_s(self) -> Optional[float]:
        return None if self.deadline is None else self.deadline - self.clock()

    def __call__(self) -> bool:
        if self.cancelled():
            return False
        if self.deadline is not None and self.clock() >= self.deadline:
            raise DeadlineExceededError(f"the request's timeout of {self.timeout_s:g} s has passed")
        return True


@contextmanager
def cancelling_children(watch: Watch, flags: CancelFlags) -> Iterator[str]:
    """A fresh cancel flag for the child requests sent inside this block, raised by a watcher thread as soon as
    `watch` says the parent is cancelled; the flag is removed when the block ends."""
    token = flags.new()
    done = threading.Event()

    def follow_parent() -> None:
        while not done.wait(POLL_S):
            if watch.cancelled():
                flags.raise_flag(token)
                return

    watcher = threading.Thread(target=follow_parent, name="cancel-children", daemon=True)
    watcher.start()
    try:
        yield token
    finally:
        done.set()
        watcher.join()
        flags.clear(token)
