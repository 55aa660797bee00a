"""caption: an encoded image → MiniGPT4's caption (its answer to "describe the image, ", cut at '#').

A thin adapter over musicgen.llm.recipes.CaptionRecipe; the graphs are the minigpt4_* models, called over BLS.
"""
from pathlib import Path

import numpy as np

from musicgen import triton_glue
from musicgen.llm.recipes import CaptionRecipe
from musicgen.protocol import parse_caption
from musicgen_client import interface as api


class TritonPythonModel:
    def initialize(self, args):
        self.recipe = CaptionRecipe(Path(args["model_repository"]) / args["model_version"], triton_glue.bls_stage)
        self.input_names = [t.name for t in api.CAPTION_INPUTS]

    def execute(self, requests):
        return triton_glue.respond_each(requests, self._caption)

    def _caption(self, request):
        parsed = parse_caption(triton_glue.read_inputs(request, self.input_names))
        caption = self.recipe(parsed.image, self.recipe.config.generation_for(parsed.max_new_tokens)).caption
        return {api.CAPTION: np.array([caption.encode("utf-8")], dtype=object)}
