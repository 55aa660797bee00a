"""The delivery options on the server side, without a server: parsed from request tensors (a 400 naming the
field for what is not offered), and the outputs a finished waveform becomes, answered off the engine's thread."""
import threading

import numpy as np
import pytest

from cases import arrays_of  # tests/cases.py
from musicgen.delivery import Delivery, delivered_outputs
from musicgen.protocol import InvalidRequestError, parse_image_to_music, parse_text_to_music, status_of
from musicgen_client import interface as api
from musicgen_client.audio_encoding import AudioEncoding, decode, encode, resampled_length

RATE = 16000


def request(**fields):
    return arrays_of({api.PROMPT: "a calm piano melody", **fields})


def test_absent_options_mean_raw_as_before():
    assert parse_text_to_music(request()).encoding == AudioEncoding()
    empty = parse_text_to_music(request(audio_format="", loudness=""))
    assert empty.encoding == AudioEncoding()


def test_options_are_parsed_as_typed():
    parsed = parse_text_to_music(request(audio_format="flac24", output_sampling_rate=44100, loudness="lufs",
                                         loudness_target=-16.1))
    assert parsed.encoding == AudioEncoding("flac24", 44100, "lufs", -16.1)  # -16.1, not -16.100000381


@pytest.mark.parametrize("fields, message", [
    (dict(audio_format="mp3"), "audio_format: 'mp3' is not offered: choose one of raw, wav, wav24, wavf32, flac"),
    (dict(output_sampling_rate=8000), "output_sampling_rate: 8000 Hz is not offered"),
    (dict(loudness="loud"), "loudness: 'loud' is not offered"),
    (dict(loudness="peak", loudness_target=float("nan")), "loudness_target: nan is out of range"),
    (dict(loudness_target=-3.0), "loudness_target: -3.0 given without a loudness mode"),
    (dict(loudness="lufs", audio_length_in_s=0.3), "loudness: lufs needs a clip of at least 0.4 s"),
    (dict(audio_format="\xff"), "audio_format: '\xff' is not offered"),
])
def test_options_not_offered_are_400s_naming_the_field(fields, message):
    with pytest.raises(InvalidRequestError) as caught:
        parse_text_to_music(request(**fields))
    assert str(caught.value).startswith(message) and status_of(caught.value) == "invalid_argument"
    assert caught.value.field == message.split(":")[0]


def test_image2music_checks_them_before_any_model_runs():
    from images import varied_image  # tests/images.py

    inputs = arrays_of({api.IMAGE: varied_image(1, size=(16, 16), fmt="PNG"), api.AUDIO_FORMAT: "flac"},
                       api.IMAGE2MUSIC_INPUTS)
    assert parse_image_to_music(inputs).encoding == AudioEncoding("flac")
    inputs[api.OUTPUT_SAMPLING_RATE] = np.array([8000], dtype=np.int32)
    with pytest.raises(InvalidRequestError, match="output_sampling_rate: 8000 Hz"):
        parse_image_to_music(inputs)


def model_outputs(seconds=0.5):
    audio = (0.5 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)
    return {api.AUDIO: audio, api.SEED: np.array([7], dtype=np.int64),
            api.SAMPLING_RATE: np.array([RATE], dtype=np.int32)}


def test_a_file_format_answers_audio_file_and_no_samples():
    outputs = model_outputs()
    delivered = delivered_outputs(outputs, AudioEncoding("flac", output_sampling_rate=48000))
    assert set(delivered) == {api.AUDIO_FILE, api.SEED, api.SAMPLING_RATE}
    assert delivered[api.AUDIO_FILE].dtype == object and delivered[api.AUDIO_FILE].shape == (1,)
    audio, rate = decode(delivered[api.AUDIO_FILE][0])
    assert rate == 48000 == delivered[api.SAMPLING_RATE][0] and audio.shape == (24000,)
    assert delivered[api.SEED][0] == 7


def test_raw_answers_samples_at_the_delivered_rate():
    delivered = delivered_outputs(model_outputs(), AudioEncoding(output_sampling_rate=22050))
    assert set(delivered) == {api.AUDIO, api.SEED, api.SAMPLING_RATE}
    assert delivered[api.AUDIO].shape == (11025,) and delivered[api.SAMPLING_RATE].tolist() == [22050]


def test_delivery_answers_defaults_at_once_and_encodes_elsewhere():
    delivery = Delivery()
    answers = []
    done = threading.Event()

    def respond(outputs, error):
        answers.append((threading.current_thread().name, outputs, error))
        done.set()

    outputs = model_outputs()
    seed_and_rate = {k: v for k, v in outputs.items() if k != api.AUDIO}
    delivery.finisher(seed_and_rate, AudioEncoding(), respond)({api.AUDIO: outputs[api.AUDIO]}, None)
    assert answers[-1][0] == threading.current_thread().name and answers[-1][1][api.AUDIO] is outputs[api.AUDIO]
    failure = RuntimeError("stage audioldm_unet failed")
    delivery.finisher(seed_and_rate, AudioEncoding("wav"), respond)(None, failure)
    assert answers[-1][2] is failure

    done.clear()
    delivery.finisher(seed_and_rate, AudioEncoding("wav"), respond)({api.AUDIO: outputs[api.AUDIO]}, None)
    assert done.wait(10)
    thread, delivered, error = answers[-1]
    assert thread.startswith("audio-delivery") and error is None
    assert delivered[api.AUDIO_FILE][0] == encode(outputs[api.AUDIO], RATE, "wav")

    done.clear()
    broken = outputs[api.AUDIO].copy()
    broken[3] = np.nan
    delivery.finisher(seed_and_rate, AudioEncoding("wav"), respond)({api.AUDIO: broken}, None)  # never reaches a client as audio
    assert done.wait(10)
    assert answers[-1][1] is None and "non-finite" in str(answers[-1][2])
    delivery.close()


def test_candidates_are_delivered_one_file_each_in_their_order():
    outputs = model_outputs()
    candidates = np.stack([outputs[api.AUDIO], 0.5 * outputs[api.AUDIO]])
    scores = np.array([0.9, 0.1], np.float32)
    delivered = delivered_outputs({**outputs, api.AUDIO: candidates, api.SCORES: scores}, AudioEncoding("flac"))
    assert [decode(f)[0].shape for f in delivered[api.AUDIO_FILE]] == [outputs[api.AUDIO].shape] * 2
    assert np.abs(decode(delivered[api.AUDIO_FILE][1])[0]).max() < np.abs(decode(delivered[api.AUDIO_FILE][0])[0]).max()
    assert delivered[api.SCORES] is scores and api.AUDIO not in delivered
    resampled = delivered_outputs({**outputs, api.AUDIO: candidates}, AudioEncoding(output_sampling_rate=48000))
    assert resampled[api.AUDIO].shape == (2, resampled_length(candidates.shape[1], RATE, 48000))
