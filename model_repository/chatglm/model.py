"""chatglm: a prompt → ChatGLM's answer, as paddlenlp's ChatGLM Taskflow gives it (the original's settings).

A thin adapter over musicgen.llm.recipes.ChatGLMRecipe served through the shared in-flight engine stage
(musicgen.llm.stage_model): `prepare` only tokenizes; the engine decodes and answers.
"""
import numpy as np

from musicgen.llm.recipes import ChatGLMRecipe
from musicgen.llm.stage_model import TextGenStage
from musicgen.protocol import parse_text
from musicgen_client import interface as api


class TritonPythonModel(TextGenStage):
    stage, step_graph, recipe_class = api.CHATGLM, api.CHATGLM_LLM_STEP, ChatGLMRecipe
    components, inputs = api.CHATGLM_COMPONENTS, api.CHATGLM_INPUTS

    def prepare(self, inputs):
        parsed = parse_text(inputs)
        generation = self.recipe.config.generation_for(parsed.max_new_tokens)
        prompt, feeds = self.recipe.prepare(parsed.prompt, generation)

        def answer(result):
            return {api.TEXT: np.array([self.recipe.text_of(prompt, result).text.encode("utf-8")], dtype=object)}

        return feeds, generation, answer
