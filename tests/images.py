"""Test images shared by the unit and end-to-end batteries and the soak (importable: pytest puts tests/ on
sys.path for its rootdir conftest)."""
import io
import struct
import zlib

import numpy as np


def encode(image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def varied_image(seed: int, size=None, fmt=None) -> bytes:
    """A valid PNG or JPEG that differs with `seed`: random pixels over a random size (16-160 px a side) and a
    random format, unless `size` (width, height) or `fmt` is given."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size or (int(rng.integers(16, 161)), int(rng.integers(16, 161)))
    fmt = fmt or ("PNG", "JPEG")[int(rng.integers(2))]
    return encode(Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)), fmt)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header claims width × height (a decompression bomb's shape)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
