"""Export model families into a Triton model repository.

    python -m export audioldm --preset tiny --out build/model_repository
    python -m export audioldm --from ~/.paddlemix/models/cvssp/audioldm --out build/model_repository
    python -m export minigpt4 --preset tiny --out build/model_repository
    python -m export minigpt4 --from miniGPT4/MiniGPT4-7B --out build/model_repository
    python -m export chatglm --preset tiny --out build/model_repository
    python -m export chatglm --from THUDM/chatglm-6b --out build/model_repository
    python -m export chatglm --preset chatglm-6b-width --layers 1 --out build/model_repository
    python -m export audioldm --preset tiny --out build/model_repository --precision unet=int8-static
    python -m export chatglm --preset tiny --out build/model_repository --precision fp16

`--precision` adds lower-precision ONNX variants beside the fp32 graphs, serves them, and records their error
against fp32 in each graph's parity.json (see export/precision.py; the LLMs: fp16 and int8-dynamic).

`--from` takes a `save_pretrained` folder, or a model name looked up under $PPMIX_HOME/models/<name>
(PPMIX_HOME defaults to ~/.paddlemix), then $PPNLP_HOME/models/<name> (~/.paddlenlp). Nothing is downloaded.
Each family's build module documents the folder layout it expects and what it writes.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import multiprocessing
import os
import time
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from export.core import ExportError, build_preset, configure_logging
from musicgen.manifest import write_manifests
from musicgen.precision import FP32, PRECISIONS
from musicgen_client import interface as api

logger = logging.getLogger("export")

MODEL_HOMES = (("PPMIX_HOME", "~/.paddlemix"), ("PPNLP_HOME", "~/.paddlenlp"))


@dataclass(frozen=True)
class Family:
    """A model family: a package `export.<name>` whose `presets.PRESETS` names its random-weight presets and
    whose `build` module provides `build_preset(preset, weights_root) -> weights folder` and
    `export_family(weights, repository, serving)`; a `layered` family's build_preset also takes `layers`.
    """

    name: str
    precision_components: Tuple[str, ...] = ()  # the graphs --precision may name; () if the family has no variants
    precisions: Tuple[str, ...] = PRECISIONS  # the variants it can write (fp32 always)
    layered: bool = False  # its presets take --layers (the LLMs: real width, fewer layers)

    @property
    def presets(self) -> Tuple[str, ...]:
        return tuple(importlib.import_module(f"export.{self.name}.presets").PRESETS)  # configs only: cheap

    def build_module(self):
        return importlib.import_module(f"export.{self.name}.build")


# The LLMs have no calibration recorder for int8-static (export.precision.write_graph_variants).
LLM_PRECISIONS = (FP32, "fp16", "int8-dynamic")
FAMILIES: Dict[str, Family] = {f.name: f for f in (
    Family("audioldm", tuple(c.name for c in api.AUDIOLDM_COMPONENTS)),
    Family("minigpt4", tuple(c.name for c in api.MINIGPT4_COMPONENTS), LLM_PRECISIONS, layered=True),
    Family("chatglm", tuple(c.name for c in api.CHATGLM_COMPONENTS), LLM_PRECISIONS, layered=True))}


def resolve_weights(source: str) -> Path:
    """A folder path as given, else a name under $PPMIX_HOME/models or $PPNLP_HOME/models."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    candidates = [Path(os.environ.get(var, default)).expanduser() / "models" / source for var, default in MODEL_HOMES]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no weights folder at {path} nor {' nor '.join(map(str, candidates))}: nothing is "
                            "downloaded, bring the save_pretrained folder there")


def build_preset_in_child(family: Family, preset: str, weights_root: Path, layers: Optional[int]) -> Path:
    """Build a preset's random weights in a child process: drawing and saving them holds several copies, and
    memory a process has used stays with it, so the export's own peak would otherwise start from there."""
    layered = {"layers": layers} if family.layered else {}
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as child:
        return child.submit(build_preset, f"export.{family.name}.build", preset, weights_root, layered).result()


def _gpu_list(text: str) -> tuple:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected GPU ids like 0,1, got {text!r}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", choices=sorted(FAMILIES))
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="random weights from a built-in config (tiny: tests and the demo); "
                        + "; ".join(f"{name}: {', '.join(f.presets)}" for name, f in FAMILIES.items()))
    source.add_argument("--from", dest="weights", help="a save_pretrained folder, or a name under $PPMIX_HOME/models")
    parser.add_argument("--layers", type=int, help="with --preset, minigpt4 and chatglm: the number of LLM layers "
                        "(the real-width presets default to 1; width and vocabulary stay the preset's)")
    parser.add_argument("--out", default="build/model_repository", help="model repository to write into")
    parser.add_argument("--weights-dir", default="build/weights", help="where presets save their random weights")
    parser.add_argument("--backend", choices=["onnxruntime", "paddle"], default="onnxruntime",
                        help="runtime the served graph models use (both graph formats are always exported)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--gpus", type=_gpu_list, default=(), metavar="0,1",
                        help="--device gpu: the GPUs that get an instance of each model (default: every GPU visible "
                        "to the server, one per pod in Kubernetes)")
    parser.add_argument("--precision", default="fp32",
                        help=f"ONNX variants to add and serve: one of {', '.join(PRECISIONS)} for every component, "
                        "or per component, e.g. unet=int8-static,vocoder=int8-dynamic (fp32 is always exported)")
    args = parser.parse_args(argv)
    configure_logging()

    family = FAMILIES[args.family]
    if args.preset and args.preset not in family.presets:
        parser.error(f"--preset {args.preset!r}: {args.family} has presets {', '.join(family.presets)}")
    if args.layers is not None and not (args.preset and family.layered and args.layers >= 1):
        parser.error(f"--layers {args.layers}: a positive number of LLM layers, with --preset, for "
                     f"{' or '.join(n for n, f in FAMILIES.items() if f.layered)}")
    from musicgen.precision import parse_precisions
    from export.serving import Serving, write_flow_models

    if args.precision != FP32 and not family.precision_components:
        parser.error(f"--precision: {args.family} has no precision variants yet (only {FP32})")
    try:
        precisions = parse_precisions(args.precision, family.precision_components)
    except ValueError as exc:
        parser.error(str(exc))
    for name, precision in precisions.items():
        if precision not in family.precisions:
            parser.error(f"--precision: {name}={precision}: {args.family} writes {', '.join(family.precisions)}")
    if args.gpus and args.device != "gpu":
        parser.error("--gpus: only with --device gpu")
    if precisions and args.backend != "onnxruntime":
        parser.error("--precision: the variants are ONNX graphs; serve them with --backend onnxruntime")

    build = family.build_module()
    started = time.time()
    try:
        if args.preset:
            weights = build_preset_in_child(family, args.preset, Path(args.weights_dir), args.layers)
        else:
            weights = resolve_weights(args.weights)
        build.export_family(weights, Path(args.out), Serving(args.backend, args.device, precisions, args.gpus))
        write_flow_models(Path(args.out))
        for written in write_manifests(Path(args.out), since=started - 1):  # every artefact with its sha256
            logger.info("wrote %s", written)
    except (ExportError, FileNotFoundError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    logger.info("model repository ready: %s", Path(args.out).resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
