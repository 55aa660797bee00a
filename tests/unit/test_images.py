"""Image decoding: good PNG/JPEG decode to RGB; every broken input is a clear InvalidRequestError."""
import pytest
from PIL import Image

from images import encode, png_claiming  # tests/images.py
from musicgen.images import ImageLimits, decode_image
from musicgen.protocol import InvalidRequestError


@pytest.mark.parametrize("fmt,mode", [("PNG", "RGBA"), ("JPEG", "RGB"), ("PNG", "L"), ("PNG", "P")])
def test_decodes_to_rgb(fmt, mode):
    image = decode_image(encode(Image.new(mode, (33, 17), 128), fmt))
    assert image.mode == "RGB" and image.size == (33, 17)


GOOD_PNG = encode(Image.new("RGB", (64, 64), (10, 200, 30)), "PNG")


@pytest.mark.parametrize("data,message", [
    (b"", "image: is empty"),
    (b"hello, I am not an image", "image: is not a recognised image"),
    (GOOD_PNG[: len(GOOD_PNG) // 2], "image: is corrupt or truncated"),
    (encode(Image.new("RGB", (8, 8)), "GIF"), "image: is GIF: allowed PNG, JPEG"),
    (png_claiming(100_000, 100_000), "image: is too large to decode"),
    (png_claiming(7_000, 7_000), "image: is 7000×7000 = 49000000 pixels: allowed at most 40000000"),
    (png_claiming(0, 10), "image: "),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image: "),
])
def test_bad_images(data, message):
    with pytest.raises(InvalidRequestError, match=message) as err:
        decode_image(data)
    assert err.value.field == "image"


def test_byte_limit_checked_before_decoding():
    with pytest.raises(InvalidRequestError, match="allowed at most 100"):
        decode_image(GOOD_PNG, ImageLimits(max_bytes=100))
