"""`make demo`: start tritonserver over the exported repository, make music through the client, print where.

    python -m musicgen.demo --repository build/model_repository --out build/demo

Text → music from a prompt, then image → music from a scene it draws (a sunset over the sea, written to the
output folder as PNG), both with the original application's example settings (negative prompt, 20 steps, 5 s,
seed 120). The server runs on free ports and is stopped afterwards; `make serve` keeps one running instead.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from musicgen_client import MusicClient, save_wav
from musicgen_client import interface as api

from .serving import TritonServer, TritonServerError, check_model_repository, free_ports

logger = logging.getLogger("musicgen.demo")

TEXT_PROMPT = "a calm piano melody with soft strings, peaceful and warm"
# The original PaddleMIX music-generation example's settings.
NEGATIVE_PROMPT = ("low quality, average quality, muffled quality, noise interference, poor and low-grade quality, "
                   "inaudible quality, low-fidelity quality")
SETTINGS = dict(negative_prompt=NEGATIVE_PROMPT, num_inference_steps=20, audio_length_in_s=5.0, seed=120)


def _short(text: str, limit: int = 100) -> str:
    """Long model output (the tiny random models ramble) shown as its start and its length."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} characters)"


def draw_scene(path: Path) -> Path:
    """A small sunset over the sea, drawn here so the demo needs no image files."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 240), (250, 170, 90))
    draw = ImageDraw.Draw(image)
    draw.ellipse((120, 90, 200, 170), fill=(255, 220, 120))
    draw.rectangle((0, 140, 320, 240), fill=(40, 80, 140))
    for y in range(150, 240, 12):
        draw.line((20, y, 300, y), fill=(90, 130, 190), width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


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
            image_result = None
            if client.health((api.IMAGE2MUSIC,)).ready:
                scene = draw_scene(out / "scene.png")
                logger.info("image → music: %s", scene)
                image_result = client.image_to_music(scene, **SETTINGS)
                image_wav = save_wav(out / "image2music.wav", image_result.audio, image_result.sampling_rate)
            else:
                logger.warning("image2music is not served by this repository: export minigpt4 and chatglm too")
    except TritonServerError as exc:
        logger.error("%s", exc)
        return 1
    finally:
        server.stop()

    print()
    print(f"text → music WAV:  {wav.resolve()}  ({result.duration_s:.2f} s at {result.sampling_rate} Hz, "
          f"seed {result.seed})")
    if image_result is not None:
        print(f"image → music from {scene.resolve()}:")
        print(f"  caption:      {_short(image_result.caption)}")
        print(f"  music prompt: {_short(image_result.music_prompt)}")
        print(f"  WAV:          {image_wav.resolve()}  ({image_result.duration_s:.2f} s, seed {image_result.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
