"""Carry a large exported repository to a remote GPU box without its weights, and rebuild it there with random
weights of the same shapes and statistics.

For latency only: the real-size random-weight AudioLDM graphs are about 1.6 GB, far over what one call to the
GPU machine carries, and their weights are random anyway. `strip` keeps each graph and its small constants
(shape tensors, scalars), records every large weight's name, shape, type, mean and standard deviation, and copies
the stage models' assets (tokenizer, scheduler, pipeline.json). `materialize` draws each weight from
N(mean, std) — a norm's scale stays 1, a zero bias 0, so activations keep their scale — and lays out a served
model repository for the device asked. Never use this for parity: the numbers are not the exported model's.

    python benchmarks/weightless.py strip build/repo_audioldm_s .gpu/graphs
    python benchmarks/weightless.py materialize .gpu/graphs /tmp/repo --device gpu \\
        --precision unet=fp16 --text2music max_active=16 tf32=true                        # on the GPU machine
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Dict

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "client")]  # runs from a plain checkout as a script, too

from musicgen.params import TEXT2MUSIC_PARAMETERS  # noqa: E402

MANIFEST = "weights.json"
KEEP_BYTES = 4096  # constants up to this size are constants the graph needs, not weights

STAGE_FILES_SKIPPED = ("model.py", "__pycache__", "manifest.json")  # the backend code comes from model_repository/, fresh


def strip(onnx_path: Path, out_path: Path) -> int:
    """paddle2onnx writes weights as Constant nodes: drop the large ones and record what they were."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    kept, removed = [], []
    for node in model.graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is not None and len(value.raw_data) > KEEP_BYTES:
            array = numpy_helper.to_array(value).astype(np.float64)
            removed.append({"name": node.output[0], "dims": list(value.dims), "data_type": value.data_type,
                            "mean": float(array.mean()), "std": float(array.std())})
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    (out_path.parent / MANIFEST).write_text(json.dumps(removed))
    return len(removed)


def load_random(stripped: Path, seed: int = 0) -> bytes:
    """The stripped graph with its weights back as random initializers, as serialized bytes."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(stripped))
    rng = np.random.default_rng(seed)
    for entry in json.loads((stripped.parent / MANIFEST).read_text()):
        dtype = onnx.helper.tensor_dtype_to_np_dtype(entry["data_type"])
        values = rng.standard_normal(entry["dims"], dtype=np.float32) * entry["std"] + entry["mean"]
        model.graph.initializer.append(numpy_helper.from_array(values.astype(dtype), entry["name"]))
    return model.SerializeToString()


def strip_repository(repository: Path, out: Path) -> None:
    for onnx_path in sorted(repository.glob("*/1/model*.onnx")):
        name = onnx_path.parent.parent.name
        count = strip(onnx_path, out / name / "1" / onnx_path.name)
        print(f"{name}/{onnx_path.name}: {count} weights stripped")
    for pipeline in repository.glob("*/1/pipeline.json"):  # a stage model's version folder: its assets
        shutil.copytree(pipeline.parent, out / pipeline.parent.parent.name / "1", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(*STAGE_FILES_SKIPPED))


def materialize(stripped: Path, out: Path, device: str, precision: str = "fp32", text2music: Dict = {}) -> None:
    """A served repository (component models + text2music, graphs in process) on `device`, random weights;
    `precision` as export's --precision (fp16 variants are converted here from the random fp32 graph),
    `text2music` parameters over the defaults."""
    from export.precision import write_variant
    from export.serving import Serving, stage_asset_folders, write_stage
    from musicgen.manifest import write_manifest
    from musicgen.precision import parse_precisions
    from musicgen.repository import write_model
    from musicgen_client import interface as api

    precisions = parse_precisions(precision, [c.name for c in api.AUDIOLDM_COMPONENTS])
    if set(precisions.values()) - {"fp16"}:
        raise SystemExit(f"--precision {precision}: fp16 only (the int8 variants calibrate on real weights)")
    serving = Serving(device=device, precisions=precisions)
    for spec in api.AUDIOLDM_COMPONENTS:
        folder = write_model(out, serving.component_entry(spec))
        (folder / "1" / "model.onnx").write_bytes(load_random(stripped / spec.name / "1" / "model.onnx"))
        if spec.name in precisions:
            write_variant(folder / "1", precisions[spec.name], calibration=[])
        write_manifest(folder / "1")  # what the served model checks at load, as export writes it
        print(f"{spec.name}: random weights written ({precisions.get(spec.name, 'fp32')})")
    write_stage(out, api.TEXT2MUSIC, serving, text2music)
    for folder in stage_asset_folders(out, api.TEXT2MUSIC):  # text2music and its streaming twin
        shutil.copytree(stripped / api.TEXT2MUSIC / "1", folder, dirs_exist_ok=True)
        write_manifest(folder)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    strip_cmd = commands.add_parser("strip", help="an exported repository → its graphs without weights + assets")
    strip_cmd.add_argument("repository", type=Path, help="an exported model repository")
    strip_cmd.add_argument("out", type=Path)
    build_cmd = commands.add_parser("materialize", help="stripped graphs → a served repository with random weights")
    build_cmd.add_argument("stripped", type=Path)
    build_cmd.add_argument("out", type=Path)
    build_cmd.add_argument("--device", choices=["cpu", "gpu"], default="gpu")
    build_cmd.add_argument("--precision", default="fp32", help="as export's --precision; fp16 variants only")
    build_cmd.add_argument("--text2music", nargs="*", default=[], metavar="KEY=VALUE",
                           help="text2music parameters (musicgen.params), e.g. max_active=16 tf32=true")
    args = parser.parse_args(argv)
    if args.command == "strip":
        strip_repository(args.repository, args.out)
    else:
        overrides = dict(item.split("=", 1) for item in args.text2music)
        params = {p.name: p for p in TEXT2MUSIC_PARAMETERS}
        unknown = sorted(set(overrides) - set(params))
        if unknown:
            parser.error(f"--text2music {unknown}: text2music takes {sorted(params)}")
        materialize(args.stripped, args.out, args.device, args.precision,
                    {key: params[key].parse(value) for key, value in overrides.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
