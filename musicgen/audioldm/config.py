"""The numbers the AudioLDM recipe needs, read from the components' own configs (never literals).

Export writes them as `pipeline.json` beside the orchestrator, with the tokenizer and scheduler config, so
the server never needs the weights folder.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

PIPELINE_FILE = "pipeline.json"
TOKENIZER_DIR = "tokenizer"
SCHEDULER_DIR = "scheduler"


@dataclass(frozen=True)
class AudioLDMConfig:
    latent_channels: int  # the UNet's input channels
    vae_scale_factor: int  # mel frames / bins per latent row / column
    mel_bins: int  # the vocoder's input width (model_in_dim)
    hop_length: int  # waveform samples per mel frame: product of the vocoder's upsample rates
    sampling_rate: int
    text_embed_dim: int  # CLAP projection width; the pipeline pads the negative prompt to this many tokens
    default_audio_length_in_s: float  # what ppdiffusers uses when no length is given

    @classmethod
    def from_weights(cls, weights: Path) -> "AudioLDMConfig":
        """Derive from a ppdiffusers `save_pretrained` AudioLDM folder."""
        weights = Path(weights)

        def cfg(sub):
            return json.loads((weights / sub / "config.json").read_text())

        unet, vae, vocoder, text = cfg("unet"), cfg("vae"), cfg("vocoder"), cfg("text_encoder")
        vae_scale = 2 ** (len(vae["block_out_channels"]) - 1)
        hop = math.prod(vocoder["upsample_rates"])
        return cls(
            latent_channels=unet["in_channels"],
            vae_scale_factor=vae_scale,
            mel_bins=vocoder["model_in_dim"],
            hop_length=hop,
            sampling_rate=vocoder["sampling_rate"],
            text_embed_dim=text["projection_dim"],
            default_audio_length_in_s=unet["sample_size"] * vae_scale * hop / vocoder["sampling_rate"],
        )

    @classmethod
    def load(cls, folder: Path) -> "AudioLDMConfig":
        return cls(**json.loads((Path(folder) / PIPELINE_FILE).read_text()))

    def save(self, folder: Path) -> None:
        (Path(folder) / PIPELINE_FILE).write_text(json.dumps(asdict(self), indent=2))

    @property
    def seconds_per_frame(self) -> float:
        return self.hop_length / self.sampling_rate

    @property
    def min_audio_length_in_s(self) -> float:
        """The shortest clip the model can make: one latent row."""
        return self.seconds_per_frame * self.vae_scale_factor

    def frames_and_samples(self, audio_length_in_s: float) -> tuple:
        """Mel frames to generate and samples to keep, exactly as ppdiffusers' AudioLDMPipeline computes them:
        frames round up to a multiple of the VAE factor; the waveform is cut back to the asked length."""
        frames = int(audio_length_in_s / self.seconds_per_frame)
        if frames % self.vae_scale_factor:
            frames = math.ceil(frames / self.vae_scale_factor) * self.vae_scale_factor
        return frames, int(audio_length_in_s * self.sampling_rate)
