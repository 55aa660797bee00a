"""Serving benchmark: a concurrency sweep over text2music and image2music, HTTP and gRPC, side by side with the
same pipelines run eagerly (ppdiffusers / paddlenlp) and in-process on the exported graphs, all in one run.

    python benchmarks/sweep.py --quick                                   # smoke run: tiny models, ≈ 4 min here
    python benchmarks/sweep.py --repository build/repo_audioldm_s --weights build/weights/audioldm-audioldm-s-random \\
        --pipelines text2music --steps 10 --length 5.12                  # real-size AudioLDM-s (long: see README)

1. Local modes (--text2music-modes, --image2music-modes): each of eager / onnxruntime / paddle runs in a fresh process
   that loads every pipeline, then per pipeline one warm-up and --local-repeats timed runs; its peak RSS is recorded.
2. Served: starts tritonserver over --repository on free ports (or uses --http-url/--grpc-url), one warm-up per
   pipeline and protocol (its waveform is compared with each local mode's: same weights, seed, steps, length),
   then at each concurrency keeps that many requests in flight until --requests have completed, recording
   latency, throughput, Triton's per-model statistics over that point, and the peak RSS of the server process
   tree (tritonserver + its Python backend stubs).
3. With --paired N, still on that server: each local graph runtime loaded once in a resident child, then N
   requests alternating between it and the served pipeline; the served / in-process ratio is taken per pair, so
   the drift of a noisy machine over the run cancels instead of counting against whichever series ran later.
4. Writes <out-dir>/<name>.json, .md and .png, each stating the machine, the commit and this command line.

Exit status 1 when any request failed (the reports are written all the same). No timing is judged here:
the machines this runs on are shared and noisy; compare ratios taken within one run.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import shlex
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "client")]  # runs from a plain checkout as a script, too

from benchmarks import local, report, served  # noqa: E402
from benchmarks.workload import (DEFAULT_NEGATIVE_PROMPT, DEFAULT_PROMPT, IMAGE2MUSIC, PIPELINES,  # noqa: E402
                                 TEXT2MUSIC, Workload, synthetic_image)
from musicgen_client import MusicClient  # noqa: E402
from musicgen_client import interface as api  # noqa: E402

log = logging.getLogger("benchmarks.sweep")

# --quick: the tiny repository, a few requests, every pipeline and protocol; what `make test` runs.
# Local image2music on onnxruntime only, and no timed repeat after the warm-up: the tiny ChatGLM writes its whole
# 2048-token budget, so each image2music run costs seconds even at this size.
QUICK = dict(concurrency=[1, 2], requests=2, steps=2, length=1.0, local_repeats=0, image2music_modes=["onnxruntime"],
             name="sweep-quick")


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_argument_group("what to measure")
    where.add_argument("--repository", type=Path, default=ROOT / "build" / "model_repository")
    where.add_argument("--weights", type=Path, default=ROOT / "build" / "weights" / "audioldm-tiny",
                       help="the AudioLDM save_pretrained folder the repository was exported from (eager mode)")
    where.add_argument("--minigpt4-weights", type=Path, default=ROOT / "build" / "weights" / "minigpt4-tiny")
    where.add_argument("--chatglm-weights", type=Path, default=ROOT / "build" / "weights" / "chatglm-tiny")
    where.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(PIPELINES))
    where.add_argument("--protocols", nargs="+", choices=["http", "grpc"], default=["http", "grpc"])
    where.add_argument("--text2music-modes", nargs="*", choices=local.KINDS, default=list(local.KINDS),
                       help="local modes run beside the server for text2music (none: give the flag alone)")
    where.add_argument("--image2music-modes", nargs="*", choices=local.KINDS, default=list(local.RUNTIMES),
                       help="the same for image2music; eager is opt-in: paddlenlp's generate runs the whole token "
                            "budgets (300 + 2048) eagerly, ≈5× the exported graphs on the tiny models")
    load = parser.add_argument_group("load")
    load.add_argument("--concurrency", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    load.add_argument("--requests", type=int, help="timed requests per point (default: 2 × concurrency, at least 4)")
    load.add_argument("--local-threads", type=int, default=0,
                      help="intra-op threads of the in-process graphs (0: the runtime decides, as served by default)")
    load.add_argument("--local-repeats", type=int, default=3,
                      help="timed runs of each local mode after its warm-up (0: time the warm-up run itself)")
    load.add_argument("--timeout", type=float, default=3600.0, help="seconds a served request may take")
    load.add_argument("--paired", type=int, default=0, metavar="N",
                      help="with the server up: N requests, one at a time, alternating between each local graph "
                      "runtime (loaded once, beside the server) and the served pipeline (first protocol); each "
                      "pair's ratio cancels the machine's drift, which separate series (local modes first, the "
                      "sweep after) count against served")
    work = parser.add_argument_group("the request (the same for every mode)")
    work.add_argument("--prompt", default=DEFAULT_PROMPT)
    work.add_argument("--negative-prompt", default=DEFAULT_NEGATIVE_PROMPT)
    work.add_argument("--image", type=Path, help="PNG or JPEG for image2music (default: seeded random pixels)")
    work.add_argument("--steps", type=int, default=20)
    work.add_argument("--length", type=float, default=5.0, help="audio seconds")
    work.add_argument("--guidance", type=float, default=2.5)
    work.add_argument("--seed", type=int, default=120, help="reference seed; load requests use the following ones")
    server = parser.add_argument_group("server (default: started here over --repository)")
    server.add_argument("--http-url", help="host:port of a running server's HTTP endpoint")
    server.add_argument("--grpc-url", help="host:port of a running server's gRPC endpoint")
    server.add_argument("--server-pid", type=int, help="pid of that running tritonserver, to sample its memory")
    server.add_argument("--metrics-url", help="http://host:port/metrics of that server: the batching engine's "
                        "per-component split (text2music runs its graphs in process, so Triton's statistics see one "
                        "model)")
    out = parser.add_argument_group("output")
    out.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    out.add_argument("--name", help="file stem (default: sweep-<repository folder name>)")
    out.add_argument("--note", help="a line recorded in every report (e.g. what else loaded the machine)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {', '.join(f'{k}={v}' for k, v in QUICK.items())} (explicit flags win)")
    if parser.parse_known_args(argv)[0].quick:
        parser.set_defaults(**QUICK)
    args = parser.parse_args(argv)
    args.name = args.name or f"sweep-{args.repository.resolve().name}"
    if args.server_pid and not (args.http_url or args.grpc_url):
        parser.error("--server-pid goes with --http-url/--grpc-url")
    return args


def requests_at(args: argparse.Namespace, concurrency: int) -> int:
    return args.requests or max(4, 2 * concurrency)


def local_modes(args: argparse.Namespace, pipeline: str) -> List[str]:
    return args.text2music_modes if pipeline == TEXT2MUSIC else args.image2music_modes


def workload_of(args: argparse.Namespace) -> Workload:
    image = args.image.read_bytes() if args.image else synthetic_image()
    return Workload(args.prompt, image, args.negative_prompt, args.steps, args.length, args.guidance, args.seed)


# ---- 1. local modes ------------------------------------------------------------------------------------------------
def check_weights(args: argparse.Namespace) -> None:
    """Refuse, before anything runs, eager AudioLDM weights whose configs differ from the repository's."""
    from musicgen.audioldm.config import AudioLDMConfig

    if not any(local.EAGER in local_modes(args, p) for p in args.pipelines):
        return
    if not (args.weights / "model_index.json").exists():
        raise SystemExit(f"--weights {args.weights} is not a save_pretrained folder (no model_index.json)")
    exported = AudioLDMConfig.load(args.repository / TEXT2MUSIC / "1")
    if AudioLDMConfig.from_weights(args.weights) != exported:
        raise SystemExit(f"--weights {args.weights} is not what {args.repository} was exported from: its configs "
                         f"differ ({AudioLDMConfig.from_weights(args.weights)} vs {exported})")


def local_runs(args: argparse.Namespace, kinds) -> List[local.LocalRun]:
    """One run per kind of `kinds` that some pipeline asks for, holding those pipelines."""
    weights = local.Weights(args.weights, args.minigpt4_weights, args.chatglm_weights)
    runs = []
    for kind in kinds:
        pipelines = tuple(p for p in args.pipelines if kind in local_modes(args, p))
        if pipelines:
            runs.append(local.LocalRun(kind, pipelines, args.repository.resolve(), weights, args.local_threads))
    return runs


def run_local(args: argparse.Namespace, workload: Workload) -> List[Dict]:
    results = []
    for run in local_runs(args, local.KINDS):
        for result in local.measure(run, workload, args.local_repeats):
            log.info("%s/%s: median %.3f s, process peak RSS %.0f MB", result["pipeline"], run.kind, result["median_s"],
                     result["peak_rss_mb"])
            results.append(result)
    return results


# ---- 2. served -----------------------------------------------------------------------------------------------------
@contextmanager
def endpoints(args: argparse.Namespace) -> Iterator[Tuple[Dict[str, str], Optional[int]]]:
    """({protocol: url}, server pid or None): a server started here over --repository, or the one given."""
    given = {"http": args.http_url, "grpc": args.grpc_url}
    if any(given.values()):
        missing = [p for p in args.protocols if not given[p]]
        if missing:
            raise SystemExit(f"no URL given for {', '.join(missing)}: pass --{missing[0]}-url or drop it from --protocols")
        yield given | {"metrics": args.metrics_url}, args.server_pid
        return
    with served.started_server(args.repository, ROOT / "build", "sweep") as server:
        yield {"http": server.http_url, "grpc": server.grpc_url, "metrics": server.metrics_url}, server.process.pid


def run_served(args: argparse.Namespace, workload: Workload, urls: Dict[str, str], pid: Optional[int]) -> Dict:
    stats_protocol = "http" if urls.get("http") else "grpc"

    def stats(pipeline: str) -> served.Snapshot:  # once every request sent to `pipeline` so far is counted
        return served.settled_stats(urls[stats_protocol], stats_protocol, pipeline, expected[pipeline])

    baseline = served.fetch_stats(urls[stats_protocol], stats_protocol)  # a given server may have served others
    expected = {p: served.requests_counted(baseline, p) for p in args.pipelines}
    sampler = served.MemorySampler(pid).start() if pid else None
    warmups, points = [], []
    seed = workload.seed + 1
    try:
        for pipeline in args.pipelines:
            for protocol in args.protocols:
                warmups.append(warm_up(urls[protocol], protocol, pipeline, workload, args.timeout))
                expected[pipeline] += 1
            for concurrency in args.concurrency:
                for protocol in args.protocols:
                    count = requests_at(args, concurrency)
                    before, engine_before = stats(pipeline), served.fetch_engine(urls.get("metrics"))
                    if sampler:
                        sampler.window()
                    point = served.run_point(urls[protocol], protocol, pipeline, workload, concurrency, count, seed,
                                             args.timeout)
                    seed += count
                    expected[pipeline] += count
                    stages = served.stats_delta(before, stats(pipeline))
                    engine = served.engine_delta(engine_before, served.fetch_engine(urls.get("metrics")))
                    points.append(point_row(pipeline, protocol, concurrency, point, stages, engine,
                                            sampler.window() if sampler else None))
                    log.info("%s/%s c=%d: p50 %s s, %.2f req/s, %d failed", pipeline, protocol, concurrency,
                             _fmt(points[-1]["p50_s"]), points[-1]["throughput_rps"], points[-1]["failed"])
    finally:
        if sampler:
            sampler.stop()
    models = [api.TEXT2MUSIC] + [c.name for c in api.AUDIOLDM_COMPONENTS]
    if IMAGE2MUSIC in args.pipelines:
        models += [api.IMAGE2MUSIC, api.CAPTION, api.CHATGLM] + [c.name for c in api.MINIGPT4_COMPONENTS
                                                                  + api.CHATGLM_COMPONENTS]
    return {"served_models": served.served_models(urls[stats_protocol], stats_protocol, models),
            "warmups": warmups, "points": points,
            "server_peak_rss_mb": sampler.peak_bytes / 2**20 if sampler else None,
            "server_peak_processes": sampler.peak_processes if sampler else None}


def run_paired(args: argparse.Namespace, workload: Workload, urls: Dict[str, str]) -> List[Dict]:
    """Per pipeline and local graph runtime: after a warm-up of each, `--paired` requests alternating between the
    resident local pipeline and the served one (which goes first alternates too), the reference seed each time."""
    protocol, rows = args.protocols[0], []
    for run in local_runs(args, local.RUNTIMES):
        with local.resident(run) as local_seconds, MusicClient(urls[protocol], protocol, args.timeout) as client:
            for pipeline in run.pipelines:
                def served_seconds() -> float:
                    start = time.perf_counter()
                    served.SERVED_CALLS[pipeline](client, workload, workload.seed)
                    return time.perf_counter() - start

                local_seconds(pipeline, workload)  # warm-ups
                served_seconds()
                pairs = []
                for i in range(args.paired):
                    if i % 2:  # served first
                        served_s = served_seconds()
                        local_s = local_seconds(pipeline, workload)
                    else:
                        local_s = local_seconds(pipeline, workload)
                        served_s = served_seconds()
                    pairs.append((local_s, served_s))
                    log.info("%s paired %d/%d: %s %.3f s, served %.3f s", pipeline, i + 1, args.paired, run.kind,
                             *pairs[-1])
                rows.append(paired_row(pipeline, run.kind, protocol, pairs))
    return rows


def paired_row(pipeline: str, kind: str, protocol: str, pairs: List[Tuple[float, float]]) -> Dict:
    ratios = [served_s / local_s for local_s, served_s in pairs]
    return {"pipeline": pipeline, "mode": kind, "protocol": protocol, "local_s": [p[0] for p in pairs],
            "served_s": [p[1] for p in pairs], "ratios": ratios, "ratio_median": statistics.median(ratios),
            "local_median_s": statistics.median(p[0] for p in pairs),
            "served_median_s": statistics.median(p[1] for p in pairs)}


def point_row(pipeline: str, protocol: str, concurrency: int, point: served.PointResult, stages: Dict, engine: Dict,
              peak_bytes: Optional[int]) -> Dict:
    return {"pipeline": pipeline, "protocol": protocol, "concurrency": concurrency, "requests": point.requests,
            "ok": len(point.latencies_s), "failed": len(point.errors), "errors": point.errors[:5],
            "wall_s": point.wall_s, "throughput_rps": len(point.latencies_s) / point.wall_s,
            **served.latency_summary(point.latencies_s), "latencies_s": point.latencies_s,
            "server_peak_rss_mb": peak_bytes / 2**20 if peak_bytes else None, "stages": stages, "engine": engine}


def _fmt(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.3f}"


def warm_up(url: str, protocol: str, pipeline: str, workload: Workload, timeout_s: float) -> Dict:
    """The first request of a pipeline over a protocol, with the reference seed: not timed as load; its outputs
    are what the local modes are compared with."""
    try:
        latency, outputs = served.render_once(url, protocol, pipeline, workload, timeout_s)
    except Exception as exc:  # reported with the rest; the sweep shows whether the server recovers
        log.error("%s/%s warm-up failed: %s", pipeline, protocol, exc)
        return {"pipeline": pipeline, "protocol": protocol, "latency_s": None, "error": f"{type(exc).__name__}: {exc}"}
    return {"pipeline": pipeline, "protocol": protocol, "latency_s": latency, "error": None, **outputs}


# ---- 3. side by side, reports ----------------------------------------------------------------------------------------
def max_abs_diff(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> Optional[float]:
    """Largest sample difference; None when either is missing or their lengths differ (then not the same request)."""
    if a is None or b is None or a.shape != b.shape:
        return None
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def side_by_side(pipelines: List[str], local_results: List[Dict], warmups: List[Dict], points: List[Dict]) -> List[Dict]:
    """Per pipeline: each served protocol at concurrency 1 and each local mode, one request at a time, with its
    output compared with the first served protocol's reference output (same seed)."""
    rows = []
    for pipeline in pipelines:
        references = [w for w in warmups if w["pipeline"] == pipeline and w.get("audio") is not None]
        reference = references[0] if references else {}
        for warm in (w for w in warmups if w["pipeline"] == pipeline):
            single = [p for p in points if p["pipeline"] == pipeline and p["protocol"] == warm["protocol"]
                      and p["concurrency"] == 1]
            rows.append({"pipeline": pipeline, "mode": f"served {warm['protocol']}",
                         "latency_s": single[0]["p50_s"] if single else None, "peak_rss_mb": None,
                         "samples": _length(warm), "max_abs_diff": max_abs_diff(warm.get("audio"), reference.get("audio")),
                         "same_texts": _same_texts(warm, reference)})
        for result in (r for r in local_results if r["pipeline"] == pipeline):
            rows.append({"pipeline": pipeline, "mode": result["kind"], "latency_s": result["median_s"],
                         "warm_up_only": result["warm_up_only"],
                         "peak_rss_mb": result["peak_rss_mb"], "samples": _length(result),
                         "max_abs_diff": max_abs_diff(result["audio"], reference.get("audio")),
                         "same_texts": _same_texts(result, reference)})
    return rows


def _length(outputs: Dict) -> Optional[int]:
    return None if outputs.get("audio") is None else int(outputs["audio"].size)


def _same_texts(a: Dict, b: Dict) -> Optional[bool]:
    """Whether caption and music prompt agree (image2music); None when there are none to compare."""
    if a.get("caption") is None or b.get("caption") is None:
        return None
    return a["caption"] == b["caption"] and a["music_prompt"] == b["music_prompt"]


def _jsonable(value):
    """Arrays out (a waveform is summarised by its length), everything else as is."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k != "audio"}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def write_reports(result: Dict, out_dir: Path, name: str) -> List[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md", out_dir / f"{name}.png"]
    paths[0].write_text(json.dumps(_jsonable(result), indent=2, allow_nan=False, default=str) + "\n")
    paths[1].write_text(report.markdown(result))
    report.plot(result, paths[2])
    return paths


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    check_weights(args)
    workload = workload_of(args)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    command = shlex.join(["python", "benchmarks/sweep.py", *(sys.argv[1:] if argv is None else argv)])
    local_results = run_local(args, workload)
    with endpoints(args) as (urls, pid):
        served_results = run_served(args, workload, urls, pid)
        paired = run_paired(args, workload, urls) if args.paired else []
    rows = side_by_side(args.pipelines, local_results, served_results["warmups"], served_results["points"])
    failures = sum(p["failed"] for p in served_results["points"]) + sum(1 for w in served_results["warmups"] if w["error"])
    result = {
        "name": args.name, "started": started, "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"), "command": command, "git": report.git_state(), "machine": report.machine(),
        "note": args.note,
        "settings": {"repository": str(args.repository), "weights": str(args.weights), **workload.describe(),
                     "concurrency": args.concurrency, "requests": {c: requests_at(args, c) for c in args.concurrency},
                     "protocols": args.protocols, "pipelines": args.pipelines,
                     "local_modes": {p: local_modes(args, p) for p in args.pipelines},
                     "local_repeats": args.local_repeats, "paired": args.paired, "local_threads": args.local_threads, "server": "given" if args.http_url or args.grpc_url else
                     "started by the harness"},
        "local": local_results, **served_results, "side_by_side": rows, "paired": paired, "failed_requests": failures,
        "all_succeeded": failures == 0,
    }
    for path in write_reports(result, args.out_dir, args.name):
        log.info("wrote %s", path)
    if failures:
        log.error("%d request(s) failed: see the reports", failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
