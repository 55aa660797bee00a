"""AudioLDM text → waveform over four graph stages, the way ppdiffusers' AudioLDMPipeline computes it.

The stages are reached through one callable, `run_stage(model_name, feeds) -> outputs`, so the same engine
drives graphs loaded in this process (the served text2music model, tests, benchmarks) or BLS calls to the
served component models. `AudioLDMRecipe` builds the in-flight batching engine (musicgen.audioldm.engine) from
an exported asset folder; calling it runs one request to the end in the caller's thread, exactly as the
server runs it among others. The tokenizer, the scheduler and the seeded initial noise reproduce
ppdiffusers', so a seed gives the waveform the eager pipeline gives.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from ..protocol import AudioOptions
from .config import SCHEDULER_DIR, TOKENIZER_DIR, AudioLDMConfig
from .engine import AudioLDMEngine, EngineLimits, EngineObserver, Job, Progress, StageRunner


class AudioLDMRecipe:
    """Text (and options) → waveform. Build once per process; `engine` serves concurrent requests."""

    def __init__(self, assets: Path, run_stage: StageRunner, limits: EngineLimits = EngineLimits(),
                 observer: EngineObserver = EngineObserver()):
        assets = Path(assets)
        self.config = AudioLDMConfig.load(assets)
        self.engine = AudioLDMEngine(
            self.config, _PaddleTokenizer(assets / TOKENIZER_DIR), _paddle_scheduler_factory(assets / SCHEDULER_DIR),
            _paddle_noise, run_stage, limits, observer)

    def __call__(self, prompt: str, options: AudioOptions, progress: Optional[Progress] = None) -> np.ndarray:
        return self.generate([(prompt, options)], progress)[0]

    def generate(self, requests: Sequence[tuple], progress: Optional[Progress] = None) -> List[np.ndarray]:
        """Run (prompt, options) requests together to the end, in this thread; waveforms in request order."""
        results: List[Optional[np.ndarray]] = [None] * len(requests)
        errors: List[BaseException] = []

        def finisher(index):
            def finish(audio, error):
                if error is not None:
                    errors.append(error)
                results[index] = audio
            return finish

        for index, (prompt, options) in enumerate(requests):
            self.engine.submit(Job(prompt, options, finisher(index), progress=progress))
        while not self.engine.idle:
            self.engine.step()
        if errors:
            raise errors[0]
        return results


# ---- ppdiffusers' own tokenizer, scheduler and noise (paddle), behind the engine's small interfaces ----------
class _PaddleTokenizer:
    def __init__(self, folder: Path):
        from ppdiffusers.transformers import RobertaTokenizer

        self._tokenizer = RobertaTokenizer.from_pretrained(str(folder))
        self.model_max_length = self._tokenizer.model_max_length
        self.pad_token_id = self._tokenizer.pad_token_id

    def encode(self, text: str, max_length: int) -> List[int]:
        return list(self._tokenizer(text, truncation=True, max_length=max_length)["input_ids"])


class _PaddleScheduler:
    """A ppdiffusers scheduler with numpy in and out (DDIM with eta 0 draws no noise in its step)."""

    def __init__(self, scheduler):
        self._scheduler = scheduler
        self.init_noise_sigma = float(scheduler.init_noise_sigma)

    def set_timesteps(self, steps: int) -> None:
        self._scheduler.set_timesteps(steps)

    @property
    def timesteps(self):
        return self._scheduler.timesteps.numpy()

    def scale_model_input(self, sample: np.ndarray, t) -> np.ndarray:
        import paddle

        return self._scheduler.scale_model_input(paddle.to_tensor(sample), t).numpy()

    def step(self, noise: np.ndarray, t, latents: np.ndarray) -> np.ndarray:
        import paddle

        kwargs = {"eta": 0.0} if "eta" in _parameters(self._scheduler.step) else {}
        return self._scheduler.step(paddle.to_tensor(noise), paddle.to_tensor(t), paddle.to_tensor(latents),
                                    **kwargs).prev_sample.numpy()


def _parameters(fn):
    import inspect

    return inspect.signature(fn).parameters


def _paddle_scheduler_factory(folder: Path):
    import json

    import ppdiffusers

    name = json.loads((folder / "scheduler_config.json").read_text())["_class_name"]
    cls = getattr(ppdiffusers, name, None)
    if cls is None:
        raise ValueError(f"scheduler {name!r} from {folder} is not a ppdiffusers scheduler")
    config = cls.load_config(str(folder))
    return lambda: _PaddleScheduler(cls.from_config(config))


_rng_lock = threading.Lock()


def _paddle_noise(shape: Sequence[int], seed: int) -> np.ndarray:
    import paddle
    from ppdiffusers.utils.paddle_utils import randn_tensor

    # ppdiffusers' "generator" on CPU names a state of paddle's global RNG: nobody else may draw meanwhile.
    with _rng_lock:
        tracker = paddle.Generator()
        generator = tracker.manual_seed(seed)
        try:
            return randn_tensor(list(shape), generator=generator, dtype=paddle.float32).numpy()
        finally:
            tracker.remove(generator)
