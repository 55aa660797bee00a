"""chatglm: a prompt → ChatGLM's answer, as paddlenlp's ChatGLM Taskflow gives it (the original's settings).

A thin adapter over musicgen.llm.recipes.ChatGLMRecipe and its in-flight engine (musicgen.llm.engine): `execute`
only tokenizes and enqueues; the engine's thread decodes up to `max_active` requests together, one shared decode
step per token, and answers each when its text is ready (or it was cancelled, or failed). The chatglm_llm_step
graph runs in this process or, with the `graphs` parameter set to served, over BLS.
"""
import json
import time
from pathlib import Path

import numpy as np

from musicgen import triton_glue
from musicgen.devices import instance_device_id
from musicgen.llm.engine import LLMEngineLimits
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
        limits = LLMEngineLimits(parameters["max_active"], parameters["max_waiting"])
        self.engine = self.recipe.decoder.batched(limits, triton_glue.EngineMetrics(api.CHATGLM))
        self.engine.start()
        self.input_names = [t.name for t in api.CHATGLM_INPUTS]
        self.metrics = triton_glue.GenerationMetrics(api.CHATGLM)

    def execute(self, requests):
        triton_glue.respond_later(requests, self._submit)
        return None

    def _submit(self, request, respond):
        parsed = parse_text(triton_glue.read_inputs(request, self.input_names))
        generation = self.recipe.config.generation_for(parsed.max_new_tokens)
        prompt, feeds = self.recipe.prepare(parsed.prompt, generation)
        start = time.monotonic()

        def outputs(result):
            self.metrics.observe(result.token_ids.shape[1], time.monotonic() - start)
            return {api.TEXT: np.array([self.recipe.text_of(prompt, result).text.encode("utf-8")], dtype=object)}

        future = self.engine.submit(feeds, generation, keep_going=triton_glue.watch(request, respond))
        triton_glue.answer_when_done(future, respond, outputs)

    def finalize(self):
        self.engine.close()
