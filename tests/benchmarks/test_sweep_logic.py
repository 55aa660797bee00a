"""The benchmark harness's pure pieces, without a server: statistics deltas, latency summaries, parity, reports."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks import report, served, sweep

RAW_BEFORE = {"model_stats": [
    {"name": "text2music", "version": "1", "execution_count": 2, "inference_stats": {
        "success": {"count": 2, "ns": 2_000_000_000}, "fail": {"count": 0, "ns": 0},
        "queue": {"count": 2, "ns": 2_000_000}, "compute_input": {"count": 2, "ns": 1_000_000},
        "compute_infer": {"count": 2, "ns": 1_900_000_000}, "compute_output": {"count": 2, "ns": 1_000_000}}},
    {"name": "audioldm_vocoder", "version": "1", "execution_count": 0, "inference_stats": {}},
]}
# gRPC's JSON: int64 as strings; a model that ran nothing since `before` must not appear in the delta.
RAW_AFTER = {"model_stats": [
    {"name": "text2music", "version": "1", "execution_count": "5", "inference_stats": {
        "success": {"count": "5", "ns": "8000000000"}, "fail": {"count": "1", "ns": "1000"},
        "queue": {"count": "6", "ns": "14000000"}, "compute_input": {"count": "5", "ns": "4000000"},
        "compute_infer": {"count": "5", "ns": "7900000000"}, "compute_output": {"count": "5", "ns": "4000000"}}},
    {"name": "audioldm_vocoder", "version": "1", "execution_count": "0", "inference_stats": {}},
]}


def test_stats_delta_is_per_stage_and_per_request():
    delta = served.stats_delta(served.parse_stats(RAW_BEFORE), served.parse_stats(RAW_AFTER))
    assert list(delta) == ["text2music"]
    row = delta["text2music"]
    assert (row["requests"], row["failures"], row["executions"]) == (3, 1, 3)
    assert row["queue_ms"] == pytest.approx(12 / 4)  # 12 ms over the 4 queued requests
    assert row["compute_infer_ms"] == pytest.approx(6000 / 3)
    assert row["compute_infer_total_s"] == pytest.approx(6.0)


def test_stats_of_several_versions_are_summed():
    raw = {"model_stats": [dict(RAW_BEFORE["model_stats"][0], version=v) for v in ("1", "2")]}
    assert served.parse_stats(raw)["text2music"]["success"] == (4, 4_000_000_000)


def test_latency_summary():
    summary = served.latency_summary([float(v) for v in range(1, 101)])
    assert (summary["p50_s"], summary["min_s"], summary["max_s"]) == (50.5, 1.0, 100.0)
    assert summary["p90_s"] == pytest.approx(90.1) and summary["p99_s"] == pytest.approx(99.01)
    assert served.latency_summary([])["p50_s"] is None


def test_tree_rss_counts_the_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while served.tree_rss(os.getpid())[1] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        rss, processes = served.tree_rss(os.getpid())
        assert processes >= 2 and rss > served.tree_rss(child.pid)[0] > 0
        sampler = served.MemorySampler(os.getpid(), interval_s=0.01).start()
        time.sleep(0.05)
        assert sampler.window() > 0 and sampler.peak_bytes >= rss // 2
        sampler.stop()
    finally:
        child.kill()
        child.wait()
    assert served.tree_rss(child.pid) == (0, 0)


def test_served_models_are_summarised_by_configuration():
    http = {"instance_group": [{"kind": "KIND_CPU", "count": 2}], "dynamic_batching": {},
            "parameters": {"backend": {"string_value": "paddle"}}}
    assert served.describe_config(http) == {"instances": 2, "dynamic_batching": True, "parameters": {"backend": "paddle"}}
    models = {"unet": served.describe_config(http), "vae": served.describe_config(http),
              "text2music": served.describe_config({"instance_group": [{"count": 1}]})}
    assert report._served_models(models) == ("unet, vae: 2 instances, dynamic batching, backend=paddle; "
                                             "text2music: 1 instance")


def test_max_abs_diff():
    a = np.array([0.0, 1.0, -1.0], np.float32)
    assert sweep.max_abs_diff(a, a + np.float32(0.5)) == pytest.approx(0.5)
    assert sweep.max_abs_diff(a, a[:2]) is None and sweep.max_abs_diff(a, None) is None


def test_quick_defaults_yield_to_explicit_flags():
    args = sweep.parse_args(["--quick", "--concurrency", "3"])
    assert args.concurrency == [3] and args.steps == 2 and args.name == "sweep-quick"
    assert args.image2music_modes == ["onnxruntime"] and args.text2music_modes == ["eager", "onnxruntime", "paddle"]
    assert sweep.requests_at(args, 3) == 2
    full = sweep.parse_args([])
    assert full.concurrency == [1, 2, 4, 8, 16] and sweep.requests_at(full, 16) == 32 and sweep.requests_at(full, 1) == 4


def fake_result():
    point = {"pipeline": "text2music", "protocol": "http", "concurrency": 1, "requests": 2, "ok": 2, "failed": 0,
             "errors": [], "wall_s": 1.0, "throughput_rps": 2.0, **served.latency_summary([0.4, 0.6]),
             "server_peak_rss_mb": 500.0,
             "stages": served.stats_delta(served.parse_stats(RAW_BEFORE), served.parse_stats(RAW_AFTER))}
    audio = np.zeros(4, np.float32)
    warmups = [{"pipeline": "text2music", "protocol": "http", "latency_s": 0.5, "error": None, "audio": audio}]
    local = [{"pipeline": "text2music", "kind": "eager", "median_s": 2.0, "peak_rss_mb": 900.0, "audio": audio + 1e-7,
              "warm_up_only": False}]
    return {"name": "fake", "started": "now", "command": "python benchmarks/sweep.py", "note": "shared machine",
            "git": {"commit": "abc", "dirty": True}, "machine": report.machine(),
            "settings": {"repository": "repo", "num_inference_steps": 2, "audio_length_in_s": 1.0, "guidance_scale": 2.5,
                         "seed": 120},
            "points": [point], "side_by_side": sweep.side_by_side(["text2music"], local, warmups, [point]),
            "server_peak_rss_mb": 600.0, "server_peak_processes": 6, "local": local, "warmups": warmups}


def test_side_by_side_compares_with_the_served_reference():
    rows = fake_result()["side_by_side"]
    assert [r["mode"] for r in rows] == ["served http", "eager"]
    assert rows[0]["latency_s"] == 0.5 and rows[0]["max_abs_diff"] == 0.0
    assert rows[1]["max_abs_diff"] == pytest.approx(1e-7) and rows[1]["samples"] == 4


def test_reports_are_written_and_well_formed(tmp_path):
    paths = sweep.write_reports(fake_result(), tmp_path, "fake")
    data = json.loads(paths[0].read_text())
    assert "\"audio\":" not in json.dumps(data) and data["side_by_side"][1]["mode"] == "eager"
    text = paths[1].read_text()
    assert "| text2music | eager | 2,000 | 900 | 0.25× | 4 | 1.0e-07 | – |" in text
    assert "| text2music | http | 1 | 2 (2) | 500 | 580 | 598 | 2.00 | 500 |" in text
    assert "> shared machine" in text and "with uncommitted changes" in text
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eager_weights_must_be_the_repositorys(model_repository, tiny_weights, tmp_path):
    base = ["--repository", str(model_repository), "--pipelines", "text2music"]
    sweep.check_weights(sweep.parse_args(base + ["--weights", str(tiny_weights)]))
    with pytest.raises(SystemExit, match="not a save_pretrained folder"):
        sweep.check_weights(sweep.parse_args(base + ["--weights", str(tmp_path)]))
    other = tmp_path / "other"
    for config in tiny_weights.glob("*/config.json"):
        (other / config.parent.name).mkdir(parents=True)
        (other / config.parent.name / "config.json").write_text(config.read_text())
    (other / "model_index.json").write_text("{}")
    unet = json.loads((other / "unet" / "config.json").read_text())
    (other / "unet" / "config.json").write_text(json.dumps(dict(unet, in_channels=unet["in_channels"] + 1)))
    with pytest.raises(SystemExit, match="not what .* was exported from"):
        sweep.check_weights(sweep.parse_args(base + ["--weights", str(other)]))
    sweep.check_weights(sweep.parse_args(base + ["--weights", str(other), "--text2music-modes", "onnxruntime"]))


def test_settled_stats_waits_for_the_last_request_to_be_counted(monkeypatch):
    def counted(n):
        return {"text2music": {"success": (n, n * 10), "fail": (0, 0)}}

    answers = iter([counted(1), counted(2), counted(2)])
    monkeypatch.setattr(served, "fetch_stats", lambda url, protocol: next(answers))
    assert served.settled_stats("url", "http", "text2music", expected=2) == counted(2)
    monkeypatch.setattr(served, "fetch_stats", lambda url, protocol: counted(1))
    assert served.settled_stats("url", "http", "text2music", expected=2, timeout_s=0.1) == counted(1)


def test_engine_split_comes_from_the_metrics_port():
    before = served.parse_engine(
        '# TYPE musicgen_stage_seconds histogram\n'
        'musicgen_stage_seconds_count{model="text2music",stage="audioldm_unet"} 10\n'
        'musicgen_stage_seconds_sum{model="text2music",stage="audioldm_unet"} 5\n'
        'musicgen_batch_size_sum{model="text2music",stage="audioldm_unet"} 10\n'
        'nv_inference_count{model="text2music",version="1"} 3\n')
    after = served.parse_engine(
        'musicgen_stage_seconds_count{model="text2music",stage="audioldm_unet"} 14\n'
        'musicgen_stage_seconds_sum{model="text2music",stage="audioldm_unet"} 7\n'
        'musicgen_batch_size_sum{model="text2music",stage="audioldm_unet"} 22\n'
        'musicgen_stage_seconds_count{model="text2music",stage="audioldm_vocoder"} 1\n'
        'musicgen_stage_seconds_sum{model="text2music",stage="audioldm_vocoder"} 0.5\n'
        'musicgen_batch_size_sum{model="text2music",stage="audioldm_vocoder"} 3\n')
    assert served.engine_delta(before, after) == {
        "audioldm_unet": {"calls": 4, "ms_per_call": 500.0, "requests_per_call": 3.0},
        "audioldm_vocoder": {"calls": 1, "ms_per_call": 500.0, "requests_per_call": 3.0}}
