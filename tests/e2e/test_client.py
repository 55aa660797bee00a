"""The client package (Python API and `musicgen` CLI) against the real server, over HTTP and gRPC."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from musicgen_client import MusicClient, MusicServiceError

pytestmark = pytest.mark.e2e


def client_url(server, protocol):
    return server.http_url if protocol == "http" else server.grpc_url


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_api_returns_reproducible_audio(triton_server, protocol):
    with MusicClient(client_url(triton_server, protocol), protocol) as client:
        client.wait_until_ready(timeout_s=30)
        first = client.text_to_music("a calm piano melody", num_inference_steps=2, audio_length_in_s=1.0)
        again = client.text_to_music("a calm piano melody", num_inference_steps=2, audio_length_in_s=1.0,
                                     seed=first.seed)
    assert first.sampling_rate == 16000 and first.audio.shape == (16000,) and first.duration_s == 1.0
    assert np.array_equal(first.audio, again.audio)


def test_api_surfaces_server_errors(triton_server):
    with MusicClient(triton_server.http_url, "http") as client:
        with pytest.raises(MusicServiceError, match="audio_length_in_s: 0.01 is below this model's minimum"):
            client.text_to_music("a calm piano melody", audio_length_in_s=0.01)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_cli_writes_the_wav_and_reports_it(triton_server, tmp_path, protocol):
    out = tmp_path / "calm.wav"
    proc = subprocess.run(
        [sys.executable, "-m", "musicgen_client.cli", "text", "a calm piano melody", "--out", str(out),
         "--seed", "42", "--steps", "2", "--length", "1.5", "--negative", "noise",
         "--url", client_url(triton_server, protocol), "--protocol", protocol],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert str(out) in proc.stdout and "1.50 s" in proc.stdout and "seed 42" in proc.stdout
    data, rate = soundfile.read(out)
    assert rate == 16000 and data.shape == (24000,)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("images") / "photo.png"
    Image.fromarray(np.random.default_rng(8).integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_image_to_music_by_stages_equals_the_server_flow(triton_server, photo, protocol):
    from musicgen_client import image_to_music_by_stages

    options = dict(num_inference_steps=2, audio_length_in_s=1.0, seed=4)
    with MusicClient(client_url(triton_server, protocol), protocol) as client:
        served = client.image_to_music(photo, **options)
        staged = image_to_music_by_stages(photo, caption_client=client, llm_client=client, audio_client=client,
                                          **options)
        assert client.caption(photo) == served.caption
    assert (staged.caption, staged.music_prompt, staged.seed) == (served.caption, served.music_prompt, 4)
    assert np.array_equal(staged.audio, served.audio) and served.audio.shape == (16000,)


def test_cli_image_prints_caption_prompt_and_wav(triton_server, photo, tmp_path):
    out = tmp_path / "song.wav"
    proc = subprocess.run(
        [sys.executable, "-m", "musicgen_client.cli", "image", str(photo), "--out", str(out), "--seed", "3",
         "--steps", "2", "--length", "1", "--url", triton_server.http_url, "--llm-url", triton_server.http_url],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert "caption:" in proc.stdout and "music prompt:" in proc.stdout and str(out) in proc.stdout
    data, rate = soundfile.read(out)
    assert rate == 16000 and data.shape == (16000,)


def test_cli_rejects_a_corrupt_image_with_the_servers_message(triton_server, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    proc = subprocess.run(
        [sys.executable, "-m", "musicgen_client.cli", "image", str(bad), "--url", triton_server.http_url],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "image:" in proc.stderr  # the server refused it: bad input
