"""musicgen.audioldm.clap_features against what AudioLDM2's score_waveforms feeds CLAP: librosa's resampling to the
extractor's rate, then paddlenlp's own ClapFeatureExtractor (the unfused models' rand_trunc + repeatpad path)."""
import json

import librosa
import numpy as np
import pytest
from paddlenlp.transformers import ClapFeatureExtractor

from musicgen.audioldm.clap_features import PREPROCESSOR_FILE, ClapFeatureConfig, ClapFeatures

# The real laion/clap-htsat-unfused settings, and a short-window one as the tiny preset uses.
SETTINGS = {
    "real": dict(feature_size=64, sampling_rate=48000, hop_length=480, fft_window_size=1024, max_length_s=10,
                 frequency_min=50, frequency_max=14000, truncation="rand_trunc", padding="repeatpad"),
    "tiny": dict(feature_size=16, sampling_rate=48000, hop_length=480, fft_window_size=1024, max_length_s=2,
                 frequency_min=50, frequency_max=14000, truncation="rand_trunc", padding="repeatpad"),
}


def extractor_pair(tmp_path, settings):
    (tmp_path / PREPROCESSOR_FILE).write_text(json.dumps(settings))
    return ClapFeatures(ClapFeatureConfig.load(tmp_path), 16000), ClapFeatureExtractor(**settings)


def waveforms(count, samples, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    tones = np.sin(2 * np.pi * rng.uniform(100, 4000, (count, 1)) * t) * 0.3
    return (tones + 0.05 * rng.standard_normal((count, samples))).astype(np.float32)


def eager_features(extractor, audio):
    """AudioLDM2Pipeline.score_waveforms' preprocessing, verbatim but for the framework."""
    resampled = librosa.resample(audio, orig_sr=16000, target_sr=extractor.sampling_rate)
    return extractor(list(resampled), return_tensors="np", sampling_rate=extractor.sampling_rate).input_features


@pytest.mark.parametrize("name,seconds", [("real", 5.0), ("real", 0.37), ("tiny", 1.0), ("tiny", 2.0)])
def test_features_equal_paddlenlp_extractor(tmp_path, name, seconds):
    ours, eager = extractor_pair(tmp_path, SETTINGS[name])
    audio = waveforms(3, int(seconds * 16000))
    got, expected = ours(audio), np.asarray(eager_features(eager, audio), dtype=np.float32)
    assert got.shape == expected.shape == (3, 1, int(SETTINGS[name]["max_length_s"] * 100) + 1, SETTINGS[name]["feature_size"])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_a_longer_clip_is_one_seeded_crop(tmp_path):
    """Longer than max_length_s: the extractor crops at a random offset; ours draws it from the given seed, so a
    seed gives the same features, and the crop is one of the extractor's possible crops."""
    ours, eager = extractor_pair(tmp_path, SETTINGS["tiny"])
    audio = waveforms(1, int(3.5 * 16000))
    first = ours(audio, seeds=[(7, 0)])
    assert np.array_equal(first, ours(audio, seeds=[(7, 0)]))
    resampled = librosa.resample(audio[0], orig_sr=16000, target_sr=48000)
    start = int(np.random.default_rng([7, 0]).integers(0, len(resampled) - 96000 + 1))
    crop = eager([resampled[start:start + 96000]], return_tensors="np", sampling_rate=48000).input_features
    np.testing.assert_allclose(first, np.asarray(crop, dtype=np.float32), rtol=0, atol=1e-4)


def test_other_extractor_modes_are_refused(tmp_path):
    (tmp_path / PREPROCESSOR_FILE).write_text(json.dumps(SETTINGS["real"] | {"truncation": "fusion"}))
    with pytest.raises(ValueError, match="truncation"):
        ClapFeatureConfig.load(tmp_path)
