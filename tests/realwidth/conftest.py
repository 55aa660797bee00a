"""Fixtures of the real-width tests (opt-in: MUSICGEN_REAL_WIDTH=1; not run by `make test`).

`real_width_build` exports, once, AudioLDM's tiny preset with MiniGPT4 and ChatGLM at their real width and
vocabulary (`minigpt4-7b-width`, `chatglm-6b-width`, one LLM layer each: ≈ 7 GB of graphs in each of the two
formats, two of them past protobuf's 2 GB) into build/real-width/, and reuses it while the sources that shape
the export are unchanged. MUSICGEN_REAL_WIDTH_BUILD points at a build laid out the same way (`model_repository/`,
`weights/`), used as it is. Heavy: export/LLM.md ("Memory at real size") has the time and memory it takes.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from builds import sources_digest  # tests/builds.py

ROOT = Path(__file__).resolve().parents[2]
ENABLE = "MUSICGEN_REAL_WIDTH"
DEFAULT_BUILD = ROOT / "build" / "real-width"
STAMP = ".sources-sha256"
EXPORTS = (("audioldm", "tiny"), ("chatglm", "chatglm-6b-width"), ("minigpt4", "minigpt4-7b-width"))


@dataclass(frozen=True)
class RealWidthBuild:
    repository: Path
    minigpt4_weights: Path
    chatglm_weights: Path


@pytest.fixture(scope="session")
def real_width_build() -> RealWidthBuild:
    if os.environ.get(ENABLE) != "1":
        pytest.skip(f"real-width tests are opt-in: set {ENABLE}=1 (heavy: see tests/realwidth/conftest.py)")
    override = os.environ.get("MUSICGEN_REAL_WIDTH_BUILD")
    build = Path(override) if override else DEFAULT_BUILD
    result = RealWidthBuild(build / "model_repository", build / "weights" / "minigpt4-7b-width",
                            build / "weights" / "chatglm-6b-width")
    stamp = build / STAMP
    digest = sources_digest()
    if not override and (not stamp.exists() or stamp.read_text() != digest):
        stamp.unlink(missing_ok=True)
        for family, preset in EXPORTS:  # one at a time: each is heavy
            cmd = [sys.executable, "-m", "export", family, "--preset", preset, "--out", str(result.repository),
                   "--weights-dir", str(build / "weights")]
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                pytest.fail(f"{' '.join(cmd)} failed:\n" + "\n".join((proc.stdout + proc.stderr).splitlines()[-40:]),
                            pytrace=False)
        stamp.write_text(digest)
    return result
