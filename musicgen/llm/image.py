"""MiniGPT4's image preprocessing on numpy and PIL alone: the pixel_values paddlenlp's MiniGPT4ImageProcessor
makes, without paddle.

The steps (paddlenlp 2.8.1 `MiniGPT4ImageProcessor.preprocess` with its `image_transforms` helpers):
decode → RGB → PIL resize with the configured filter → uint8 × rescale_factor (float64) → float32 →
(x − mean) / std in float32, channels last → channels first. The resize target is (width=size["height"],
height=size["width"]): the processor passes (width, height) where the helper expects (height, width). The
real checkpoints are square (224 × 224), where it makes no difference; it is reproduced for the rest.
Export writes the constants as `PREPROCESS_FILE` beside the image-encoder graph and the caption assets.
"""
from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Tuple, Union

import numpy as np

PREPROCESS_FILE = "image_preprocess.json"


class ImageDecodeError(ValueError):
    """The bytes are not an image PIL can read."""


@dataclass(frozen=True)
class ImagePreprocessConfig:
    size: Tuple[int, int]  # (height, width) as the processor config's `size` writes them
    resample: int  # a PIL.Image.Resampling value (3: bicubic)
    rescale_factor: float
    image_mean: Tuple[float, float, float]
    image_std: Tuple[float, float, float]
    do_convert_rgb: bool = True

    @classmethod
    def from_processor_config(cls, cfg: dict) -> "ImagePreprocessConfig":
        """From a `preprocessor_config.json` of MiniGPT4ImageProcessor (the steps it turns off are refused)."""
        for flag in ("do_resize", "do_rescale", "do_normalize"):
            if not cfg.get(flag, True):
                raise ValueError(f"preprocessor config sets {flag}=false: only the full MiniGPT4 preprocessing is supported")
        size = cfg.get("size", {"height": 224, "width": 224})
        return cls(
            size=(int(size["height"]), int(size["width"])), resample=int(cfg.get("resample", 3)),
            rescale_factor=float(cfg.get("rescale_factor", 1 / 255)),
            image_mean=tuple(cfg.get("image_mean", (0.48145466, 0.4578275, 0.40821073))),
            image_std=tuple(cfg.get("image_std", (0.26862954, 0.26130258, 0.27577711))),
            do_convert_rgb=bool(cfg.get("do_convert_rgb", True)),
        )

    @classmethod
    def load(cls, path: Path) -> "ImagePreprocessConfig":
        values = json.loads(Path(path).read_text())
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))


def open_image(data: Union[bytes, "PIL.Image.Image"]):
    """A PIL image from encoded bytes (PNG, JPEG, ...) or an image already decoded."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(data, Image.Image):
        return data
    try:
        image = Image.open(io.BytesIO(bytes(data)))
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageDecodeError(f"image: cannot decode {len(data)} bytes as an image ({exc})") from None
    return image


def preprocess_image(data: Union[bytes, "PIL.Image.Image"], config: ImagePreprocessConfig) -> np.ndarray:
    """Encoded image (or PIL image) → pixel_values float32 [1, 3, H, W]."""
    image = open_image(data)
    if config.do_convert_rgb:
        image = image.convert("RGB")
    height, width = config.size[1], config.size[0]  # the processor's swap, see the module docstring
    pixels = np.array(image.resize((width, height), resample=config.resample))
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    pixels = (pixels * config.rescale_factor).astype(np.float32)
    mean = np.array(config.image_mean, dtype=np.float32)
    std = np.array(config.image_std, dtype=np.float32)
    pixels = (pixels - mean) / std
    return pixels.transpose(2, 0, 1)[None]
