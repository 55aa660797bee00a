"""End-to-end text2music latency and throughput through a real tritonserver, HTTP and gRPC side by side.

    python benchmarks/server.py --repository build/model_repository --steps 20 --length 5 \
        --concurrency 1 2 --requests 6 --out benchmarks/results/server-cpu-tiny.md

Starts its own server on free ports over --repository (or measures a running one with --http-url/--grpc-url).
Every request uses a distinct seed, so nothing is cached. Latency is per request, as the client sees it;
throughput is completed requests per wall-clock second at each concurrency.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "client")]

from musicgen_client import MusicClient  # noqa: E402


def run_level(url: str, protocol: str, concurrency: int, requests: int, options: Dict) -> Dict[str, float]:
    def one(seed: int) -> float:
        with MusicClient(url, protocol) as client:
            start = time.perf_counter()
            client.text_to_music("a calm piano melody", seed=seed, **options)
            return time.perf_counter() - start

    one(0)  # warm-up: first-request allocations in every stage
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        latencies: List[float] = list(pool.map(one, range(1, requests + 1)))
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "p50_s": statistics.median(latencies),
        "p90_s": latencies[min(len(latencies) - 1, int(0.9 * len(latencies)))],
        "mean_s": statistics.fmean(latencies),
        "throughput_rps": requests / wall,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("build/model_repository"))
    parser.add_argument("--http-url", help="measure a running server instead of starting one")
    parser.add_argument("--grpc-url")
    parser.add_argument("--protocols", nargs="+", default=["http", "grpc"], choices=["http", "grpc"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--requests", type=int, default=6, help="timed requests per protocol and concurrency")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--length", type=float, default=5.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    options = dict(num_inference_steps=args.steps, audio_length_in_s=args.length)

    server = None
    urls = {"http": args.http_url, "grpc": args.grpc_url}
    if not all(urls[p] for p in args.protocols):
        from musicgen.server import TritonServer, free_ports

        server = TritonServer(args.repository, *free_ports(3), log_file=Path("build/bench-tritonserver.log"))
        server.start()
        server.wait_until_ready(180)
        urls = {"http": server.http_url, "grpc": server.grpc_url}
    try:
        rows = []
        for concurrency in args.concurrency:
            for protocol in args.protocols:
                stats = run_level(urls[protocol], protocol, concurrency, args.requests, options)
                rows.append({"protocol": protocol, "concurrency": concurrency, **stats})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        if server:
            server.stop()

    lines = [
        f"# text2music end to end: {args.repository.name}",
        "",
        f"Command: `python benchmarks/{Path(__file__).name} {shlex.join(sys.argv[1:])}`",
        f"{args.steps} steps, {args.length} s of audio, {args.requests} timed requests per row after one warm-up.",
        "",
        "| protocol | concurrency | p50 s | p90 s | mean s | requests/s |",
        "|---|---|---|---|---|---|",
    ] + [f"| {r['protocol']} | {r['concurrency']} | {r['p50_s']:.3f} | {r['p90_s']:.3f} | {r['mean_s']:.3f} | "
         f"{r['throughput_rps']:.2f} |" for r in rows]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
