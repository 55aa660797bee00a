"""text2music: prompt (+ options) → 16 kHz waveform, from the AudioLDM graphs, with in-flight batching.

A thin adapter: request parsing and validation live in musicgen.protocol, the batching engine in
musicgen.audioldm.engine. `execute` only validates and enqueues; the engine thread runs every request in
flight together and answers each when its waveform is ready (or it was cancelled, or failed).
"""
import json
import threading
from pathlib import Path

import numpy as np

from musicgen import triton_glue
from musicgen.audioldm.engine import EngineLimits, Job
from musicgen.audioldm.pipeline import AudioLDMRecipe
from musicgen.params import TEXT2MUSIC_PARAMETERS, read_parameters
from musicgen.protocol import parse_text_to_music
from musicgen.stage_graphs import open_stage_graphs
from musicgen_client import interface as api


class TritonPythonModel:
    def initialize(self, args):
        params = read_parameters(json.loads(args["model_config"]), TEXT2MUSIC_PARAMETERS)
        run_stage = open_stage_graphs(params, Path(args["model_repository"]).parent,
                                      [c.name for c in api.AUDIOLDM_COMPONENTS], triton_glue.bls_stage)
        limits = EngineLimits(**{k: params[k] for k in EngineLimits.__dataclass_fields__})
        self.recipe = AudioLDMRecipe(triton_glue.verified_version_dir(args), run_stage, limits,
                                     triton_glue.EngineMetrics(api.TEXT2MUSIC))
        self.input_names = [t.name for t in api.TEXT2MUSIC_INPUTS]
        self.loop = threading.Thread(target=self.recipe.engine.run_forever, name="audioldm-engine", daemon=True)
        self.loop.start()

    def execute(self, requests):
        triton_glue.respond_later(requests, self._submit)
        return None

    def _submit(self, request, respond):
        parsed = parse_text_to_music(triton_glue.read_inputs(request, self.input_names),
                                     self.recipe.config.min_audio_length_in_s)
        outputs = {api.SEED: np.array([parsed.options.seed], dtype=np.int64),
                   api.SAMPLING_RATE: np.array([self.recipe.config.sampling_rate], dtype=np.int32)}
        self.recipe.engine.submit(Job(
            parsed.prompt, parsed.options,
            finish=lambda audio, error: respond(None if error else {api.AUDIO: audio, **outputs}, error),
            keep_going=triton_glue.watch(request)))

    def finalize(self):
        self.recipe.engine.stop()
        self.loop.join(timeout=30)
