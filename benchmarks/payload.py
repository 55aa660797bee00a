"""Bytes on the wire for one clip: raw floats as JSON, raw floats as binary tensor data, and each file format.

    python benchmarks/payload.py                      # 5 s clip of the tiny repository → results/payload-cpu-tiny.*

Starts tritonserver over --repository on free loopback ports and asks text2music for the same clip (same prompt,
seed, steps) in every form. HTTP: the response body as `http.client` receives it (JSON header + binary part),
asking each output as JSON (`binary_data: false`) or as binary data (`true`, what tritonclient's HTTP client asks
by default); the JSON header's length (`Inference-Header-Content-Length`) separates the two. gRPC: the size of
the ModelInferResponse message (HTTP/2 framing not counted). Twice: the clip as generated, and peak-normalised
to -1 dBFS (`loudness=peak`): the tiny random models make noise near -63 dBFS, which FLAC packs into a few bits
per sample, while full-scale noise is the worst case of any lossless coder; real music falls in between.
No timing is taken. Writes <out-dir>/<name>.json and .md.
"""
from __future__ import annotations

import argparse
import http.client
import json
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "client")]

import numpy as np  # noqa: E402
import tritonclient.grpc as grpcclient  # noqa: E402

from benchmarks import served  # noqa: E402
from musicgen_client import interface as api  # noqa: E402
from musicgen_client.audio_encoding import AUDIO_FORMATS, RAW  # noqa: E402

log = logging.getLogger("benchmarks.payload")

PROMPT = "a calm piano melody"
LEVELS = {"as generated": {}, "peak -1 dBFS": {api.LOUDNESS: "peak"}}


def request_inputs(fields: Dict[str, object]) -> List[dict]:
    """KServe v2 JSON inputs for `fields` (interface names), datatypes from the interface."""
    datatypes = {spec.name: spec.datatype for spec in api.TEXT2MUSIC_INPUTS}
    return [{"name": name, "shape": [1], "datatype": datatypes[name], "data": [value]}
            for name, value in fields.items()]


def http_payload(host: str, port: int, fields: Dict[str, object], binary: bool) -> Dict[str, int]:
    """The response's body size, its JSON header's, and the audio output's own bytes."""
    audio = api.AUDIO if fields.get(api.AUDIO_FORMAT, RAW) == RAW else api.AUDIO_FILE
    body = json.dumps({"inputs": request_inputs(fields), "outputs": [
        {"name": name, "parameters": {"binary_data": binary}} for name in (audio, api.SAMPLING_RATE, api.SEED)]})
    connection = http.client.HTTPConnection(host, port, timeout=600)
    try:
        connection.request("POST", f"/v2/models/{api.TEXT2MUSIC}/infer", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        header_length = int(response.getheader("Inference-Header-Content-Length") or len(data))
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {data[:300]!r}")
    header = json.loads(data[:header_length])
    output = next(o for o in header["outputs"] if o["name"] == audio)
    own = output["parameters"]["binary_data_size"] if binary else len(json.dumps(output["data"]))
    return {"body": len(data), "json_header": header_length, "audio_output": own}


def grpc_payload(url: str, fields: Dict[str, object]) -> int:
    inputs = []
    for item in request_inputs(fields):
        tensor = grpcclient.InferInput(item["name"], [1], item["datatype"])
        value = item["data"][0]
        dtype = {"BYTES": object, "FP32": np.float32, "INT32": np.int32, "INT64": np.int64}[item["datatype"]]
        tensor.set_data_from_numpy(np.array([value.encode() if isinstance(value, str) else value], dtype=dtype))
        inputs.append(tensor)
    client = grpcclient.InferenceServerClient(url)
    try:
        return client.infer(api.TEXT2MUSIC, inputs, client_timeout=600).get_response().ByteSize()
    finally:
        client.close()


def measure(server, seconds: float, steps: int, seed: int) -> List[dict]:
    host, port = server.http_url.rsplit(":", 1)
    rows = []
    for level, level_fields in LEVELS.items():
        for audio_format in AUDIO_FORMATS:
            fields = {api.PROMPT: PROMPT, api.NUM_INFERENCE_STEPS: steps, api.AUDIO_LENGTH_IN_S: seconds,
                      api.SEED: seed, api.AUDIO_FORMAT: audio_format, **level_fields}
            row = {"level": level, "format": audio_format, "http_binary": http_payload(host, int(port), fields, True),
                   "grpc_message": grpc_payload(server.grpc_url, fields)}
            try:
                row["http_json"] = http_payload(host, int(port), fields, False)
            except (RuntimeError, ValueError) as exc:  # a file's bytes are not valid JSON text
                row["http_json"] = {"error": str(exc)[:200]}
            log.info("%s %s: %s", level, audio_format, row)
            rows.append(row)
    return rows


def markdown(rows: List[dict], seconds: float, steps: int) -> str:
    raw_binary = {row["level"]: row["http_binary"]["body"] for row in rows if row["format"] == RAW}
    lines = [f"# HTTP and gRPC payload of one {seconds:g} s text2music clip (16 kHz mono, {steps} steps, tiny models)",
             "", "| level | audio_format | HTTP body, JSON (binary_data false) | HTTP body, binary data "
             "(tritonclient's default) | of which the audio output | gRPC message | vs raw binary |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        as_json = row["http_json"].get("body")
        json_text = f"{as_json:,}" if as_json else "not JSON-safe (binary file bytes)"
        binary = row["http_binary"]
        lines.append(f"| {row['level']} | {row['format']} | {json_text} | {binary['body']:,} | "
                     f"{binary['audio_output']:,} | {row['grpc_message']:,} | "
                     f"{binary['body'] / raw_binary[row['level']]:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "build" / "model_repository")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=2, help="denoising steps: the size does not depend on them")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="payload-cpu-tiny")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with served.started_server(args.repository, ROOT / "build", args.name) as server:
        rows = measure(server, args.seconds, args.steps, args.seed)
    (args.out_dir / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
    text = markdown(rows, args.seconds, args.steps)
    (args.out_dir / f"{args.name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
