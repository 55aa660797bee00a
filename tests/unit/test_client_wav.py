"""save_wav: what the CLI writes must read back as 16-bit PCM WAV at the right rate and length."""
import numpy as np
import pytest
import soundfile

from musicgen_client import MusicResult, save_wav

RATE = 16000


def test_round_trip_keeps_rate_length_and_samples(tmp_path):
    audio = (0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE // 2) / RATE)).astype(np.float32)
    path = save_wav(tmp_path / "nested" / "dirs" / "tone.wav", audio, RATE)

    assert path == tmp_path / "nested" / "dirs" / "tone.wav"
    info = soundfile.info(str(path))
    assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == ("WAV", "PCM_16", RATE, 1, audio.size)
    read, rate = soundfile.read(str(path), dtype="float32")
    assert rate == RATE
    np.testing.assert_allclose(read, audio, atol=1.5 / 32768)


def test_writes_wav_whatever_the_suffix(tmp_path):
    path = save_wav(tmp_path / "clip.audio", np.zeros(10, dtype=np.float32), RATE)
    assert soundfile.info(str(path)).format == "WAV"


@pytest.mark.parametrize(
    "audio, rate, wording",
    [(np.zeros((2, 2, 2)), RATE, "shape"), (np.zeros(4), 0, "sampling_rate"),
     (np.array([0.1, np.nan, np.inf, 0.2]), RATE, "2 non-finite samples")],
)
def test_rejects_unwritable_input(tmp_path, audio, rate, wording):
    with pytest.raises(ValueError, match=wording):
        save_wav(tmp_path / "bad.wav", audio, rate)
    assert not (tmp_path / "bad.wav").exists()


def test_result_duration_is_samples_over_rate():
    result = MusicResult(audio=np.zeros(RATE * 5 // 2, dtype=np.float32), sampling_rate=RATE, seed=7)
    assert result.duration_s == 2.5
