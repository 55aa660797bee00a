"""A terminal progress bar for streamed generation: one tqdm bar per stage (caption, chatglm, denoise).

Pass a `StageBars` as the `progress` callback of `MusicClient.text_to_music` / `image_to_music`; close it
(or use it as a context manager) when the call returns. It writes to stderr, so stdout stays for results.
"""
from __future__ import annotations

import sys
from typing import Any, Optional, TextIO

from tqdm import tqdm


class StageBars:
    """`bars(stage, step, total)`: a new bar when the stage changes, the current one moved to `step`."""

    def __init__(self, file: Optional[TextIO] = None, **tqdm_options: Any):
        self.file = file or sys.stderr
        self.options = tqdm_options
        self.stage: Optional[str] = None
        self._bar: Optional[tqdm] = None

    def __call__(self, stage: str, step: int, total: int) -> None:
        if stage != self.stage or self._bar is None:
            self.close()
            self.stage = stage
            self._bar = tqdm(total=total, desc=stage, unit="step", file=self.file, **self.options)
        self._bar.update(step - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "StageBars":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
