"""caption: an encoded image → MiniGPT4's caption (its answer to "describe the image, ", cut at '#').

A thin adapter over musicgen.llm.recipes.CaptionRecipe. The minigpt4_* graphs run in this process (the KV cache
stays in the runtime between decode steps) or, with the `graphs` parameter set to served, over BLS.
"""
import json
import time
from pathlib import Path

import numpy as np

from musicgen import triton_glue
from musicgen.devices import instance_device_id
from musicgen.llm.recipes import CaptionRecipe
from musicgen.stage_graphs import open_stage_graphs
from musicgen.params import TEXTGEN_PARAMETERS, read_parameters
from musicgen.protocol import parse_caption
from musicgen_client import interface as api


class TritonPythonModel:
    def initialize(self, args):
        parameters = read_parameters(json.loads(args["model_config"]), TEXTGEN_PARAMETERS)
        graphs = open_stage_graphs(parameters, Path(args["model_repository"]).parent,
                                   [c.name for c in api.MINIGPT4_COMPONENTS], triton_glue.bls_stage,
                                   instance_device_id(args, parameters["device"]))
        assets = triton_glue.verified_version_dir(args)
        self.recipe = CaptionRecipe(assets, graphs, graphs.step(api.MINIGPT4_LLM_STEP))
        self.input_names = [t.name for t in api.CAPTION_INPUTS]
        self.metrics = triton_glue.GenerationMetrics(api.CAPTION)

    def execute(self, requests):
        return triton_glue.respond_each(requests, self._caption)

    def _caption(self, request):
        parsed = parse_caption(triton_glue.read_inputs(request, self.input_names))
        generation = self.recipe.config.generation_for(parsed.max_new_tokens)
        start = time.monotonic()
        result = self.recipe(parsed.image, generation, keep_going=triton_glue.watch(request))
        self.metrics.observe(len(result.token_ids), time.monotonic() - start)
        return {api.CAPTION: np.array([result.caption.encode("utf-8")], dtype=object)}
