"""`make demo`: start tritonserver over the exported repository, make music through the client, print where.

    python -m musicgen.demo --repository build/model_repository --out build/demo

Uses the original application's example settings (negative prompt, 20 steps, 5 s, seed 120). The server runs
on free ports and is stopped afterwards; `make serve` keeps one running instead.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from musicgen_client import MusicClient, save_wav

from .server import TritonServer, TritonServerError, check_model_repository, free_ports

logger = logging.getLogger("musicgen.demo")

TEXT_PROMPT = "a calm piano melody with soft strings, peaceful and warm"
# The original PaddleMIX music-generation example's settings.
NEGATIVE_PROMPT = ("low quality, average quality, muffled quality, noise interference, poor and low-grade quality, "
                   "inaudible quality, low-fidelity quality")
SETTINGS = dict(negative_prompt=NEGATIVE_PROMPT, num_inference_steps=20, audio_length_in_s=5.0, seed=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", default="build/model_repository")
    parser.add_argument("--out", default="build/demo", help="folder for the WAV files")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the server")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    repository = check_model_repository(Path(args.repository))
    out = Path(args.out)
    http_port, grpc_port, metrics_port = free_ports(3)
    server = TritonServer(repository, http_port, grpc_port, metrics_port, log_file=out / "tritonserver.log")
    logger.info("starting tritonserver over %s (log: %s)", repository, server.log_path)
    server.start()
    try:
        server.wait_until_ready(args.timeout)
        logger.info("server ready: HTTP %s, gRPC %s", server.http_url, server.grpc_url)
        with MusicClient(server.http_url, "http") as client:
            logger.info("text → music: %r", TEXT_PROMPT)
            result = client.text_to_music(TEXT_PROMPT, **SETTINGS)
        wav = save_wav(out / "text2music.wav", result.audio, result.sampling_rate)
    except TritonServerError as exc:
        logger.error("%s", exc)
        return 1
    finally:
        server.stop()

    print()
    print(f"text → music WAV: {wav.resolve()}  ({result.duration_s:.2f} s at {result.sampling_rate} Hz, "
          f"seed {result.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
