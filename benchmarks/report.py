"""What a benchmark run records about itself (machine, commit, command) and how its results are written:
a markdown report and a PNG plot beside the JSON. Pure functions of the result dictionary, except the probes."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent


# ---- provenance ----------------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> List[str]:
    """`name, memory` of each NVIDIA GPU nvidia-smi lists; empty when there is none (or no nvidia-smi)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _version(package: str) -> Optional[str]:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> Dict:
    import psutil

    return {
        "host": platform.node(),
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": _gpus(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in ("onnxruntime", "onnxruntime-gpu", "paddlepaddle", "ppdiffusers",
                                                "paddlenlp", "nvidia-pytriton", "tritonclient")
                     if _version(p)},
    }


def git_state() -> Dict:
    """The commit the harness ran at, and whether the work tree had uncommitted changes (then say so)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (subprocess.SubprocessError, OSError):
        return {"commit": None, "dirty": None}


# ---- markdown --------------------------------------------------------------------------------------------------------
def _ms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "–"
    ms = seconds * 1e3
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}"


def _mb(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    return "–" if a is None or not b else f"{a / b:.2f}×"


def _diff(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.1e}"


def markdown(result: Dict) -> str:
    settings, m = result["settings"], result["machine"]
    git = result["git"]
    lines = [
        f"# Serving benchmark: {result['name']}",
        "",
        f"Command: `{result['command']}`  ",
        f"Commit: `{git['commit']}`{' (with uncommitted changes)' if git['dirty'] else ''}; {result['started']}  ",
        f"Machine: {m['cpu']}, {m['usable_cores']} usable of {m['logical_cores']} cores, {m['memory_gib']} GiB"
        f"{', GPUs: ' + '; '.join(m['gpus']) if m['gpus'] else ', no GPU'}  ",
        f"Repository: `{settings['repository']}`; {settings['num_inference_steps']} steps, "
        f"{settings['audio_length_in_s']} s of audio, guidance {settings['guidance_scale']}, seed {settings['seed']}.",
    ]
    if result.get("served_models"):
        lines += ["", f"Served models: {_served_models(result['served_models'])}."]
    if result.get("note"):
        lines += ["", f"> {result['note']}"]
    lines += _side_by_side(result["side_by_side"])
    lines += _paired(result.get("paired", []))
    lines += ["", "## Concurrency sweep", "",
              "| pipeline | protocol | concurrency | requests (ok) | p50 ms | p90 ms | p99 ms | requests/s | "
              "server peak RSS MB |", "|---|---|---|---|---|---|---|---|---|"]
    for p in result["points"]:
        lines.append(f"| {p['pipeline']} | {p['protocol']} | {p['concurrency']} | {p['requests']} ({p['ok']}) | "
                     f"{_ms(p['p50_s'])} | {_ms(p['p90_s'])} | {_ms(p['p99_s'])} | {p['throughput_rps']:.2f} | "
                     f"{_mb(p.get('server_peak_rss_mb'))} |")
    lines += _stage_tables(result["points"])
    if result.get("server_peak_rss_mb") is not None:
        lines += ["", f"Server peak RSS over the whole sweep: {_mb(result['server_peak_rss_mb'])} MB "
                      f"(tritonserver + {result['server_peak_processes'] - 1} backend stubs, RSS summed)."]
    return "\n".join(lines) + "\n"


def _served_models(models: Dict[str, Dict]) -> str:
    """Models sharing a configuration, summarised together: `a, b: 1 instance, backend=onnxruntime, ...`."""
    groups: Dict[str, List[str]] = {}
    for name, config in models.items():
        text = f"{config['instances']} instance{'s' if config['instances'] != 1 else ''}"
        text += ", dynamic batching" if config["dynamic_batching"] else ""
        text += "".join(f", {k}={v}" for k, v in sorted(config["parameters"].items()))
        groups.setdefault(text, []).append(name)
    return "; ".join(f"{', '.join(names)}: {text}" for text, names in groups.items())


def _paired(rows: List[Dict]) -> List[str]:
    if not rows:
        return []
    lines = ["", "## Served against in process, request by request", "",
             "Each pair: one request in the resident local process, one served (concurrency 1), back to back, the "
             "order alternating; the ratio is taken per pair, so drift over the run cancels.", "",
             "| pipeline | mode | protocol | pairs | in process, median ms | served, median ms | served / in process, "
             "median of pairs (range) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['pipeline']} | {r['mode']} | {r['protocol']} | {len(r['ratios'])} | "
                     f"{_ms(r['local_median_s'])} | {_ms(r['served_median_s'])} | {r['ratio_median']:.3f}× "
                     f"({min(r['ratios']):.3f}–{max(r['ratios']):.3f}) |")
    return lines


def _side_by_side(rows: List[Dict]) -> List[str]:
    served = [r for r in rows if r["mode"].startswith("served")]
    protocols = list(dict.fromkeys(r["mode"] for r in served))
    lines = ["", "## Side by side, one request at a time", "",
             "Local modes: median of the timed runs after a warm-up, one fresh process per mode holding every "
             "pipeline benchmarked (peak RSS: that process's); \"first run\": no timed run after the warm-up, "
             "so first-run costs are included. Served: p50 at concurrency 1. Max |Δ|: each waveform against the first served one for the "
             "same seed (– when the lengths differ or one is missing).", "",
             "| pipeline | mode | latency ms | peak RSS MB | " + " | ".join(f"{p} / this" for p in protocols)
             + " | samples | max abs Δ | same caption & prompt |",
             "|---|---|---|---|" + "---|" * len(protocols) + "---|---|---|"]
    for row in rows:
        ratios = []
        for protocol in protocols:
            match = [r for r in served if r["pipeline"] == row["pipeline"] and r["mode"] == protocol]
            ratios.append(_ratio(match[0]["latency_s"] if match else None, row["latency_s"]))
        same = {None: "–", True: "yes", False: "NO"}[row.get("same_texts")]
        latency = _ms(row["latency_s"]) + (" (first run)" if row.get("warm_up_only") else "")
        lines.append(f"| {row['pipeline']} | {row['mode']} | {latency} | {_mb(row.get('peak_rss_mb'))} | "
                     + " | ".join(ratios) + f" | {row.get('samples') or '–'} | {_diff(row.get('max_abs_diff'))} | {same} |")
    return lines


def _stage_tables(points: List[Dict]) -> List[str]:
    """Per pipeline and protocol: each model's queue and compute (input + infer + output) ms per request, at each
    concurrency. An orchestrator's compute includes its BLS calls."""
    lines: List[str] = []
    groups: Dict[tuple, List[Dict]] = {}
    for p in points:
        groups.setdefault((p["pipeline"], p["protocol"]), []).append(p)
    for (pipeline, protocol), group in groups.items():
        models = sorted({m for p in group for m in p["stages"]})
        lines += ["", f"### Triton statistics: {pipeline} over {protocol}, ms per request (queue / compute)", "",
                  "| model | " + " | ".join(f"c={p['concurrency']}" for p in group) + " |",
                  "|---|" + "---|" * len(group)]
        for model in models:
            cells = []
            for p in group:
                s = p["stages"].get(model)
                compute = s and s["compute_input_ms"] + s["compute_infer_ms"] + s["compute_output_ms"]
                cells.append("–" if s is None else f"{s['queue_ms']:,.1f} / {compute:,.1f} ({s['requests']})")
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    if lines:
        lines += ["", "(n): requests the model served at that point; a component model serves several per pipeline "
                      "request (the UNet once per step)."]
    for (pipeline, protocol), group in groups.items():
        stages = sorted({s for p in group for s in p.get("engine", {})})
        if not stages:
            continue
        lines += ["", f"### text2music's engine: {pipeline} over {protocol}, ms per call (requests per call)", "",
                  "| component | " + " | ".join(f"c={p['concurrency']}" for p in group) + " |",
                  "|---|" + "---|" * len(group)]
        for stage in stages:
            cells = [f"{e['ms_per_call']:,.1f} ({e['requests_per_call']:.2f})" if (e := p.get("engine", {}).get(stage))
                     else "–" for p in group]
            lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return lines


# ---- plot ------------------------------------------------------------------------------------------------------------
LOCAL_STYLES = {"eager": ("tab:red", "--"), "onnxruntime": ("tab:green", "-."), "paddle": ("tab:purple", ":")}


def plot(result: Dict, path: Path) -> None:
    """Latency (p50, with a bar up to p99) and throughput against concurrency, per pipeline and protocol; each local
    mode as a horizontal line (its latency, and the 1 / latency it sustains one request at a time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = result["points"]
    pipelines = list(dict.fromkeys(p["pipeline"] for p in points))
    levels = sorted({p["concurrency"] for p in points})
    fig, axes = plt.subplots(2, max(1, len(pipelines)), figsize=(6 * max(1, len(pipelines)), 8), squeeze=False)
    for column, pipeline in enumerate(pipelines):
        latency, throughput = axes[0][column], axes[1][column]
        for protocol in dict.fromkeys(p["protocol"] for p in points):
            rows = [p for p in points if p["pipeline"] == pipeline and p["protocol"] == protocol and p["p50_s"]]
            if not rows:
                continue
            x = [p["concurrency"] for p in rows]
            to_p99 = [[0.0] * len(rows), [p["p99_s"] - p["p50_s"] for p in rows]]
            latency.errorbar(x, [p["p50_s"] for p in rows], yerr=to_p99, marker="o", capsize=3,
                             label=f"served {protocol} (p50, bar to p99)")
            throughput.plot(x, [p["throughput_rps"] for p in rows], marker="o", label=f"served {protocol}")
        for row in result["side_by_side"]:
            if row["pipeline"] == pipeline and row["mode"] in LOCAL_STYLES and row["latency_s"]:
                color, style = LOCAL_STYLES[row["mode"]]
                latency.axhline(row["latency_s"], color=color, linestyle=style, linewidth=1,
                                label=f"{row['mode']}, in one process")
                throughput.axhline(1 / row["latency_s"], color=color, linestyle=style, linewidth=1,
                                   label=f"{row['mode']}, one at a time")
        latency.set_title(f"{pipeline}: latency")
        latency.set_ylabel("seconds per request")
        throughput.set_title(f"{pipeline}: throughput")
        throughput.set_ylabel("requests / s")
        for ax in (latency, throughput):
            ax.set_xscale("log", base=2)
            ax.set_xticks(levels, [str(level) for level in levels])
            ax.set_ylim(bottom=0)
            ax.set_xlabel("concurrent requests")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
    machine = result["machine"]
    fig.suptitle(f"{result['name']}: {machine['cpu']}, {machine['usable_cores']} cores"
                 + (f", {'; '.join(machine['gpus'])}" if machine["gpus"] else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
