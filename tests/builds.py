"""What the tests over large exported builds share: when to export again (the sources that shape the build
changed), and running a heavy side in a process of its own."""
from __future__ import annotations

import hashlib
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
# What changes the exported LLM graphs, weights or assets.
LLM_SOURCES = ("export", "musicgen/llm", "musicgen/generation.py", "musicgen/runtime.py",
               "client/musicgen_client/interface.py")


def sources_digest(sources: Sequence[str] = LLM_SOURCES) -> str:
    """sha256 over the Python files of `sources` (paths under the repository root) and their names."""
    digest = hashlib.sha256()
    for source in sources:
        path = ROOT / source
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def isolated(function, *args):
    """`function(*args)` in a fresh process: a large model's memory goes back when it ends, so eager models and
    graph runtimes can be compared one after the other on a machine that cannot hold them together."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as child:
        return child.submit(function, *args).result()
