"""chatglm: a prompt → ChatGLM's answer, as paddlenlp's ChatGLM Taskflow gives it (the original's settings).

A thin adapter over musicgen.llm.recipes.ChatGLMRecipe. The chatglm_llm_step graph runs in this process (the KV
cache stays in the runtime between decode steps) or, with the `graphs` parameter set to served, over BLS.
"""
import json
import time
from pathlib import Path

import numpy as np

from musicgen import triton_glue
from musicgen.devices import instance_device_id
from musicgen.llm.recipes import ChatGLMRecipe
from musicgen.stage_graphs import open_stage_graphs
from musicgen.params import TEXTGEN_PARAMETERS, read_parameters
from musicgen.protocol import parse_text
from musicgen_client import interface as api


class TritonPythonModel:
    def initialize(self, args):
        parameters = read_parameters(json.loads(args["model_config"]), TEXTGEN_PARAMETERS)
        graphs = open_stage_graphs(parameters, Path(args["model_repository"]).parent,
                                   [c.name for c in api.CHATGLM_COMPONENTS], triton_glue.bls_stage,
                                   instance_device_id(args, parameters["device"]))
        assets = triton_glue.verified_version_dir(args)
        self.recipe = ChatGLMRecipe(assets, graphs, graphs.step(api.CHATGLM_LLM_STEP))
        self.input_names = [t.name for t in api.CHATGLM_INPUTS]
        self.metrics = triton_glue.GenerationMetrics(api.CHATGLM)

    def execute(self, requests):
        return triton_glue.respond_each(requests, self._chat)

    def _chat(self, request):
        parsed = parse_text(triton_glue.read_inputs(request, self.input_names))
        generation = self.recipe.config.generation_for(parsed.max_new_tokens)
        start = time.monotonic()
        result = self.recipe(parsed.prompt, generation, keep_going=triton_glue.watch(request))
        self.metrics.observe(len(result.token_ids), time.monotonic() - start)
        return {api.TEXT: np.array([result.text.encode("utf-8")], dtype=object)}
