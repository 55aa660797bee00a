"""AudioLDM text → waveform over four graph stages, the way ppdiffusers' AudioLDMPipeline computes it.

The stages are reached through one callable, `run_stage(model_name, feeds) -> outputs`, so the same engine
drives graphs loaded in this process (the served text2music model, tests, benchmarks) or BLS calls to the
served component models. `AudioLDMRecipe` builds the in-flight batching engine (musicgen.audioldm.engine) from
an exported asset folder; calling it runs one request to the end in the caller's thread, exactly as the
server runs it among others. The tokenizer, the scheduler and the seeded initial noise are framework-free
ports proven equal to ppdiffusers' (tests/unit/test_light_*.py), so a seed gives the waveform the eager
pipeline gives and serving needs neither paddle nor ppdiffusers. Given the model repository, candidates are ranked
by its CLAP audio encoder when it has one (musicgen.audioldm.ranking).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from ..protocol import AudioOptions
from .config import SCHEDULER_DIR, TOKENIZER_DIR, AudioLDMConfig
from ..inflight import EngineObserver
from .engine import AudioLDMEngine, Candidates, EngineLimits, Job, Progress, Ranker, StageRunner
from .noise import seeded_normal
from .ranking import open_ranker
from .schedulers import load_scheduler, read_scheduler_config
from .tokenizer import RobertaBPETokenizer


class AudioLDMRecipe:
    """Text (and options) → waveform. Build once per process; `engine` serves concurrent requests."""

    def __init__(self, assets: Path, run_stage: StageRunner, limits: EngineLimits = EngineLimits(),
                 observer: EngineObserver = EngineObserver(), repository: Optional[Path] = None):
        """`repository`: the model repository whose `audioldm_clap_audio` (reached through `run_stage`) ranks
        candidates; None, or a repository without it: candidates come back unranked, as drawn."""
        assets = Path(assets)
        self.config = AudioLDMConfig.load(assets)
        scheduler_config = read_scheduler_config(assets / SCHEDULER_DIR)  # once; each request steps its own
        ranker = open_ranker(repository, self.config.sampling_rate, run_stage) if repository else Ranker()
        self.engine = AudioLDMEngine(
            self.config, RobertaBPETokenizer(assets / TOKENIZER_DIR), lambda: load_scheduler(scheduler_config),
            seeded_normal, run_stage, limits, observer, ranker)

    def __call__(self, prompt: str, options: AudioOptions, progress: Optional[Progress] = None) -> np.ndarray:
        """The request's (best) waveform."""
        return self.generate([(prompt, options)], progress)[0].audio[0]

    def warm_up(self, max_requests: int, lengths: Sequence[float], steps: int = 2) -> None:
        """Run requests of each length at every batch size the engine rounds to (powers of two up to
        `max_requests`), so state a runtime builds on first use of a shape (CUDA graphs: a capture costs far
        more than a replay) exists before the first client waits on it."""
        for length in lengths:
            requests = 1
            while requests <= max_requests:
                self.generate([("warm-up", AudioOptions(num_inference_steps=steps, audio_length_in_s=length,
                                                        seed=seed)) for seed in range(requests)])
                requests *= 2

    def generate(self, requests: Sequence[tuple], progress: Optional[Progress] = None) -> List[Candidates]:
        """Run (prompt, options) requests together to the end, in this thread; their candidates in request order."""
        results: List[Optional[Candidates]] = [None] * len(requests)
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
