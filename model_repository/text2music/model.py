"""text2music: prompt (+ options) → 16 kHz waveform, orchestrating the AudioLDM component models over BLS.

A thin adapter: request parsing and validation live in musicgen.protocol, the recipe in
musicgen.audioldm.pipeline; this file only connects them to Triton.
"""
from pathlib import Path

import numpy as np

from musicgen import triton_glue
from musicgen.audioldm.pipeline import AudioLDMRecipe
from musicgen.protocol import parse_text_to_music
from musicgen_client import interface as api


class TritonPythonModel:
    def initialize(self, args):
        assets = Path(args["model_repository"]) / args["model_version"]
        self.recipe = AudioLDMRecipe(assets, triton_glue.bls_stage)
        self.input_names = [t.name for t in api.TEXT2MUSIC_INPUTS]

    def execute(self, requests):
        return triton_glue.respond_each(requests, self._generate)

    def _generate(self, request):
        inputs = triton_glue.read_inputs(request, self.input_names)
        parsed = parse_text_to_music(inputs, self.recipe.config.min_audio_length_in_s)
        audio = self.recipe(parsed.prompt, parsed.options, progress=lambda done, total: not request.is_cancelled())
        return {
            api.AUDIO: audio,
            api.SEED: np.array([parsed.options.seed], dtype=np.int64),
            api.SAMPLING_RATE: np.array([self.recipe.config.sampling_rate], dtype=np.int32),
        }
