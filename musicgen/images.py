"""Decode an uploaded image defensively: every way bytes can fail to be a picture is a clear 400.

Limits are checked before pixels are decoded: the compressed size first, then the header's dimensions
(a 100-byte PNG can claim 100k × 100k pixels), then the decode itself, which catches truncated files.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from musicgen_client import interface as api

from .protocol import InvalidRequestError

FIELD = api.IMAGE


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = api.MAX_IMAGE_BYTES
    max_pixels: int = 40_000_000  # width × height; ~6300 × 6300
    formats: tuple = ("PNG", "JPEG")


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()):
    """Encoded PNG/JPEG bytes → an RGB PIL image, or InvalidRequestError naming what is wrong."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InvalidRequestError(FIELD, "is empty: send the bytes of a PNG or JPEG file")
    if len(data) > limits.max_bytes:
        raise InvalidRequestError(FIELD, f"is {len(data)} bytes: allowed at most {limits.max_bytes}")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InvalidRequestError(FIELD, f"is not a recognised image: send {' or '.join(limits.formats)}") from None
    except Image.DecompressionBombError as exc:  # PIL's own guard, at twice its pixel limit
        raise InvalidRequestError(FIELD, f"is too large to decode ({exc})") from None
    except (OSError, ValueError) as exc:
        raise InvalidRequestError(FIELD, f"cannot be read ({exc})") from None
    if image.format not in limits.formats:
        raise InvalidRequestError(FIELD, f"is {image.format}: allowed {', '.join(limits.formats)}")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidRequestError(FIELD, f"has zero size ({width}×{height})")
    if width * height > limits.max_pixels:
        raise InvalidRequestError(
            FIELD, f"is {width}×{height} = {width * height} pixels: allowed at most {limits.max_pixels}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()  # the real decode: truncated or corrupt data fails here
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise InvalidRequestError(FIELD, f"is corrupt or truncated ({exc})") from None
    return image.convert("RGB")
