"""What every side of a benchmark renders: one request (prompt or image, AudioLDM options, seed), defined once.

The eager, in-process and served pipelines all get exactly this, so their latencies compare the same work
and their outputs can be compared sample for sample.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import Any, Dict

import numpy as np

from musicgen_client import interface as api

TEXT2MUSIC = api.TEXT2MUSIC
IMAGE2MUSIC = api.IMAGE2MUSIC
PIPELINES = (TEXT2MUSIC, IMAGE2MUSIC)

DEFAULT_PROMPT = "a calm piano melody with soft strings"
# The original application's example negative prompt (DESIGN.md).
DEFAULT_NEGATIVE_PROMPT = ("low quality, average quality, muffled quality, noise interference, poor and low-grade "
                           "quality, inaudible quality, low-fidelity quality")


def synthetic_image(width: int = 96, height: int = 64, seed: int = 0) -> bytes:
    """A PNG of seeded random pixels: no image file ships with the repository, and the tiny models see noise anyway."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@dataclass(frozen=True)
class Workload:
    """One request's inputs. `seed` is the reference seed (warm-up and parity); load requests add an offset."""

    prompt: str
    image: bytes
    negative_prompt: str
    num_inference_steps: int
    audio_length_in_s: float
    guidance_scale: float
    seed: int

    def audio_options(self, seed: int) -> Dict[str, Any]:
        """The AudioLDM options as keyword arguments (MusicClient's and AudioOptions' names are the same)."""
        return dict(negative_prompt=self.negative_prompt, num_inference_steps=self.num_inference_steps,
                    audio_length_in_s=self.audio_length_in_s, guidance_scale=self.guidance_scale, seed=seed)

    def with_prompt(self, prompt: str) -> "Workload":
        """The same request for another prompt (image2music renders the prompt its LLMs wrote)."""
        return replace(self, prompt=prompt)

    def describe(self) -> Dict[str, Any]:
        """JSON-friendly summary (the image as its size, not its bytes)."""
        return {"prompt": self.prompt, "image_bytes": len(self.image), **self.audio_options(self.seed)}
