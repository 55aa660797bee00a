"""Soak: a bounded run of mixed requests against one server, counting how every single one ended.

    python benchmarks/soak.py                                  # 600 requests at concurrency 8 (the README's run)
    python benchmarks/soak.py --requests 60 --name soak-short  # what tests/e2e/test_soak.py runs, in process

Starts tritonserver over --repository on free loopback ports (or uses --http-url/--grpc-url, --server-pid), then
keeps --concurrency requests in flight until --requests have ended. The mix, drawn from --seed:
- text2music: varied prompts, steps, lengths, guidance and seeds, over HTTP and gRPC;
- image2music: a different valid PNG/JPEG per request (tests/images.py), varied seeds;
- bad: the end-to-end batteries' bad inputs (tests/cases.py), each expected to get a 400 naming its field;
- cancelled: gRPC text2music too long to finish, ended by a short deadline or by `ctx.cancel()`.

Every request ends in exactly one outcome (OUTCOMES). Expected: `ok` (a valid request whose audio has the asked
length and only finite values), `rejected` (a bad input's 400 naming the field), `cancelled` (CANCELLED or
DEADLINE_EXCEEDED for a request meant to be cancelled), `finished` (a request meant to be cancelled that
answered first, its audio checked), `shed` (503/UNAVAILABLE: a full engine queue). Failures: `unexpected_5xx`,
`wrong` (audio of the wrong length or not finite, a bad input accepted or refused for another reason) and `lost`
(no answer from the server: a timeout, a broken connection, a callback that never came).

Writes <out-dir>/<name>.json and .md: counts per outcome and per kind, latency percentiles, the RSS of the server's
process tree (tritonserver + stubs) at start, peak and end and every tenth of the run, and the watchdog's repairs.
Exit status 1 on any failure, or when the RSS grew more than --max-rss-growth-mb. No timing is judged.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import logging
import shlex
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# Runs from a plain checkout as a script; the bad inputs and images are the test batteries' own (tests/).
sys.path[:0] = [str(ROOT), str(ROOT / "client"), str(ROOT / "tests")]

import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from benchmarks import report, served  # noqa: E402
from cases import BAD_IMAGES, TEXT2MUSIC_BAD_FIELDS, TEXT2MUSIC_MALFORMED, arrays_of  # noqa: E402
from images import varied_image  # noqa: E402
from musicgen_client import interface as api  # noqa: E402

log = logging.getLogger("benchmarks.soak")

KINDS = ("text2music", "image2music", "bad", "cancelled")
EXPECTED = ("ok", "rejected", "cancelled", "finished", "shed")
FAILURES = ("unexpected_5xx", "wrong", "lost")
OUTCOMES = EXPECTED + FAILURES
LIBS = {"http": httpclient, "grpc": grpcclient}
STATUS_400 = ("400", "StatusCode.INVALID_ARGUMENT")
STATUS_503 = ("503", "StatusCode.UNAVAILABLE")
STATUS_CANCELLED = ("StatusCode.CANCELLED", "StatusCode.DEADLINE_EXCEEDED")
PROMPTS = ("a calm piano melody", "fast drums", "rain on a tin roof", "an orchestra tuning", "birdsong at dawn",
           "jazz trio", "a choir in a cathedral", "lo-fi beats", "a lone violin", "electronic dance music")
LENGTHS_S = (0.5, 1.0, 1.5, 2.0)  # on the 10 ms mel grid: the clip must come back exactly length × rate long


@dataclass
class Request:
    """One request of the plan: what to send, how, and what must come back."""

    index: int
    kind: str
    protocol: str
    model: str
    arrays: Dict[str, np.ndarray]
    length_s: Optional[float] = None  # valid requests: the audio length asked
    message: Optional[str] = None  # bad inputs: what the 400 must say
    cancel_after_s: Optional[float] = None  # cancelled: ctx.cancel() after this (gRPC async)
    deadline_s: Optional[float] = None  # cancelled: the gRPC client_timeout


@dataclass
class Ended:
    """How one request ended."""

    index: int
    kind: str
    protocol: str
    outcome: str
    latency_s: float
    detail: str = ""


# ---- the plan ----------------------------------------------------------------------------------------------------
def kind_counts(requests: int, image_share: float, bad_share: float, cancel_share: float) -> Dict[str, int]:
    """How many requests of each kind; text2music takes what the shares leave."""
    counts = {"image2music": round(requests * image_share), "bad": round(requests * bad_share),
              "cancelled": round(requests * cancel_share)}
    counts["text2music"] = requests - sum(counts.values())
    if counts["text2music"] < 0:
        raise ValueError("the image, bad and cancel shares add up to more than 1")
    return counts


def audio_fields(rng: np.random.Generator, steps: Tuple[int, int], lengths=LENGTHS_S) -> Dict:
    return dict(num_inference_steps=int(rng.integers(steps[0], steps[1] + 1)),
                audio_length_in_s=float(rng.choice(lengths)), guidance_scale=float(rng.choice([1.0, 2.5, 4.0])),
                seed=int(rng.integers(0, 2**62)))


def bad_requests() -> List[Tuple[str, Dict[str, np.ndarray], str]]:
    """(model, tensors, message of the 400) for every bad input of the end-to-end batteries."""
    cases = [(api.TEXT2MUSIC, arrays_of(dict(prompt=PROMPTS[0], **fields)), message)
             for fields, message in TEXT2MUSIC_BAD_FIELDS]
    cases += [(api.TEXT2MUSIC, raw, message) for raw, message in TEXT2MUSIC_MALFORMED]
    cases += [(api.IMAGE2MUSIC, {api.IMAGE: np.array([data], dtype=object)}, message) for data, message in BAD_IMAGES]
    return cases


def plan(requests: int, seed: int, image_share: float, bad_share: float, cancel_share: float,
         max_steps: int = 4) -> List[Request]:
    """The whole run, drawn from `seed`: the kinds shuffled, each request's inputs varied."""
    rng = np.random.default_rng(seed)
    counts = kind_counts(requests, image_share, bad_share, cancel_share)
    kinds = [kind for kind in KINDS for _ in range(counts[kind])]
    rng.shuffle(kinds)
    bad = bad_requests()
    out: List[Request] = []
    for index, kind in enumerate(kinds):
        protocol = str(rng.choice(["http", "grpc"]))
        if kind == "text2music":
            fields = dict(prompt=f"{rng.choice(PROMPTS)} #{index}", **audio_fields(rng, (1, max_steps)))
            if rng.random() < 0.5:
                fields["negative_prompt"] = "low quality"
            out.append(Request(index, kind, protocol, api.TEXT2MUSIC, arrays_of(fields), fields["audio_length_in_s"]))
        elif kind == "image2music":
            fields = audio_fields(rng, (1, 2), lengths=(0.5, 1.0))
            arrays = {api.IMAGE: np.array([varied_image(seed * 100_003 + index)], dtype=object),
                      **arrays_of(fields, api.IMAGE2MUSIC_INPUTS)}
            out.append(Request(index, kind, protocol, api.IMAGE2MUSIC, arrays, fields["audio_length_in_s"]))
        elif kind == "bad":
            model, arrays, message = bad[sum(r.kind == "bad" for r in out) % len(bad)]  # the battery in turn
            out.append(Request(index, kind, protocol, model, arrays, message=message))
        else:  # far more steps than it is given time for: the server must stop it at its next step
            fields = dict(prompt=f"{rng.choice(PROMPTS)} #{index}", **audio_fields(rng, (400, 500)))
            wait = float(rng.uniform(0.05, 0.3))
            by_cancel = rng.random() < 0.5
            out.append(Request(index, kind, "grpc", api.TEXT2MUSIC, arrays_of(fields), fields["audio_length_in_s"],
                               cancel_after_s=wait if by_cancel else None, deadline_s=None if by_cancel else wait))
    return out


# ---- sending one request and judging its end ----------------------------------------------------------------------
def inputs_of(lib, arrays: Dict[str, np.ndarray]) -> list:
    types = {np.dtype(object): "BYTES", np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32",
             np.dtype(np.int64): "INT64"}
    tensors = []
    for name, array in arrays.items():
        tensor = lib.InferInput(name, list(array.shape), types[array.dtype])
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def check_audio(request: Request, result) -> str:
    """'' when the answer is right for a valid request, else what is wrong."""
    audio, rate = result.as_numpy(api.AUDIO), int(result.as_numpy(api.SAMPLING_RATE)[0])
    expected = round(request.length_s * rate)
    if audio.shape != (expected,):
        return f"audio shape {audio.shape}, asked {request.length_s} s = {expected} samples"
    if not np.isfinite(audio).all():
        return f"{int((~np.isfinite(audio)).sum())} non-finite samples"
    if request.arrays.get(api.SEED) is not None and int(result.as_numpy(api.SEED)[0]) != int(request.arrays[api.SEED][0]):
        return "another seed came back"
    return ""


def judge_answer(request: Request, result) -> Tuple[str, str]:
    if request.kind == "bad":
        return "wrong", f"a bad input was accepted (expected 400: {request.message})"
    problem = check_audio(request, result)
    if problem:
        return "wrong", problem
    if request.kind == "cancelled":
        return "finished", f"answered before its {'cancel' if request.cancel_after_s is not None else 'deadline'}"
    return "ok", ""


def judge_error(request: Request, exc: InferenceServerException) -> Tuple[str, str]:
    status, message = str(exc.status()), exc.message() or ""
    detail = f"{status}: {message[:300]}"
    if status in STATUS_503:
        return "shed", detail
    if status in STATUS_CANCELLED:
        return ("cancelled", detail) if request.kind == "cancelled" else ("lost", detail)
    if request.kind == "bad" and status in STATUS_400:
        return ("rejected", "") if request.message in message else ("wrong", f"400 without '{request.message}': {detail}")
    if status.startswith("5") or status in ("StatusCode.INTERNAL", "StatusCode.UNKNOWN", "StatusCode.UNIMPLEMENTED"):
        return "unexpected_5xx", detail
    return "wrong", detail


def send(clients: Dict[str, object], request: Request, timeout_s: float) -> Tuple[str, str]:
    """Send `request` on this thread's client and judge how it ended: (outcome, detail)."""
    client = clients[request.protocol]
    lib = LIBS[request.protocol]
    inputs = inputs_of(lib, request.arrays)
    try:
        if request.cancel_after_s is not None:
            return send_and_cancel(client, request, inputs, timeout_s)
        options = {"client_timeout": request.deadline_s or timeout_s} if request.protocol == "grpc" else {}
        result = client.infer(request.model, inputs, **options)
    except InferenceServerException as exc:
        if request.protocol == "http" and not exc.status():  # the HTTP client's own timeout or broken connection
            return "lost", f"no answer: {exc}"
        return judge_error(request, exc)
    except Exception as exc:  # noqa: BLE001 - whatever it is, the request got no answer
        return "lost", f"{type(exc).__name__}: {exc}"
    return judge_answer(request, result)


def send_and_cancel(client, request: Request, inputs: list, timeout_s: float) -> Tuple[str, str]:
    """gRPC async_infer, ctx.cancel() after request.cancel_after_s; the callback must still come."""
    ended = threading.Event()
    answer: Dict[str, object] = {}

    def callback(result, error):  # tritonclient calls it with keyword arguments
        answer.update(result=result, error=error)
        ended.set()

    context = client.async_infer(request.model, inputs, callback, client_timeout=timeout_s)
    if not ended.wait(request.cancel_after_s):
        context.cancel()
    if not ended.wait(timeout_s):
        return "lost", f"no callback {timeout_s:g} s after cancelling"
    if answer["error"] is not None:
        return judge_error(request, answer["error"])
    return judge_answer(request, answer["result"])


# ---- the run ---------------------------------------------------------------------------------------------------------
@dataclass
class RssTimeline:
    """The server tree's RSS at the start, at every tenth of the requests ended, and at the end."""

    pid: Optional[int]
    points: List[Dict] = field(default_factory=list)

    def take(self, ended: int) -> None:
        if self.pid:
            self.points.append({"ended": ended, "rss_bytes": served.tree_rss(self.pid)[0]})


def run(urls: Dict[str, str], pid: Optional[int], requests: List[Request], concurrency: int,
        timeout_s: float, on_end: Callable[[Ended], None] = lambda ended: None) -> Dict:
    """Send every request of the plan, `concurrency` at a time; how each ended and what the server's memory did."""
    per_thread = threading.local()
    opened: List[object] = []
    lock = threading.Lock()

    def one(request: Request) -> Ended:
        clients = getattr(per_thread, "clients", None)
        if clients is None:  # one client per protocol and thread, reused
            clients = per_thread.clients = {
                "http": httpclient.InferenceServerClient(urls["http"], connection_timeout=timeout_s,
                                                         network_timeout=timeout_s),
                "grpc": grpcclient.InferenceServerClient(urls["grpc"])}
            with lock:
                opened.extend(clients.values())
        start = time.perf_counter()
        outcome, detail = send(clients, request, timeout_s)
        return Ended(request.index, request.kind, request.protocol, outcome, time.perf_counter() - start, detail)

    sampler = served.MemorySampler(pid).start() if pid else None
    timeline = RssTimeline(pid)
    timeline.take(0)
    results: List[Ended] = []
    tenth = max(1, len(requests) // 10)
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for done, future in enumerate(concurrent.futures.as_completed([pool.submit(one, r) for r in requests]), 1):
            ended = future.result()
            results.append(ended)
            on_end(ended)
            if ended.outcome in FAILURES:
                log.warning("request %d (%s/%s): %s: %s", ended.index, ended.kind, ended.protocol, ended.outcome,
                            ended.detail)
            if done % tenth == 0 or done == len(requests):
                timeline.take(done)
                log.info("%d/%d ended: %s", done, len(requests), count(results, "outcome"))
    wall = time.perf_counter() - start
    if sampler:
        sampler.stop()
    for client in opened:
        client.close()
    return summarise(results, wall, timeline, sampler.peak_bytes if sampler else None)


def count(results: List[Ended], key: str) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for ended in results:
        counts[getattr(ended, key)] = counts.get(getattr(ended, key), 0) + 1
    return counts


def summarise(results: List[Ended], wall_s: float, timeline: RssTimeline, peak_bytes: Optional[int]) -> Dict:
    outcomes = {outcome: 0 for outcome in OUTCOMES}
    outcomes.update(count(results, "outcome"))
    by_kind = {kind: {o: n for o, n in count([e for e in results if e.kind == kind], "outcome").items()}
               for kind in KINDS}
    latency = {f"{kind}/{outcome}": served.latency_summary([e.latency_s for e in results
                                                             if e.kind == kind and e.outcome == outcome])
               for kind in KINDS for outcome in by_kind[kind]}
    rss = [p["rss_bytes"] for p in timeline.points]
    memory = ({"start_bytes": rss[0], "peak_bytes": max([peak_bytes or 0] + rss), "end_bytes": rss[-1],
               "growth_bytes": rss[-1] - rss[0], "timeline": timeline.points} if rss else None)
    return {"requests": len(results), "wall_s": wall_s, "outcomes": outcomes, "by_kind": by_kind,
            "failures": sum(outcomes[o] for o in FAILURES),
            "failed": [vars(e) for e in results if e.outcome in FAILURES],
            "ended": [[e.index, e.kind, e.protocol, e.outcome, round(e.latency_s, 4), e.detail[:120]]
                      for e in sorted(results, key=lambda e: e.index)],
            "latency": latency, "server_rss": memory}


# ---- server, reports, command line -----------------------------------------------------------------------------
@contextmanager
def endpoints(args: argparse.Namespace) -> Iterator[Tuple[Dict[str, str], Optional[int], object]]:
    """({protocol: url}, server pid, the TritonServer or None): one started here, or the one given."""
    if args.http_url or args.grpc_url:
        if not (args.http_url and args.grpc_url):
            raise SystemExit("give both --http-url and --grpc-url")
        yield {"http": args.http_url, "grpc": args.grpc_url}, args.server_pid, None
        return
    with served.started_server(args.repository, ROOT / "build", "soak") as server:
        yield {"http": server.http_url, "grpc": server.grpc_url}, server.process.pid, server


def still_serving(urls: Dict[str, str]) -> str:
    """'' when the server is ready and answers a fresh text2music request with good audio after the soak."""
    probe = Request(-1, "text2music", "http", api.TEXT2MUSIC,
                    arrays_of(dict(prompt=PROMPTS[0], num_inference_steps=2, audio_length_in_s=1.0, seed=1)), 1.0)
    client = httpclient.InferenceServerClient(urls["http"])
    try:
        if not client.is_server_ready():
            return "server not ready after the soak"
        return check_audio(probe, client.infer(probe.model, inputs_of(httpclient, probe.arrays)))
    except InferenceServerException as exc:
        return f"probe after the soak failed: {exc}"
    finally:
        client.close()


def _mb(value: Optional[int]) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


def _s(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def markdown(result: Dict) -> str:
    summary = result["summary"]
    lines = [f"# Soak: {result['name']}", "", f"`{result['command']}`", "",
             f"{result['started']} → {result['finished']}, commit {result['git'].get('commit')}"
             f"{' (dirty)' if result['git'].get('dirty') else ''}; {result['machine'].get('cpu')}. {result['note']}", "",
             f"{summary['requests']} requests at concurrency {result['settings']['concurrency']} in "
             f"{summary['wall_s']:.0f} s: **{summary['failures']} failed** (lost, unexpected 5xx or wrong); "
             f"after the soak: {result['after'] or 'ready, and a fresh request got good audio'}.", "",
             "| kind | " + " | ".join(OUTCOMES) + " |", "|---|" + "---:|" * len(OUTCOMES)]
    for kind in KINDS:
        row = summary["by_kind"][kind]
        lines.append(f"| {kind} | " + " | ".join(str(row.get(o, 0)) for o in OUTCOMES) + " |")
    lines.append("| **all** | " + " | ".join(str(summary["outcomes"][o]) for o in OUTCOMES) + " |")
    lines += ["", "| kind/outcome | n | p50 s | p90 s | p99 s | max s |", "|---|---:|---:|---:|---:|---:|"]
    for key, stats in summary["latency"].items():
        kind, outcome = key.split("/")
        lines.append(f"| {key} | {summary['by_kind'][kind][outcome]} | {_s(stats['p50_s'])} | {_s(stats['p90_s'])} | "
                     f"{_s(stats['p99_s'])} | {_s(stats['max_s'])} |")
    memory = summary["server_rss"]
    if memory:
        lines += ["", f"Server process tree RSS (tritonserver + stubs, summed; shared pages counted per process): "
                      f"start {_mb(memory['start_bytes'])} MB, peak {_mb(memory['peak_bytes'])} MB, end "
                      f"{_mb(memory['end_bytes'])} MB (growth {_mb(memory['growth_bytes'])} MB). By requests ended: "
                  + ", ".join(f"{p['ended']}: {_mb(p['rss_bytes'])}" for p in memory["timeline"]) + " MB."]
    if result["watchdog_repairs"] is not None:
        lines += ["", f"Watchdog repairs during the soak: {result['watchdog_repairs']}."]
    if summary["failed"]:
        lines += ["", "Failures:", ""] + [f"- #{e['index']} {e['kind']}/{e['protocol']}: {e['outcome']}: {e['detail']}"
                                          for e in summary["failed"][:50]]
    return "\n".join(lines) + "\n"


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="draws the mix and every request's inputs")
    parser.add_argument("--image-share", type=float, default=0.1, help="share of image2music requests")
    parser.add_argument("--bad-share", type=float, default=0.15, help="share of bad inputs (expected 400)")
    parser.add_argument("--cancel-share", type=float, default=0.1, help="share of cancelled gRPC requests")
    parser.add_argument("--max-steps", type=int, default=4, help="text2music steps are drawn from 1 to this")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds a valid request may take before it counts as lost")
    parser.add_argument("--max-rss-growth-mb", type=float, default=None,
                        help="fail when the server tree's RSS grew more than this from start to end")
    parser.add_argument("--repository", type=Path, default=ROOT / "build" / "model_repository")
    parser.add_argument("--http-url", help="use this server instead of starting one (with --grpc-url)")
    parser.add_argument("--grpc-url")
    parser.add_argument("--server-pid", type=int, help="the given server's pid, for its memory")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="soak-cpu-tiny")
    parser.add_argument("--note", default="Shared machine (2 cores, other agents running): timings are noisy.")
    args = parser.parse_args(argv)
    kind_counts(args.requests, args.image_share, args.bad_share, args.cancel_share)  # fails early on bad shares
    return args


def soak(args: argparse.Namespace, urls: Dict[str, str], pid: Optional[int], server=None) -> Dict:
    """One soak over a running server: the plan, the run, the check after it; the whole result."""
    repairs_before = len(server.watchdog.repairs) if server is not None and server.watchdog else None
    requests = plan(args.requests, args.seed, args.image_share, args.bad_share, args.cancel_share, args.max_steps)
    warm = still_serving(urls)  # warms the engine up, so the RSS start is a served server's, and fails early
    if warm:
        raise RuntimeError(f"the server does not serve before the soak: {warm}")
    summary = run(urls, pid, requests, args.concurrency, args.timeout)
    repairs = len(server.watchdog.repairs) - repairs_before if repairs_before is not None else None
    return {"summary": summary, "after": still_serving(urls), "watchdog_repairs": repairs,
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}


def failed(result: Dict, max_rss_growth_mb: Optional[float]) -> List[str]:
    """Why the soak failed; empty when it passed."""
    reasons = [f"{n} {o}" for o, n in result["summary"]["outcomes"].items() if o in FAILURES and n]
    if result["after"]:
        reasons.append(result["after"])
    if result["watchdog_repairs"]:
        reasons.append(f"{result['watchdog_repairs']} watchdog repairs")
    memory = result["summary"]["server_rss"]
    if max_rss_growth_mb is not None and memory and memory["growth_bytes"] > max_rss_growth_mb * 2**20:
        reasons.append(f"server RSS grew {_mb(memory['growth_bytes'])} MB > {max_rss_growth_mb:g} MB")
    return reasons


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    command = shlex.join(["python", "benchmarks/soak.py", *(sys.argv[1:] if argv is None else argv)])
    with endpoints(args) as (urls, pid, server):
        result = soak(args, urls, pid, server)
    result = {"name": args.name, "started": started,
              "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": command, "git": report.git_state(), "machine": report.machine(), "note": args.note, **result}
    reasons = failed(result, args.max_rss_growth_mb)
    result["failed_because"] = reasons
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path, text in ((args.out_dir / f"{args.name}.json", json.dumps(result, indent=2, default=str) + "\n"),
                       (args.out_dir / f"{args.name}.md", markdown(result))):
        path.write_text(text)
        log.info("wrote %s", path)
    if reasons:
        log.error("soak failed: %s", "; ".join(reasons))
    return 1 if reasons else 0


if __name__ == "__main__":
    sys.exit(main())
