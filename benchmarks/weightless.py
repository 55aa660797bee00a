"""Carry a large ONNX graph without its weights, and load it back with random ones of the same shapes.

For latency only: the real-size random-weight AudioLDM graphs are hundreds of MB, too big to ship to a
remote GPU box, but their weights are random anyway. `strip` keeps the graph and the small constants
(shape tensors, scalars) and records every large weight's name, shape and type; `load_random` fills
them with seeded N(0, 0.02) values. Never use this for parity: the numbers are not the exported model's.

    python benchmarks/weightless.py strip build/repo_audioldm_s build/weightless
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

MANIFEST = "weights.json"
KEEP_BYTES = 4096  # constants up to this size are constants the graph needs, not weights


def strip(onnx_path: Path, out_path: Path) -> int:
    """paddle2onnx writes weights as Constant nodes: drop the large ones and record what they were."""
    import onnx

    model = onnx.load(str(onnx_path))
    kept, removed = [], []
    for node in model.graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is not None and len(value.raw_data) > KEEP_BYTES:
            removed.append({"name": node.output[0], "dims": list(value.dims), "data_type": value.data_type})
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
        values = (rng.standard_normal(entry["dims"], dtype=np.float32) * 0.02).astype(dtype)
        model.graph.initializer.append(numpy_helper.from_array(values, entry["name"]))
    return model.SerializeToString()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["strip"])
    parser.add_argument("repository", type=Path, help="an exported model repository")
    parser.add_argument("out", type=Path, help="where to write <model>/1/model.onnx + weights.json")
    args = parser.parse_args(argv)
    for onnx_path in sorted(args.repository.glob("*/1/model.onnx")):
        name = onnx_path.parent.parent.name
        count = strip(onnx_path, args.out / name / "1" / "model.onnx")
        print(f"{name}: {count} initializers stripped")
    for pipeline in args.repository.glob("*/1/pipeline.json"):
        target = args.out / pipeline.parent.parent.name / "1"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(pipeline, target / pipeline.name)
        tokenizer_config = pipeline.parent / "tokenizer" / "tokenizer_config.json"
        (target / "tokenizer").mkdir(exist_ok=True)
        shutil.copy(tokenizer_config, target / "tokenizer" / tokenizer_config.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
