"""Encoded output end to end, over HTTP and gRPC: text2music and image2music answer `audio_file` (and no `audio`)
when a file format is asked; the file holds the very samples a raw request gets (within the format's
quantisation), resampled and normalised when asked; the client and CLI write it, or encode raw samples themselves
into the same bytes. Bad values are 400s naming the field (the shared battery in tests/cases.py covers text2music)."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from tritonclient.utils import InferenceServerException

from cases import PHOTO, arrays_of, infer_raw  # tests/cases.py
from musicgen_client import AudioEncoding, MusicClient, save_audio
from musicgen_client import interface as api
from musicgen_client.audio_encoding import decode, encode, integrated_loudness, resampled_length

pytestmark = pytest.mark.e2e

REQUEST = dict(prompt="a calm piano melody", num_inference_steps=2, audio_length_in_s=1.0, seed=21)


def infer(server, protocol, model=api.TEXT2MUSIC, specs=api.TEXT2MUSIC_INPUTS, **fields):
    return infer_raw(server, protocol, model, arrays_of(fields, specs))


@pytest.fixture(scope="module")
def raw(triton_server):
    """REQUEST's float samples, as every request without a format gets them."""
    result = infer(triton_server, "http", **REQUEST)
    return result.as_numpy(api.AUDIO)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("audio_format, tolerance", [("flac", 1 / 2**15), ("wav", 1 / 2**15), ("wavf32", 0.0)])
def test_a_file_format_answers_the_file_and_no_samples(triton_server, raw, protocol, audio_format, tolerance):
    result = infer(triton_server, protocol, audio_format=audio_format, **REQUEST)
    assert result.as_numpy(api.AUDIO) is None
    file = result.as_numpy(api.AUDIO_FILE)
    assert file.shape == (1,) and int(result.as_numpy(api.SAMPLING_RATE)[0]) == 16000
    assert int(result.as_numpy(api.SEED)[0]) == REQUEST["seed"]
    audio, rate = decode(file[0])
    assert rate == 16000 and audio.shape == raw.shape == (16000,)
    assert np.abs(audio - raw).max() <= tolerance * 1.0001
    assert file[0] == encode(raw, 16000, audio_format)  # the same bytes the client makes of the raw samples


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_resampled_and_peak_normalised(triton_server, raw, protocol):
    result = infer(triton_server, protocol, audio_format="flac24", output_sampling_rate=44100, loudness="peak",
                   loudness_target=-3.0, **REQUEST)
    audio, rate = decode(result.as_numpy(api.AUDIO_FILE)[0])
    assert rate == 44100 == int(result.as_numpy(api.SAMPLING_RATE)[0])
    assert audio.shape == (resampled_length(raw.size, 16000, 44100),) == (44100,)
    assert 20 * np.log10(np.abs(audio).max()) == pytest.approx(-3.0, abs=0.1)


def test_raw_samples_can_be_resampled_and_normalised_too(triton_server):
    fields = dict(REQUEST, audio_length_in_s=2.0, output_sampling_rate=48000)
    result = infer(triton_server, "grpc", loudness="lufs", loudness_target=-23.0, **fields)
    audio = result.as_numpy(api.AUDIO)
    assert result.as_numpy(api.AUDIO_FILE) is None and int(result.as_numpy(api.SAMPLING_RATE)[0]) == 48000
    assert audio.shape == (96000,)
    resampled = infer(triton_server, "grpc", **fields).as_numpy(api.AUDIO)
    if integrated_loudness(resampled, 48000) == -np.inf:
        # The tiny random models' clips (peaks near -63 dBFS) are under the meter's -70 LUFS gate: no gain at all.
        assert np.array_equal(audio, resampled)
    else:
        assert integrated_loudness(audio, 48000) == pytest.approx(-23.0, abs=0.5) or np.abs(audio).max() == 1.0


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_image2music_answers_the_file(triton_server, protocol):
    fields = {api.IMAGE: PHOTO, api.NUM_INFERENCE_STEPS: 2, api.AUDIO_LENGTH_IN_S: 1.0, api.SEED: 5}
    result = infer(triton_server, protocol, api.IMAGE2MUSIC, api.IMAGE2MUSIC_INPUTS, audio_format="ogg",
                   output_sampling_rate=22050, **fields)
    assert result.as_numpy(api.AUDIO) is None and result.as_numpy(api.CAPTION) is not None
    audio, rate = decode(result.as_numpy(api.AUDIO_FILE)[0])
    assert rate == 22050 and audio.shape == (22050,)


@pytest.mark.parametrize("fields, message", [
    ({api.AUDIO_FORMAT: "aiff"}, "audio_format: 'aiff' is not offered"),
    ({api.OUTPUT_SAMPLING_RATE: 8000}, "output_sampling_rate: 8000 Hz is not offered"),
    ({api.LOUDNESS: "peak", api.LOUDNESS_TARGET: float("nan")}, "loudness_target: nan is out of range"),
])
def test_image2music_refuses_them_before_any_model_runs(triton_server, fields, message):
    with pytest.raises(InferenceServerException) as err:
        infer(triton_server, "grpc", api.IMAGE2MUSIC, api.IMAGE2MUSIC_INPUTS, **{api.IMAGE: PHOTO}, **fields)
    assert message in err.value.message() and err.value.status() == "StatusCode.INVALID_ARGUMENT"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_client_writes_server_files_as_they_come_and_raw_samples_the_same(triton_server, tmp_path, protocol):
    url = triton_server.http_url if protocol == "http" else triton_server.grpc_url
    options = {k: v for k, v in REQUEST.items() if k != "prompt"}
    with MusicClient(url, protocol) as client:
        served = client.text_to_music(REQUEST["prompt"], encoding=AudioEncoding("flac"), **options)
        samples = client.text_to_music(REQUEST["prompt"], **options)
    assert served.audio_format == "flac" and served.audio.shape == (16000,)
    from_server = save_audio(tmp_path / "served.flac", served)
    from_samples = save_audio(tmp_path / "here.flac", samples)  # encoded on this side
    assert from_server.read_bytes() == served.audio_file == from_samples.read_bytes()


def test_cli_infers_the_format_from_the_file_name(triton_server, tmp_path):
    out = tmp_path / "calm.flac"
    proc = subprocess.run(
        [sys.executable, "-m", "musicgen_client.cli", "text", "a calm piano melody", "--out", str(out), "--seed", "4",
         "--steps", "2", "--length", "1", "--sample-rate", "48000", "--loudness", "peak",
         "--url", triton_server.grpc_url, "--protocol", "grpc"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "48000 Hz, flac, seed 4" in proc.stdout
    info = soundfile.info(str(out))
    assert (info.format, info.subtype, info.samplerate, info.frames) == ("FLAC", "PCM_16", 48000, 48000)
    audio, _ = soundfile.read(str(out))
    assert 20 * np.log10(np.abs(audio).max()) == pytest.approx(-1.0, abs=0.1)
