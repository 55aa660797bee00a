"""AudioLDM text → waveform as a recipe over four graph stages, the way ppdiffusers' AudioLDMPipeline computes it.

The stages are reached through one callable, `run_stage(model_name, feeds) -> outputs`, so the same recipe
drives BLS calls inside Triton, local graphs in tests and benchmarks, or anything else. The tokenizer, the
scheduler (ppdiffusers' own class, from the exported scheduler config) and the seeded initial noise are the
ones ppdiffusers uses, so a seed gives the waveform the eager pipeline gives.
"""
from __future__ import annotations

import inspect
import logging
import threading
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from musicgen_client import interface as api

from ..protocol import AudioOptions, CancelledError
from .config import SCHEDULER_DIR, TOKENIZER_DIR, AudioLDMConfig

logger = logging.getLogger(__name__)

StageRunner = Callable[[str, Dict[str, np.ndarray]], List[np.ndarray]]
Progress = Callable[[int, int], bool]  # (steps done, total) -> keep going?


def _stage(run_stage: StageRunner, name: str, feeds: Dict[str, np.ndarray]) -> np.ndarray:
    """Call one component with its interface's input names; return its single output."""
    spec = api.COMPONENTS_BY_NAME[name]
    if {t.name for t in spec.inputs} != set(feeds):
        raise ValueError(f"{name}: feeds {sorted(feeds)} do not match {[t.name for t in spec.inputs]}")
    return run_stage(name, feeds)[0]


class AudioLDMRecipe:
    """Text (and options) → waveform. Build once per process; __call__ is safe for sequential requests."""

    _rng_lock = threading.Lock()

    def __init__(self, assets: Path, run_stage: StageRunner):
        from ppdiffusers.transformers import RobertaTokenizer

        assets = Path(assets)
        self.config = AudioLDMConfig.load(assets)
        self.tokenizer = RobertaTokenizer.from_pretrained(str(assets / TOKENIZER_DIR))
        self._scheduler_class, self._scheduler_config = _scheduler(assets / SCHEDULER_DIR)
        self.run_stage = run_stage

    # 1. prompt → conditioning ------------------------------------------------------------------
    def _encode(self, text: str, max_length: int) -> np.ndarray:
        tokens = self.tokenizer(
            text, padding="max_length", max_length=max_length, truncation=True, return_attention_mask=True,
            return_tensors="np",
        )
        return _stage(self.run_stage, api.AUDIOLDM_TEXT_ENCODER, {
            "input_ids": np.asarray(tokens["input_ids"], dtype=np.int64).reshape(1, -1),
            "attention_mask": np.asarray(tokens["attention_mask"], dtype=np.int64).reshape(1, -1),
        })

    def encode_prompt(self, prompt: str, negative_prompt: Optional[str], guided: bool) -> np.ndarray:
        """[uncond; cond] embeddings for guidance, else [cond]. The negative prompt is padded to the embedding
        width, not the tokenizer's limit: ppdiffusers does so, and the tokens must match its."""
        embeds = self._encode(prompt, self.tokenizer.model_max_length)
        if not guided:
            return embeds
        negative = self._encode(negative_prompt or "", embeds.shape[1])
        return np.concatenate([negative, embeds], axis=0)

    # 2. seeded noise -----------------------------------------------------------------------------
    def initial_latents(self, frames: int, generator, init_noise_sigma: float):
        import paddle
        from ppdiffusers.utils.paddle_utils import randn_tensor

        c = self.config
        shape = [1, c.latent_channels, frames // c.vae_scale_factor, c.mel_bins // c.vae_scale_factor]
        return randn_tensor(shape, generator=generator, dtype=paddle.float32) * init_noise_sigma

    # 3. denoise ----------------------------------------------------------------------------------
    def denoise(self, scheduler, latents, embeds: np.ndarray, step_kwargs: dict, options: AudioOptions,
                progress: Optional[Progress]):
        import paddle

        guided = embeds.shape[0] == 2
        timesteps = scheduler.timesteps
        for i, t in enumerate(timesteps):
            model_input = paddle.concat([latents] * 2) if guided else latents
            model_input = scheduler.scale_model_input(model_input, t)
            noise = _stage(self.run_stage, api.AUDIOLDM_UNET, {
                "sample": model_input.numpy().astype(np.float32),
                "timestep": np.full([model_input.shape[0]], float(t), dtype=np.float32),
                "class_labels": embeds,
            })
            if guided:
                uncond, cond = noise[:1], noise[1:]
                noise = uncond + options.guidance_scale * (cond - uncond)
            latents = scheduler.step(paddle.to_tensor(noise), t, latents, **step_kwargs).prev_sample
            if progress is not None and not progress(i + 1, len(timesteps)):
                raise CancelledError(f"cancelled after {i + 1} of {len(timesteps)} steps")
        return latents

    # 4. latents → waveform -------------------------------------------------------------------------
    def __call__(self, prompt: str, options: AudioOptions, progress: Optional[Progress] = None) -> np.ndarray:
        import paddle

        frames, samples = self.config.frames_and_samples(options.audio_length_in_s)
        guided = options.guidance_scale > 1.0
        embeds = self.encode_prompt(prompt, options.negative_prompt, guided)
        scheduler = self._scheduler_class.from_config(self._scheduler_config)  # per-run state: one each
        scheduler.set_timesteps(options.num_inference_steps)
        # ppdiffusers' "generator" on CPU names a state of paddle's global RNG: the noise and any stochastic
        # scheduler step draw from it, so no other request may draw while this one runs.
        with self._rng_lock:
            tracker = paddle.Generator()
            generator = tracker.manual_seed(options.seed)
            try:
                latents = self.initial_latents(frames, generator, float(scheduler.init_noise_sigma))
                step_kwargs = _step_kwargs(scheduler, generator)
                latents = self.denoise(scheduler, latents, embeds, step_kwargs, options, progress)
            finally:
                tracker.remove(generator)  # otherwise every request leaves its RNG state behind
        mel = _stage(self.run_stage, api.AUDIOLDM_VAE_DECODER, {"latents": latents.numpy().astype(np.float32)})
        waveform = _stage(self.run_stage, api.AUDIOLDM_VOCODER, {"mel_spectrogram": mel})
        return waveform[0, :samples].astype(np.float32)


def _step_kwargs(scheduler, generator) -> dict:
    """eta (DDIM's, 0 as ppdiffusers defaults) and the generator, for the schedulers whose step takes them."""
    accepted = inspect.signature(scheduler.step).parameters
    kwargs = {}
    if "eta" in accepted:
        kwargs["eta"] = 0.0
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs


def _scheduler(scheduler_dir: Path):
    """The ppdiffusers scheduler class named in the exported config (DDIM for cvssp/audioldm), and the config."""
    import json

    import ppdiffusers

    name = json.loads((scheduler_dir / "scheduler_config.json").read_text())["_class_name"]
    cls = getattr(ppdiffusers, name, None)
    if cls is None:
        raise ValueError(f"scheduler {name!r} from {scheduler_dir} is not a ppdiffusers scheduler")
    return cls, cls.load_config(str(scheduler_dir))
