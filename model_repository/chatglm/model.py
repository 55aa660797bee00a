"""chatglm: a prompt → ChatGLM's answer, as paddlenlp's ChatGLM Taskflow gives it (the original's settings).

A thin adapter over musicgen.llm.recipes.ChatGLMRecipe; the graph is chatglm_llm_step, called over BLS.
"""
from pathlib import Path

import numpy as np

from musicgen import triton_glue
from musicgen.llm.recipes import ChatGLMRecipe
from musicgen.protocol import parse_text
from musicgen_client import interface as api


class TritonPythonModel:
    def initialize(self, args):
        self.recipe = ChatGLMRecipe(Path(args["model_repository"]) / args["model_version"], triton_glue.bls_stage)
        self.input_names = [t.name for t in api.CHATGLM_INPUTS]

    def execute(self, requests):
        return triton_glue.respond_each(requests, self._chat)

    def _chat(self, request):
        parsed = parse_text(triton_glue.read_inputs(request, self.input_names))
        text = self.recipe(parsed.prompt, self.recipe.config.generation_for(parsed.max_new_tokens)).text
        return {api.TEXT: np.array([text.encode("utf-8")], dtype=object)}
