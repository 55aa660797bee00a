"""Per-component latency of the exported AudioLDM graphs, every runtime measured side by side in one run.

    python benchmarks/components.py --repository build/repo_audioldm_s --backends onnxruntime paddle \
        --out benchmarks/results/components-cpu-audioldm-s.md
    python benchmarks/components.py --repository build/repo_audioldm_s --backends onnxruntime \
        --precisions fp32 int8-dynamic int8-static --steps 10

Shapes are the ones one text2music request sends (from the exported pipeline.json and tokenizer config):
the text encoder once per prompt at the tokenizer's padded length, the UNet on the guidance batch of 2, the
VAE decoder and vocoder once. The pipeline estimate is text×2 + UNet×steps + VAE + vocoder. Each number is the
median of --repeats timed runs after one warm-up. Graphs stripped by weightless.py get random weights.
`--precisions` adds a column per exported onnxruntime variant (python -m export ... --precision); a component
without that variant shows "-" and counts at fp32 in that column's pipeline estimate.
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "client")]  # runs from a plain checkout, no install needed

from musicgen.audioldm.config import TOKENIZER_DIR, AudioLDMConfig  # noqa: E402
from musicgen.precision import FP32, PRECISIONS, onnx_file  # noqa: E402
from musicgen.runtime import OnnxRunner, RuntimeOptions, open_graph  # noqa: E402
from musicgen_client import interface as api  # noqa: E402


def request_shapes(config: AudioLDMConfig, token_length: int, seconds: float) -> Dict[str, Dict[str, np.ndarray]]:
    frames, _ = config.frames_and_samples(seconds)
    rng = np.random.default_rng(0)
    latent = [config.latent_channels, frames // config.vae_scale_factor, config.mel_bins // config.vae_scale_factor]
    return {
        api.AUDIOLDM_TEXT_ENCODER: {
            "input_ids": rng.integers(4, 200, (1, token_length)).astype(np.int64),
            "attention_mask": np.ones((1, token_length), np.int64),
        },
        api.AUDIOLDM_UNET: {
            "sample": rng.standard_normal([2] + latent).astype(np.float32),
            "timestep": np.array([500.0, 500.0], np.float32),
            "class_labels": rng.standard_normal((2, config.text_embed_dim)).astype(np.float32),
        },
        api.AUDIOLDM_VAE_DECODER: {"latents": rng.standard_normal([1] + latent).astype(np.float32)},
        api.AUDIOLDM_VOCODER: {"mel_spectrogram": rng.standard_normal((1, frames, config.mel_bins)).astype(np.float32)},
    }


def load(version_dir: Path, options: RuntimeOptions):
    """A runner for the graph; a weightless (stripped) ONNX graph gets random weights first."""
    from benchmarks.weightless import MANIFEST, load_random

    if options.backend == "onnxruntime" and (version_dir / MANIFEST).exists():
        return OnnxRunner(load_random(version_dir / onnx_file(options.precision)), options)
    return open_graph(version_dir, options)


def time_runs(runner, feeds, repeats: int) -> List[float]:
    runner.run(feeds)  # warm-up: allocations, kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner.run(feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "paddle"], choices=["onnxruntime", "paddle"])
    parser.add_argument("--precisions", nargs="+", default=[FP32], choices=PRECISIONS,
                        help="onnxruntime graph variants to time (paddle is fp32 only)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--length", type=float, default=5.12, help="audio seconds (default: ppdiffusers' 5.12)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write a markdown report (and .json beside it)")
    args = parser.parse_args(argv)

    assets = args.repository / api.TEXT2MUSIC / "1"
    config = AudioLDMConfig.load(assets)
    token_length = json.loads((assets / TOKENIZER_DIR / "tokenizer_config.json").read_text())["model_max_length"]
    shapes = request_shapes(config, token_length, args.length)
    results: Dict[str, Dict[str, float]] = {}
    providers = []
    columns = runtime_columns(args)
    for column, options in columns.items():
        for name, feeds in shapes.items():
            version_dir = args.repository / name / "1"
            if options.backend == "onnxruntime" and not (version_dir / onnx_file(options.precision)).exists():
                print(f"{name:24s} {column:24s} not exported", flush=True)
                continue
            runner = load(version_dir, options)
            times = time_runs(runner, feeds, args.repeats)
            results.setdefault(name, {})[column] = statistics.median(times)
            if isinstance(runner, OnnxRunner):  # what onnxruntime really used: it falls back to CPU silently
                providers = runner.providers
            print(f"{name:24s} {column:24s} median {statistics.median(times):9.1f} ms  min {min(times):9.1f} ms",
                  flush=True)
            del runner
    weights = {api.AUDIOLDM_TEXT_ENCODER: 2, api.AUDIOLDM_UNET: args.steps, api.AUDIOLDM_VAE_DECODER: 1,
               api.AUDIOLDM_VOCODER: 1}
    fp32 = next(iter(columns))  # a variant column counts its missing components at this column's time
    pipeline = {c: sum(results[n].get(c, results[n].get(fp32, float("nan"))) * w for n, w in weights.items())
                for c in columns}
    report = render(args, list(columns), results, pipeline, shapes, providers)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        args.out.with_suffix(".json").write_text(json.dumps({"results_ms": results, "pipeline_ms": pipeline}, indent=2))
    return 0


def runtime_columns(args) -> Dict[str, RuntimeOptions]:
    """One column per backend, and per precision variant for onnxruntime: label -> options."""
    columns = {}
    for backend in args.backends:
        for precision in args.precisions if backend == "onnxruntime" else [FP32]:
            label = backend if precision == FP32 else f"{backend} {precision}"
            columns[label] = RuntimeOptions(backend=backend, device=args.device, threads=args.threads,
                                            precision=precision)
    return columns


def render(args, columns, results, pipeline, shapes, providers) -> str:
    """Markdown: a column per runtime, then each later column's time as a ratio of the first's."""
    head = "| component | shapes | " + " | ".join(f"{c} ms" for c in columns)
    head += "".join(f" | {c} / {columns[0]}" for c in columns[1:]) + " |"
    lines = [
        f"# Component latency: {args.repository.name}, {args.device}",
        "",
        f"Command: `python benchmarks/{Path(__file__).name} {shlex.join(sys.argv[1:])}`",
        f"Host: {platform.node()} ({platform.processor() or platform.machine()}), median of {args.repeats} after a warm-up."
        + (f" onnxruntime providers: {providers}." if providers else ""),
        "",
        head,
        "|---|---|" + "---|" * (2 * len(columns) - 1),
    ]

    def row(label, shape_text, values):
        cells = " | ".join(f"{values[c]:.1f}" if c in values else "-" for c in columns)
        ratios = "".join(f" | {values[c] / values[columns[0]]:.2f}×" if c in values and columns[0] in values
                         else " | -" for c in columns[1:])
        return f"| {label} | {shape_text} | {cells}{ratios} |"

    for name, feeds in shapes.items():
        lines.append(row(name, ", ".join(f"{k} {list(v.shape)}" for k, v in feeds.items()), results[name]))
    lines.append(row(f"**pipeline estimate** ({args.steps} steps, {args.length} s)", "text×2 + UNet×steps + VAE + vocoder",
                     pipeline))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
