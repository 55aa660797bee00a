"""The client's side of encoded output without a server: what it sends, how it reads a file answer, how it writes
files (server bytes as they came, raw samples encoded here), and the CLI's format options."""
import numpy as np
import pytest
import soundfile

from musicgen_client import AudioEncoding, MusicClient, MusicResult, MusicServiceError, save_audio
from musicgen_client import interface as api
from musicgen_client.api import _encoding_values, _read_music
from musicgen_client.audio_encoding import EncodingOptionError, decode, encode
from musicgen_client.cli import EXIT_BAD_INPUT, main

RATE = 16000
TONE = (0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE // 4) / RATE)).astype(np.float32)


class Response:
    """What tritonclient's results offer the reader: as_numpy(name), None for an output not in the answer."""

    def __init__(self, **outputs):
        self.outputs = outputs

    def as_numpy(self, name):
        return self.outputs.get(name)


def file_response(file, rate=RATE):
    return Response(audio_file=np.array([file], dtype=object), sampling_rate=np.array([rate], np.int32),
                    seed=np.array([3], np.int64))


def test_only_options_that_differ_from_the_defaults_are_sent():
    assert _encoding_values(None) == {} == _encoding_values(AudioEncoding())
    assert _encoding_values(AudioEncoding("flac", loudness="lufs")) == {api.AUDIO_FORMAT: "flac", api.LOUDNESS: "lufs"}
    assert _encoding_values(AudioEncoding("raw", 48000, "peak", -2.0)) == {
        api.OUTPUT_SAMPLING_RATE: 48000, api.LOUDNESS: "peak", api.LOUDNESS_TARGET: -2.0}
    with pytest.raises(TypeError, match="AudioEncoding"):
        _encoding_values("flac")
    with pytest.raises(ValueError, match="loudness: lufs needs a clip of at least 0.4 s"):  # checked before sending
        _encoding_values(AudioEncoding(loudness="lufs"), audio_length_in_s=0.2)


def test_a_file_answer_is_kept_and_decoded():
    file = encode(TONE, RATE, "flac")
    result = _read_music(file_response(file), AudioEncoding("flac"))
    assert result.audio_file == file and result.audio_format == "flac" and result.seed == 3
    assert result.audio.shape == TONE.shape and np.abs(result.audio - TONE).max() <= 1 / 2**15


@pytest.mark.parametrize("response, message", [
    (file_response(b"not audio"), "is not a readable flac file"),
    (file_response(encode(TONE, RATE, "flac"), rate=44100), "is at 16000 Hz, sampling_rate says 44100"),
    (Response(sampling_rate=np.array([RATE], np.int32), seed=np.array([3], np.int64)), "'audio_file' is missing"),
])
def test_a_broken_file_answer_is_the_servers_fault(response, message):
    with pytest.raises(ValueError, match=message):
        _read_music(response, AudioEncoding("flac"))


def test_a_broken_answer_surfaces_as_a_service_error(monkeypatch):
    client = MusicClient("127.0.0.1:1")
    monkeypatch.setattr(client._transport, "call", lambda *args, **kwargs: file_response(b"junk"))
    with pytest.raises(MusicServiceError, match="text2music answered with unreadable outputs"):
        client.text_to_music("a tune", encoding=AudioEncoding("flac"))


def test_save_audio_writes_a_server_file_as_it_came(tmp_path):
    served = _read_music(file_response(encode(TONE, RATE, "ogg")), AudioEncoding("ogg"))
    path = save_audio(tmp_path / "out" / "song.ogg", served)
    assert path.read_bytes() == served.audio_file
    assert save_audio(tmp_path / "song.data", served).read_bytes() == served.audio_file  # a name that says nothing
    # A name or format that says another: the decoded samples are encoded here.
    assert soundfile.info(str(save_audio(tmp_path / "song.wav", served))).subtype == "PCM_16"
    assert soundfile.info(str(save_audio(tmp_path / "song.ogg", served, "flac"))).format == "FLAC"


def test_save_audio_keeps_the_servers_flavour_of_the_extension(tmp_path):
    served = _read_music(file_response(encode(TONE, RATE, "wav24")), AudioEncoding("wav24"))
    assert save_audio(tmp_path / "song.wav", served).read_bytes() == served.audio_file


@pytest.mark.parametrize("name, audio_format, subtype", [
    ("a.wav", None, "PCM_16"), ("a.flac", None, "PCM_16"), ("a.ogg", None, "VORBIS"), ("a.wav", "wav24", "PCM_24"),
    ("a.flac", "flac24", "PCM_24"), ("a.wav", "wavf32", "FLOAT"),
])
def test_save_audio_encodes_raw_samples_as_the_name_or_format_says(tmp_path, name, audio_format, subtype):
    result = MusicResult(TONE, RATE, seed=1)
    path = save_audio(tmp_path / name, result, audio_format)
    info = soundfile.info(str(path))
    assert (info.subtype, info.samplerate, info.frames) == (subtype, RATE, TONE.size)
    again, _ = soundfile.read(str(path), dtype="float32")  # Ogg's bytes differ in their random stream serial only
    assert np.array_equal(again, decode(encode(TONE, RATE, audio_format or name.split(".")[1]))[0])


@pytest.mark.parametrize("name, audio_format, message", [
    ("a.mp3", None, "audio_format: cannot tell the format from the file name"),
    ("a.wav", "raw", "audio_format: raw is not a file format"),
    ("a.wav", "aiff", "audio_format: 'aiff' is not offered"),
])
def test_save_audio_refuses_what_it_cannot_write(tmp_path, name, audio_format, message):
    with pytest.raises(ValueError, match=message):
        save_audio(tmp_path / name, MusicResult(TONE, RATE, seed=1), audio_format)
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("argv, message", [
    (["--out", "song.mp3"], "audio_format: cannot tell the format from the file name 'song.mp3'"),
    (["--out", "song.wav", "--loudness-target", "-9"], "loudness_target: -9.0 given without a loudness mode"),
    (["--out", "song.wav", "--loudness", "lufs", "--loudness-target", "3"], "loudness_target: 3.0 is out of range"),
])
def test_cli_refuses_bad_output_options_before_calling(argv, message, capsys):
    assert main(["text", "a tune", "--url", "127.0.0.1:1", *argv]) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err


def test_cli_offers_only_the_served_rates(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["text", "a tune", "--sample-rate", "8000"])
    assert caught.value.code == EXIT_BAD_INPUT and "invalid choice: 8000" in capsys.readouterr().err


def test_encoding_errors_are_value_errors_naming_the_field():
    with pytest.raises(ValueError) as caught:
        AudioEncoding(output_sampling_rate=96000)
    assert isinstance(caught.value, EncodingOptionError) and caught.value.field == api.OUTPUT_SAMPLING_RATE
