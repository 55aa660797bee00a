"""caption: an encoded image → MiniGPT4's caption (its answer to "describe the image, ", cut at '#').

A thin adapter over musicgen.llm.recipes.CaptionRecipe and its in-flight engine (musicgen.llm.engine): `execute`
encodes the image and enqueues; the engine's thread decodes up to `max_active` requests together, one shared
decode step per token, and answers each when its caption is ready (or it was cancelled, or failed). The
minigpt4_* graphs run in this process or, with the `graphs` parameter set to served, over BLS.
"""
import json
import time
from pathlib import Path

import numpy as np

from musicgen import triton_glue
from musicgen.devices import instance_device_id
from musicgen.llm.engine import LLMEngineLimits
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
        limits = LLMEngineLimits(parameters["max_active"], parameters["max_waiting"])
        self.engine = self.recipe.decoder.batched(limits, triton_glue.EngineMetrics(api.CAPTION))
        self.engine.start()
        self.input_names = [t.name for t in api.CAPTION_INPUTS]
        self.metrics = triton_glue.GenerationMetrics(api.CAPTION)

    def execute(self, requests):
        triton_glue.respond_later(requests, self._submit)
        return None

    def _submit(self, request, respond):
        parsed = parse_caption(triton_glue.read_inputs(request, self.input_names))
        generation = self.recipe.config.generation_for(parsed.max_new_tokens)
        feeds = self.recipe.prepare(parsed.image, generation)
        start = time.monotonic()

        def outputs(result):
            self.metrics.observe(result.token_ids.shape[1], time.monotonic() - start)
            return {api.CAPTION: np.array([self.recipe.caption_of(result).caption.encode("utf-8")], dtype=object)}

        future = self.engine.submit(feeds, generation, keep_going=triton_glue.watch(request, respond))
        triton_glue.answer_when_done(future, respond, outputs)

    def finalize(self):
        self.engine.close()
