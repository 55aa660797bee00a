"""Export model families into a Triton model repository.

    python -m export audioldm --preset tiny --out build/model_repository
    python -m export audioldm --preset audioldm-s-random --out build/model_repository
    python -m export audioldm --from ~/.paddlemix/models/cvssp/audioldm --out build/model_repository

`--from` takes a ppdiffusers `save_pretrained` folder, or a model name looked up under
$PPMIX_HOME/models/<name> (PPMIX_HOME defaults to ~/.paddlemix). Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from export.core import ExportError, configure_logging

logger = logging.getLogger("export")


def resolve_weights(source: str) -> Path:
    """A folder path as given, else a name under $PPMIX_HOME/models."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    home = Path(os.environ.get("PPMIX_HOME", "~/.paddlemix")).expanduser()
    candidate = home / "models" / source
    if candidate.is_dir():
        return candidate
    raise FileNotFoundError(f"no weights folder at {path} nor {candidate}: nothing is downloaded, bring the "
                            "ppdiffusers save_pretrained folder there")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", choices=["audioldm"])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", choices=["tiny", "audioldm-s-random"],
                        help="random weights from a built-in config (tiny: tests and the demo)")
    source.add_argument("--from", dest="weights", help="a save_pretrained folder, or a name under $PPMIX_HOME/models")
    parser.add_argument("--out", default="build/model_repository", help="model repository to write into")
    parser.add_argument("--weights-dir", default="build/weights", help="where presets save their random weights")
    parser.add_argument("--backend", choices=["onnxruntime", "paddle"], default="onnxruntime",
                        help="runtime the served component models use (both graph formats are always exported)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    args = parser.parse_args(argv)
    configure_logging()

    from export.audioldm.build import export_audioldm
    from export.audioldm.presets import PRESETS, build_random_pipeline

    try:
        if args.preset:
            folder = args.preset if args.preset.startswith("audioldm") else f"audioldm-{args.preset}"
            weights = build_random_pipeline(PRESETS[args.preset], Path(args.weights_dir) / folder)
        else:
            weights = resolve_weights(args.weights)
        export_audioldm(weights, Path(args.out), {"backend": args.backend, "device": args.device},
                        instance_kind="KIND_GPU" if args.device == "gpu" else "KIND_CPU")
    except (ExportError, FileNotFoundError) as exc:
        logger.error("%s", exc)
        return 1
    logger.info("model repository ready: %s", Path(args.out).resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
