"""Audio length → mel frames → samples, as ppdiffusers' AudioLDMPipeline computes it."""
import pytest

from musicgen.audioldm.config import AudioLDMConfig

# cvssp/audioldm-s numbers: VAE factor 4, 64 mel bins, hop 160 at 16 kHz.
REAL = AudioLDMConfig(latent_channels=8, vae_scale_factor=4, mel_bins=64, hop_length=160, sampling_rate=16000,
                      text_embed_dim=512, default_audio_length_in_s=5.12)


@pytest.mark.parametrize("seconds,frames,samples", [
    (5.0, 500, 80000),     # 500 is a multiple of 4: no rounding
    (5.12, 512, 81920),    # ppdiffusers' default length
    (1.0, 100, 16000),
    (1.03, 104, 16480),    # 103 frames round up to 104; the waveform is cut back to 1.03 s
    (0.04, 4, 640),        # the minimum: one latent row
])
def test_frames_and_samples(seconds, frames, samples):
    assert REAL.frames_and_samples(seconds) == (frames, samples)


def test_minimum_length():
    assert REAL.min_audio_length_in_s == pytest.approx(0.04)
    assert REAL.seconds_per_frame == pytest.approx(0.01)


def test_save_load_round_trip(tmp_path):
    REAL.save(tmp_path)
    assert AudioLDMConfig.load(tmp_path) == REAL
