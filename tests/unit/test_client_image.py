"""The image argument of the image models and the image → music result, without a server."""
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from musicgen_client import ImageMusicResult, MusicResult, image_bytes
from musicgen_client.interface import IMAGE, MAX_IMAGE_BYTES

PNG = b"\x89PNG\r\n\x1a\n not checked here: the server decodes"


def test_bytes_go_as_they_are():
    assert image_bytes(PNG) == PNG
    assert image_bytes(bytearray(PNG)) == PNG
    assert image_bytes(memoryview(PNG)) == PNG


@pytest.mark.parametrize("as_path", [str, lambda path: path], ids=["str", "PathLike"])
def test_a_path_is_read(as_path, tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(PNG)
    assert image_bytes(as_path(path)) == PNG


@pytest.mark.parametrize("mode, colour", [("RGB", (200, 30, 40)), ("RGBA", (1, 2, 3, 4)), ("L", 77)])
def test_a_pil_image_is_sent_as_lossless_png(mode, colour):
    image = Image.new(mode, (5, 3), colour)
    decoded = Image.open(io.BytesIO(image_bytes(image)))
    assert decoded.format == "PNG" and decoded.mode == mode
    assert np.array_equal(np.asarray(decoded), np.asarray(image))


def test_a_pil_mode_png_cannot_store_is_sent_as_rgb():
    image = Image.new("CMYK", (4, 4), (0, 255, 255, 0))
    decoded = Image.open(io.BytesIO(image_bytes(image)))
    assert decoded.format == "PNG" and decoded.mode == "RGB"
    assert decoded.getpixel((0, 0)) == image.convert("RGB").getpixel((0, 0))


def test_a_missing_file_names_the_field_and_the_path(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ValueError) as error:
        image_bytes(missing)
    assert str(error.value) == f"{IMAGE}: cannot read {missing}: No such file or directory"


def test_a_directory_is_not_an_image(tmp_path):
    with pytest.raises(ValueError, match=f"^{IMAGE}: cannot read .*: Is a directory"):
        image_bytes(tmp_path)


def test_a_file_over_the_limit_is_refused_with_its_size(tmp_path):
    big = tmp_path / "big.png"
    with open(big, "wb") as file:
        file.truncate(MAX_IMAGE_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(ValueError) as error:
        image_bytes(big)
    assert str(error.value) == f"{IMAGE}: {big} is {MAX_IMAGE_BYTES + 1} bytes: allowed at most {MAX_IMAGE_BYTES}"


@pytest.mark.parametrize("size, fits", [(10, True), (11, False)])
def test_the_limit_is_inclusive_whatever_the_source(size, fits, tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(b"x" * size)
    for image in (b"x" * size, path):
        if fits:
            assert len(image_bytes(image, max_bytes=10)) == size
        else:
            with pytest.raises(ValueError, match=f"is {size} bytes: allowed at most 10$"):
                image_bytes(image, max_bytes=10)


def test_empty_images_are_refused(tmp_path):
    empty = tmp_path / "empty.png"
    empty.touch()
    with pytest.raises(ValueError, match=f"^{IMAGE}: is empty"):
        image_bytes(b"")
    with pytest.raises(ValueError, match=f"^{IMAGE}: {empty} is empty"):
        image_bytes(empty)


@pytest.mark.parametrize("image", [None, 42, np.zeros((2, 2, 3), dtype=np.uint8)])
def test_other_types_are_refused(image):
    with pytest.raises(ValueError, match=f"^{IMAGE}: must be bytes, a file path or a PIL image, not "):
        image_bytes(image)


def test_the_client_does_not_need_pillow():
    # Importing the API and the CLI must not import PIL: pillow is not a dependency of the client.
    code = "import sys, musicgen_client.api, musicgen_client.cli; sys.exit('PIL' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_image_music_result_is_a_music_result_with_its_texts():
    music = MusicResult(audio=np.zeros(8000, dtype=np.float32), sampling_rate=16000, seed=7)
    result = ImageMusicResult.of(music, caption="a red square", music_prompt="calm piano")
    assert isinstance(result, MusicResult)
    assert (result.caption, result.music_prompt) == ("a red square", "calm piano")
    assert (result.seed, result.sampling_rate) == (7, 16000)
    assert result.audio is music.audio and result.duration_s == 0.5
