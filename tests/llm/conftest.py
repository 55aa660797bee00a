"""Fixtures of the LLM tests: the tiny MiniGPT4 and ChatGLM exported once, and their eager paddlenlp references.

`llm_build` runs `python -m export minigpt4|chatglm --preset tiny` into build/llm-test/ (its own repository, so
the served text2music repository is never touched) and reuses it while the sources that shape the export are
unchanged (a hash of them is kept beside it). Point MUSICGEN_LLM_BUILD at another folder laid out the same
way (`model_repository/`, `weights/`) to test that instead.
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
DEFAULT_BUILD = ROOT / "build" / "llm-test"
STAMP = ".sources-sha256"
FAMILIES = ("minigpt4", "chatglm")


@dataclass(frozen=True)
class LLMBuild:
    repository: Path
    minigpt4_weights: Path
    chatglm_weights: Path


def _export(build: Path) -> None:
    for family in FAMILIES:
        cmd = [sys.executable, "-m", "export", family, "--preset", "tiny", "--out", str(build / "model_repository"),
               "--weights-dir", str(build / "weights")]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed:\n" + "\n".join((proc.stdout + proc.stderr).splitlines()[-40:]),
                        pytrace=False)


@pytest.fixture(scope="session")
def llm_build() -> LLMBuild:
    override = os.environ.get("MUSICGEN_LLM_BUILD")
    build = Path(override) if override else DEFAULT_BUILD
    if not override:
        digest = sources_digest()
        stamp = build / STAMP
        if not stamp.exists() or stamp.read_text() != digest:
            stamp.unlink(missing_ok=True)
            _export(build)
            stamp.write_text(digest)
    result = LLMBuild(build / "model_repository", build / "weights" / "minigpt4-tiny", build / "weights" / "chatglm-tiny")
    for path in (result.repository, result.minigpt4_weights, result.chatglm_weights):
        if not path.is_dir():
            pytest.fail(f"{path} is missing: the LLM build at {build} is incomplete", pytrace=False)
    return result


@pytest.fixture(scope="session")
def eager_minigpt4(llm_build):
    """(model, processor) of paddlenlp's MiniGPT4 on the tiny weights, in float32 as exported."""
    from paddlenlp.transformers import MiniGPT4ForConditionalGeneration, MiniGPT4Processor

    model = MiniGPT4ForConditionalGeneration.from_pretrained(
        str(llm_build.minigpt4_weights), vit_dtype="float32", qformer_dtype="float32", llama_dtype="float32")
    model.eval()
    return model, MiniGPT4Processor.from_pretrained(str(llm_build.minigpt4_weights))


@pytest.fixture(scope="session")
def eager_chatglm(llm_build):
    """(model, tokenizer) of paddlenlp's ChatGLM on the tiny weights, in float32 as exported."""
    from paddlenlp.transformers import ChatGLMForCausalLM, ChatGLMTokenizer

    model = ChatGLMForCausalLM.from_pretrained(str(llm_build.chatglm_weights), dtype="float32")
    model.eval()
    return model, ChatGLMTokenizer.from_pretrained(str(llm_build.chatglm_weights))
