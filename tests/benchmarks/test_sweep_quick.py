"""`benchmarks/sweep.py --quick` end to end on the tiny models, so the harness cannot rot: it must start its server,
sweep both pipelines over both protocols, run every local mode, and write well-formed reports in which every
request succeeded and every mode rendered the served waveform. No timing is judged."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ["text2music", "image2music"]
PROTOCOLS = ["http", "grpc"]
PAIRS = 2
LOCAL_MODES = {"text2music": ["eager", "onnxruntime", "paddle"], "image2music": ["onnxruntime"]}  # --quick's

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def quick_run(model_repository, tiny_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    llm_weights = Path(model_repository).parent / "weights"
    cmd = [sys.executable, "benchmarks/sweep.py", "--quick", "--repository", str(model_repository),
           "--weights", str(tiny_weights), "--minigpt4-weights", str(llm_weights / "minigpt4-tiny"),
           "--chatglm-weights", str(llm_weights / "chatglm-tiny"), "--out-dir", str(out), "--note", "test run",
           "--paired", str(PAIRS)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n" + "\n".join(proc.stderr.splitlines()[-60:]),
                    pytrace=False)
    return out


def test_every_request_succeeded_at_every_point(quick_run):
    result = json.loads((quick_run / "sweep-quick.json").read_text())
    assert result["all_succeeded"] and result["failed_requests"] == 0
    assert all(w["error"] is None and w["latency_s"] > 0 for w in result["warmups"])
    points = {(p["pipeline"], p["protocol"], p["concurrency"]): p for p in result["points"]}
    assert set(points) == {(pl, pr, c) for pl in PIPELINES for pr in PROTOCOLS for c in (1, 2)}
    for (pipeline, _, _), point in points.items():
        assert point["requests"] == point["ok"] == 2 and point["failed"] == 0 and len(point["latencies_s"]) == 2
        assert point["p50_s"] > 0 and point["throughput_rps"] > 0 and point["server_peak_rss_mb"] > 0
        # Triton's own count over the point: exactly these requests reached the pipeline's model, then text2music.
        assert point["stages"][pipeline]["requests"] == 2 and point["stages"]["text2music"]["requests"] == 2
        # text2music runs the graphs in process: its engine's metrics count the UNet calls (one per step, each
        # carrying one or more requests).
        unet = point["engine"]["audioldm_unet"]
        assert unet["calls"] >= 2 and unet["requests_per_call"] >= 1


def test_local_modes_render_the_served_waveform(quick_run):
    result = json.loads((quick_run / "sweep-quick.json").read_text())
    assert {(r["pipeline"], r["kind"]) for r in result["local"]} == {(p, k) for p in PIPELINES for k in LOCAL_MODES[p]}
    assert all(r["median_s"] > 0 and r["peak_rss_mb"] > 0 for r in result["local"])
    rows = result["side_by_side"]
    assert len(rows) == len(PIPELINES) * len(PROTOCOLS) + sum(map(len, LOCAL_MODES.values()))
    for row in rows:  # same weights, seed, steps and length: the same waveform (eager vs ONNX: float rounding)
        assert row["latency_s"] > 0 and row["max_abs_diff"] is not None and row["max_abs_diff"] < 1e-4, row
        if row["pipeline"] == "image2music":
            assert row["same_texts"] is True, row


def test_reports_record_machine_commit_and_command(quick_run):
    result = json.loads((quick_run / "sweep-quick.json").read_text())
    assert result["machine"]["logical_cores"] >= 1 and result["machine"]["cpu"]
    assert len(result["git"]["commit"]) == 40
    assert result["command"].startswith("python benchmarks/sweep.py --quick")
    text = (quick_run / "sweep-quick.md").read_text()
    for heading in ("## Side by side", "## Concurrency sweep", "### Triton statistics: image2music over grpc"):
        assert heading in text
    assert result["git"]["commit"] in text and "> test run" in text
    unet = result["served_models"]["audioldm_unet"]
    assert unet["parameters"]["backend"] == "onnxruntime" and unet["instances"] >= 1  # the exported defaults
    assert (quick_run / "sweep-quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paired_requests_alternate_local_and_served(quick_run):
    """--paired: each local graph runtime against the served pipeline, pair by pair, in the reports."""
    result = json.loads((quick_run / "sweep-quick.json").read_text())
    runtimes = {(p, k) for p in PIPELINES for k in LOCAL_MODES[p] if k != "eager"}
    assert {(r["pipeline"], r["mode"]) for r in result["paired"]} == runtimes
    for row in result["paired"]:
        assert len(row["local_s"]) == len(row["served_s"]) == len(row["ratios"]) == PAIRS
        assert all(s > 0 for s in row["local_s"] + row["served_s"]) and row["protocol"] == PROTOCOLS[0]
        assert row["ratios"] == [s / l for l, s in zip(row["local_s"], row["served_s"])]
    assert "## Served against in process, request by request" in (quick_run / "sweep-quick.md").read_text()
