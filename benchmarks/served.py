"""The served side of a benchmark: closed-loop load through the client package, Triton's per-model statistics,
and the memory of the server's whole process tree.

- `run_point` keeps exactly `concurrency` requests in flight (one MusicClient per worker thread) until
  `requests` have completed, and records each request's latency as the caller sees it, or its error.
- `parse_stats` / `stats_delta` turn two snapshots of `/v2/models/stats` into what happened in between,
  per model and per stage (queue, compute_input, compute_infer, compute_output). An orchestrator's
  compute_infer includes the time it waits on its BLS calls.
- `MemorySampler` polls the RSS of tritonserver and every descendant (the Python backend stubs), summed: shared
  pages (libraries) count once per process, so the sum over-states what the tree takes from the machine.
"""
from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from musicgen_client import MusicClient

from .workload import IMAGE2MUSIC, TEXT2MUSIC, Workload

log = logging.getLogger("benchmarks.served")

STAGES = ("queue", "compute_input", "compute_infer", "compute_output")
Snapshot = Dict[str, Dict[str, Tuple[int, int]]]  # model -> {counter: (count, ns)}


# ---- the two served calls (the client package's API) -----------------------------------------------------------
def serve_text2music(client: MusicClient, workload: Workload, seed: int) -> Dict:
    result = client.text_to_music(workload.prompt, **workload.audio_options(seed))
    return {"audio": result.audio}


def serve_image2music(client: MusicClient, workload: Workload, seed: int) -> Dict:
    result = client.image_to_music(workload.image, **workload.audio_options(seed))
    return {"audio": result.audio, "caption": result.caption, "music_prompt": result.music_prompt}


SERVED_CALLS: Dict[str, Callable[[MusicClient, Workload, int], Dict]] = {
    TEXT2MUSIC: serve_text2music, IMAGE2MUSIC: serve_image2music}


def render_once(url: str, protocol: str, pipeline: str, workload: Workload, timeout_s: float) -> Tuple[float, Dict]:
    """One request with the reference seed, on a fresh connection: (latency in s, outputs). Raises on failure."""
    with MusicClient(url, protocol, timeout_s) as client:
        start = time.perf_counter()
        outputs = SERVED_CALLS[pipeline](client, workload, workload.seed)
        return time.perf_counter() - start, outputs


# ---- closed-loop load ------------------------------------------------------------------------------------------------
@dataclass
class PointResult:
    latencies_s: List[float]  # of the requests that succeeded
    errors: List[str]  # one per failed request
    wall_s: float

    @property
    def requests(self) -> int:
        return len(self.latencies_s) + len(self.errors)


def run_point(url: str, protocol: str, pipeline: str, workload: Workload, concurrency: int, requests: int,
              first_seed: int, timeout_s: float) -> PointResult:
    """`requests` requests with seeds first_seed, first_seed + 1, ..., `concurrency` at a time."""
    call = SERVED_CALLS[pipeline]
    tag = f"{pipeline}/{protocol} c={concurrency}"
    per_thread = threading.local()
    clients: List[MusicClient] = []
    lock = threading.Lock()

    def one(seed: int) -> Tuple[Optional[float], Optional[str]]:
        client = getattr(per_thread, "client", None)
        if client is None:  # one client per thread, reused: a request is not charged with building one
            client = per_thread.client = MusicClient(url, protocol, timeout_s)
            with lock:
                clients.append(client)
        start = time.perf_counter()
        try:
            call(client, workload, seed)
        except Exception as exc:  # a failed request is a result to report, not a reason to stop the sweep
            return None, f"{type(exc).__name__}: {exc}"
        return time.perf_counter() - start, None

    latencies, errors = [], []
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(one, first_seed + i) for i in range(requests)]
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            latency, error = future.result()
            if error:
                errors.append(error)
                log.warning("%s: request failed: %s", tag, error)
            else:
                latencies.append(latency)
            log.info("%s: %d/%d done (%s)", tag, done, requests, "failed" if error else f"{latency:.3f} s")
    wall = time.perf_counter() - start
    for client in clients:
        client.close()
    return PointResult(latencies, errors, wall)


def latency_summary(latencies: List[float]) -> Dict[str, Optional[float]]:
    """p50/p90/p99 (linear interpolation between order statistics), mean, min, max; None when nothing succeeded.
    With few requests p99 is close to the max: read it as such."""
    if not latencies:
        return {k: None for k in ("p50_s", "p90_s", "p99_s", "mean_s", "min_s", "max_s")}
    values = np.asarray(latencies, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50_s": float(p50), "p90_s": float(p90), "p99_s": float(p99), "mean_s": float(values.mean()),
            "min_s": float(values.min()), "max_s": float(values.max())}


# ---- a server of our own -------------------------------------------------------------------------------------------
@contextmanager
def started_server(repository: Path, log_dir: Path, name: str) -> Iterator:
    """A tritonserver over `repository` on free loopback ports, ready, its log `<log_dir>/<name>-tritonserver-<port>.log`;
    stopped on exit."""
    from musicgen.serving import TritonServer, free_ports

    ports = free_ports(3)
    server = TritonServer(repository, *ports, log_file=Path(log_dir) / f"{name}-tritonserver-{ports[0]}.log")
    try:
        server.start()
        server.wait_until_ready(600)
        yield server
    finally:
        server.stop()


# ---- the batching engine's own metrics (text2music runs its graphs in process: Triton sees one model) -------------
EngineCounters = Dict[str, Dict[str, float]]  # stage -> {"calls", "seconds", "items"}


def fetch_engine(metrics_url: Optional[str]) -> EngineCounters:
    """Per component, the engine's calls, seconds and requests carried so far (musicgen_* on the metrics port)."""
    if not metrics_url:
        return {}
    import urllib.request

    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    return parse_engine(text)


def parse_engine(text: str) -> EngineCounters:
    fields = {"musicgen_stage_seconds_count": "calls", "musicgen_stage_seconds_sum": "seconds",
              "musicgen_batch_size_sum": "items"}
    counters: EngineCounters = {}
    for line in text.splitlines():
        name = line.split("{", 1)[0]
        if name in fields and 'stage="' in line:
            stage = line.split('stage="', 1)[1].split('"', 1)[0]
            counters.setdefault(stage, {})[fields[name]] = float(line.rsplit(" ", 1)[1])
    return counters


def engine_delta(before: EngineCounters, after: EngineCounters) -> Dict[str, Dict]:
    """Per component called in between: calls, mean ms per call, mean requests per call (the batch)."""
    delta = {}
    for stage, now in sorted(after.items()):
        old = before.get(stage, {})
        calls = now.get("calls", 0) - old.get("calls", 0)
        if calls:
            delta[stage] = {"calls": int(calls),
                            "ms_per_call": 1000 * (now.get("seconds", 0) - old.get("seconds", 0)) / calls,
                            "requests_per_call": (now.get("items", 0) - old.get("items", 0)) / calls}
    return delta


# ---- Triton statistics --------------------------------------------------------------------------------------------
def fetch_stats(url: str, protocol: str) -> Snapshot:
    """A snapshot of every model's statistics (the statistics extension, `/v2/models/stats`)."""
    import importlib

    module = importlib.import_module(f"tritonclient.{protocol}")
    client = module.InferenceServerClient(url)
    try:
        raw = client.get_inference_statistics() if protocol == "http" else client.get_inference_statistics(as_json=True)
    finally:
        client.close()
    return parse_stats(raw)


def served_models(url: str, protocol: str, models: List[str]) -> Dict[str, Dict]:
    """How the server runs each model, from the config it loaded: instances, dynamic batching, and the parameters
    (backend, threads, ...). What "served" means in the tables."""
    import importlib

    module = importlib.import_module(f"tritonclient.{protocol}")
    client = module.InferenceServerClient(url)
    try:
        configs = {m: client.get_model_config(m) if protocol == "http" else client.get_model_config(m, as_json=True)
                   for m in models}
    finally:
        client.close()
    return {m: describe_config(c.get("config", c)) for m, c in configs.items()}  # gRPC wraps it in {"config": ...}


def describe_config(config: Dict) -> Dict:
    return {"instances": sum(int(g.get("count", 1)) for g in config.get("instance_group", [])),
            "dynamic_batching": "dynamic_batching" in config,
            "parameters": {k: v.get("string_value") for k, v in config.get("parameters", {}).items()}}


def requests_counted(snapshot: Snapshot, model: str) -> int:
    """Requests `model` has finished, successfully or not."""
    counters = snapshot.get(model, {})
    return counters.get("success", (0, 0))[0] + counters.get("fail", (0, 0))[0]


def settled_stats(url: str, protocol: str, model: str, expected: int, timeout_s: float = 10.0) -> Snapshot:
    """A snapshot taken once `model` has counted `expected` requests and nothing moves any more.

    Triton records a request in its statistics just AFTER the client has its response, so a snapshot taken at
    once can miss the last request of the previous point and give it to the next one. Gives up after `timeout_s`
    (a request that failed before reaching the model is never counted)."""
    deadline = time.monotonic() + timeout_s
    previous = None
    while True:
        snapshot = fetch_stats(url, protocol)
        if requests_counted(snapshot, model) >= expected and snapshot == previous:
            return snapshot
        if time.monotonic() > deadline:
            log.warning("%s has counted %d of %d requests after %.0f s; using that", model,
                        requests_counted(snapshot, model), expected, timeout_s)
            return snapshot
        previous = snapshot
        time.sleep(0.05)


def parse_stats(raw: Dict) -> Snapshot:
    """Counters per model (all versions summed) from the statistics JSON; gRPC's JSON spells int64 as strings."""
    snapshot: Snapshot = {}
    for model in raw.get("model_stats", []):
        counters = snapshot.setdefault(model["name"], {})
        stats = model.get("inference_stats", {})
        for name in ("success", "fail") + STAGES:
            entry = stats.get(name, {})
            previous = counters.get(name, (0, 0))
            counters[name] = (previous[0] + int(entry.get("count", 0)), previous[1] + int(entry.get("ns", 0)))
        previous = counters.get("executions", (0, 0))
        counters["executions"] = (previous[0] + int(model.get("execution_count", 0)), 0)
    return snapshot


def stats_delta(before: Snapshot, after: Snapshot) -> Dict[str, Dict]:
    """Per model that ran in between: requests, failures, executions (batches) and each stage's total seconds and
    mean milliseconds per request."""
    delta = {}
    for model, counters in sorted(after.items()):
        old = before.get(model, {})

        def diff(name: str) -> Tuple[int, int]:
            count, ns = counters.get(name, (0, 0))
            old_count, old_ns = old.get(name, (0, 0))
            return count - old_count, ns - old_ns

        requests, failures = diff("success")[0], diff("fail")[0]
        if requests == 0 and failures == 0:
            continue
        row = {"requests": requests, "failures": failures, "executions": diff("executions")[0]}
        for stage in STAGES:
            count, ns = diff(stage)
            row[f"{stage}_total_s"] = ns / 1e9
            row[f"{stage}_ms"] = ns / 1e6 / count if count else 0.0
        delta[model] = row
    return delta


# ---- memory of the server's process tree ---------------------------------------------------------------------------
def tree_rss(pid: int) -> Tuple[int, int]:
    """(summed RSS in bytes, number of processes) of `pid` and all its descendants; (0, 0) once it is gone."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0
    total, alive = 0, 0
    for process in processes:
        try:
            total += process.memory_info().rss
            alive += 1
        except psutil.NoSuchProcess:  # a stub that exited between the listing and the read
            pass
    return total, alive


@dataclass
class MemorySampler:
    """Polls `tree_rss(pid)` every `interval_s` on a daemon thread; `window()` returns the peak since the last
    call (one sweep point), `peak_bytes` the peak since `start()`."""

    pid: int
    interval_s: float = 0.2
    peak_bytes: int = 0
    peak_processes: int = 0
    peak_at: float = 0.0  # time.time() of the peak: to find it in the command's own log
    _window_bytes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: Optional[threading.Thread] = None

    def sample(self) -> None:
        rss, processes = tree_rss(self.pid)
        if rss > self.peak_bytes:
            self.peak_bytes, self.peak_processes, self.peak_at = rss, processes, time.time()
        self._window_bytes = max(self._window_bytes, rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def start(self) -> "MemorySampler":
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def window(self) -> int:
        self.sample()
        peak, self._window_bytes = self._window_bytes, 0
        return peak

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
