"""musicgen_client.audio_encoding without a server: every format read back by libsndfile's decoder within its
quantisation, resampled lengths and content, loudness landing on target, and the options refused by field."""
import io

import numpy as np
import pytest
import soundfile

from export.fidelity import mel_filterbank
from musicgen_client import interface as api
from musicgen_client.audio_encoding import (
    FILE_FORMATS,
    LOUDNESS_TARGETS,
    AudioEncoding,
    EncodingOptionError,
    decode,
    deliver,
    encode,
    format_of_path,
    integrated_loudness,
    resample,
    resampled_length,
)

RATE = 16000


def music_like(seconds=2.0, rate=RATE, peak=0.8, seed=0):
    """Tones across the band, an envelope and a little noise, scaled to `peak`: something like a clip."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    wave = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / (i + 1) for i, f in enumerate((220, 440, 1250, 3100)))
    wave = wave * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t)) + 0.02 * rng.standard_normal(t.size)
    return (wave * peak / np.abs(wave).max()).astype(np.float32)


def sine(freq, seconds, rate, amplitude=0.5):
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def dbfs(audio):
    return 20 * np.log10(np.abs(audio).max())


# Largest error a format's decoder may show on [-1, 1] input: libsndfile's float → integer PCM is within one
# step of the integer grid (WAV truncates, FLAC rounds: measured ≤ 1 and ≤ 0.5 steps).
QUANTISATION = {"wav": 1 / 2**15, "wav24": 1 / 2**23, "wavf32": 0.0, "flac": 1 / 2**15, "flac24": 1 / 2**23}


@pytest.mark.parametrize("audio_format", sorted(QUANTISATION))
def test_lossless_formats_round_trip_within_their_quantisation(audio_format):
    audio = music_like()
    file = encode(audio, RATE, audio_format)
    info = soundfile.info(io.BytesIO(file))
    expected = FILE_FORMATS[audio_format]
    assert (info.format, info.subtype) == (expected.container, expected.subtype)
    assert (info.samplerate, info.channels) == (RATE, 1)
    decoded, rate = decode(file)
    assert rate == RATE and decoded.shape == audio.shape
    assert np.abs(decoded - audio).max() <= QUANTISATION[audio_format] * 1.0001


def band_levels_db(audio, rate=RATE, n_fft=1024):
    """Long-term mel spectrum in dB: the mean power of 64 mel bands over the clip (Hann frames, half overlap)."""
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float64), n_fft)[::n_fft // 2]
    power = (np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=-1)) ** 2).mean(axis=0)
    return 10 * np.log10(mel_filterbank(rate, n_fft, 64) @ power)


def test_ogg_vorbis_is_lossy_but_keeps_the_spectrum():
    """Every mel band within 40 dB of the loudest keeps its level within 1 dB (measured: 0.06); the codec may
    reshape the noise floor below that, which is where a perceptual coder saves its bits."""
    audio = music_like(seconds=3.0)
    file = encode(audio, RATE, "ogg")
    info = soundfile.info(io.BytesIO(file))
    assert (info.format, info.subtype) == ("OGG", "VORBIS")
    decoded, rate = decode(file)
    assert rate == RATE and decoded.shape == audio.shape  # Ogg keeps the exact length
    assert len(file) < len(encode(audio, RATE, "flac")) / 2
    assert np.abs(decoded - audio).max() > 1 / 2**15  # it is lossy
    reference = band_levels_db(audio)
    audible = reference > reference.max() - 40
    assert np.abs(band_levels_db(decoded) - reference)[audible].max() < 1.0
    assert np.abs(band_levels_db(audio * 0.7) - reference)[audible].min() > 3.0  # what 3 dB quieter scores


def test_integer_formats_clip_overshoots_instead_of_wrapping():
    audio = np.array([0.0, 1.5, -1.5, 0.25], dtype=np.float32)
    for audio_format in ("wav", "flac", "wav24"):
        decoded, _ = decode(encode(audio, RATE, audio_format))
        assert decoded[1] > 0.999 and decoded[2] <= -0.999, audio_format
    decoded, _ = decode(encode(audio, RATE, "wavf32"))
    assert np.array_equal(decoded, audio)  # float WAV keeps them


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_audio_is_refused(bad):
    audio = music_like(0.1)
    audio[7] = bad
    with pytest.raises(ValueError, match="1 non-finite samples"):
        encode(audio, RATE, "wav")
    with pytest.raises(ValueError, match="non-finite"):
        deliver(audio, RATE, AudioEncoding())


@pytest.mark.parametrize("rate_out", [16000, 22050, 44100, 48000])
@pytest.mark.parametrize("samples", [1, 641, 8000, 16001, 20000, 80000])
def test_resampled_length_is_n_times_the_ratio_rounded(samples, rate_out):
    out = resample(np.ones(samples, dtype=np.float32), RATE, rate_out)
    assert out.dtype == np.float32 and out.shape == (resampled_length(samples, RATE, rate_out),)
    exact = samples * rate_out / RATE
    if exact % 1 != 0.5:  # Python's round() breaks ties to even, soxr rounds them up
        assert out.shape[0] == round(exact)


@pytest.mark.parametrize("rate_out", [22050, 44100, 48000])
def test_resampling_keeps_the_content(rate_out):
    """A 1 kHz tone at 16 kHz becomes the same tone sampled at the new rate (edges aside), with nothing added
    above the old Nyquist frequency (8 kHz)."""
    out = resample(sine(1000, 1.0, RATE), RATE, rate_out)
    expected = sine(1000, 1.0, rate_out)
    middle = slice(rate_out // 10, -rate_out // 10)
    assert np.abs(out[middle] - expected[middle]).max() < 1e-3
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    freqs = np.fft.rfftfreq(out.size, 1 / rate_out)
    assert freqs[spectrum.argmax()] == pytest.approx(1000, abs=2)
    assert spectrum[freqs > 8500].max() < 1e-4 * spectrum.max()


def test_downsampling_removes_what_the_new_rate_cannot_hold():
    tone_48k = sine(1000, 1.0, 48000) + sine(15000, 1.0, 48000)
    out = resample(tone_48k, 48000, 22050)  # 15 kHz is above 22.05 kHz's Nyquist: it must go, not alias
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    freqs = np.fft.rfftfreq(out.size, 1 / 22050)
    assert spectrum[np.abs(freqs - 7050) < 50].max() < 1e-4 * spectrum.max()  # 22050 - 15000: its alias
    assert freqs[spectrum.argmax()] == pytest.approx(1000, abs=2)


@pytest.mark.parametrize("target", [-1.0, -6.0, -20.0])
@pytest.mark.parametrize("audio_format", ["raw", "wav24", "flac"])
def test_peak_normalisation_lands_on_target(target, audio_format):
    encoding = AudioEncoding(audio_format, loudness="peak", loudness_target=target)
    delivered = deliver(music_like(peak=0.3), RATE, encoding)
    audio = delivered.samples if delivered.file is None else decode(delivered.file)[0]
    assert dbfs(audio) == pytest.approx(target, abs=0.1)


def test_meter_reads_the_standards_calibration_tone():
    """BS.1770: a 997 Hz sine at 0 dBFS in one channel reads -3.01 LKFS; at -20 dBFS, -23.01."""
    for rate in (16000, 48000):
        assert integrated_loudness(sine(997, 5.0, rate, amplitude=0.1), rate) == pytest.approx(-23.01, abs=0.1)


@pytest.mark.parametrize("target", [-14.0, -23.0, -30.0])
@pytest.mark.parametrize("rate_out", [None, 44100])
def test_lufs_normalisation_lands_on_target(target, rate_out):
    encoding = AudioEncoding("flac24", output_sampling_rate=rate_out, loudness="lufs", loudness_target=target)
    delivered = deliver(music_like(seconds=3.0, peak=0.05), RATE, encoding)
    audio, rate = decode(delivered.file)
    assert rate == (rate_out or RATE) == delivered.sampling_rate
    assert integrated_loudness(audio, rate) == pytest.approx(target, abs=0.5)


def test_lufs_gain_stops_at_full_scale():
    """-5 LUFS of a peaky clip would need peaks above 0 dBFS: it comes back at full scale, quieter than asked."""
    peaky = music_like(seconds=3.0, peak=0.05)
    peaky[1000] = 0.5
    out = deliver(peaky, RATE, AudioEncoding(loudness="lufs", loudness_target=-5.0)).samples
    assert np.abs(out).max() == pytest.approx(1.0, abs=1e-6)
    assert integrated_loudness(out, RATE) < -5.5


def test_audio_under_the_meters_gate_gets_no_gain():
    quiet = music_like(seconds=1.0, peak=1e-5)
    out = deliver(quiet, RATE, AudioEncoding(loudness="lufs")).samples
    assert integrated_loudness(quiet, RATE) == -np.inf and np.array_equal(out, quiet)


def test_defaults_change_nothing():
    audio = music_like(0.5)
    delivered = deliver(audio, RATE, AudioEncoding())
    assert delivered.file is None and delivered.sampling_rate == RATE and np.array_equal(delivered.samples, audio)
    assert AudioEncoding(loudness="peak").target == LOUDNESS_TARGETS["peak"].default == -1.0
    assert AudioEncoding(loudness="lufs").target == -14.0


def test_raw_output_can_be_resampled_and_normalised():
    delivered = deliver(music_like(1.0, peak=0.2), RATE, AudioEncoding(output_sampling_rate=48000, loudness="peak"))
    assert delivered.file is None and delivered.sampling_rate == 48000
    assert delivered.samples.shape == (48000,) and dbfs(delivered.samples) == pytest.approx(-1.0, abs=0.01)


@pytest.mark.parametrize("options, field, message", [
    (dict(audio_format="mp3"), api.AUDIO_FORMAT, "'mp3' is not offered: choose one of raw, wav, wav24"),
    (dict(audio_format="FLAC"), api.AUDIO_FORMAT, "not offered"),
    (dict(output_sampling_rate=8000), api.OUTPUT_SAMPLING_RATE, "8000 Hz is not offered: choose one of 16000, 22050"),
    (dict(output_sampling_rate=44100.0), api.OUTPUT_SAMPLING_RATE, "44100.0 Hz is not offered"),
    (dict(output_sampling_rate=True), api.OUTPUT_SAMPLING_RATE, "True Hz is not offered"),
    (dict(loudness="rms"), api.LOUDNESS, "'rms' is not offered: choose one of none, peak, lufs"),
    (dict(loudness="lufs", loudness_target=float("nan")), api.LOUDNESS_TARGET, "nan is out of range"),
    (dict(loudness="lufs", loudness_target=0.0), api.LOUDNESS_TARGET, "0.0 is out of range: allowed -70.0 to -5.0"),
    (dict(loudness="peak", loudness_target=3.0), api.LOUDNESS_TARGET, "3.0 is out of range: allowed -60.0 to 0.0"),
    (dict(loudness_target=-14.0), api.LOUDNESS_TARGET, "-14.0 given without a loudness mode"),
])
def test_options_not_offered_are_refused_naming_the_field(options, field, message):
    with pytest.raises(EncodingOptionError, match=message) as caught:
        AudioEncoding(**options)
    assert caught.value.field == field and str(caught.value).startswith(f"{field}: ")


def test_lufs_needs_one_gating_block():
    AudioEncoding(loudness="lufs").check_duration(0.4)
    AudioEncoding(loudness="peak").check_duration(0.05)
    with pytest.raises(EncodingOptionError, match="lufs needs a clip of at least 0.4 s") as caught:
        AudioEncoding(loudness="lufs").check_duration(0.2)
    assert caught.value.field == api.LOUDNESS


def test_format_of_path():
    assert [format_of_path(p) for p in ("a.wav", "dir.v2/B.FLAC", "x.ogg", "y.oga")] == ["wav", "flac", "ogg", "ogg"]
    for name in ("song.mp3", "noext", "archive.wav/song"):
        with pytest.raises(EncodingOptionError, match="cannot tell the format"):
            format_of_path(name)


def test_the_longest_clip_at_the_highest_rate_encodes_as_ogg():
    """60 s at 48 kHz: written in one call, libvorbis overflowed the stack and killed the process (segfault)."""
    longest = api.LENGTH_RANGE.maximum
    audio = np.random.default_rng(1).uniform(-0.3, 0.3, int(longest * 16000)).astype(np.float32)
    delivered = deliver(audio, RATE, AudioEncoding("ogg", output_sampling_rate=48000))
    assert soundfile.info(io.BytesIO(delivered.file)).frames == int(longest * 48000)


def test_format_of_path_prefers_the_given_format_when_the_name_fits_it():
    assert format_of_path("a.wav", preferred="wav24") == "wav24"
    assert format_of_path("a.data", preferred="ogg") == "ogg"
    assert format_of_path("a.flac", preferred="wav24") == "flac"
