"""caption: an encoded image → MiniGPT4's caption (its answer to "describe the image, ", cut at '#').

A thin adapter over musicgen.llm.recipes.CaptionRecipe served through the shared in-flight engine stage
(musicgen.llm.stage_model): `prepare` decodes and encodes the image and embeds the prompt around it; the engine
decodes and answers.
"""
import numpy as np

from musicgen.llm.recipes import CaptionRecipe
from musicgen.llm.stage_model import TextGenStage
from musicgen.protocol import parse_caption
from musicgen_client import interface as api


class TritonPythonModel(TextGenStage):
    stage, step_graph, recipe_class = api.CAPTION, api.MINIGPT4_LLM_STEP, CaptionRecipe
    components, inputs = api.MINIGPT4_COMPONENTS, api.CAPTION_INPUTS

    def prepare(self, inputs):
        parsed = parse_caption(inputs)
        generation = self.recipe.config.generation_for(parsed.max_new_tokens)
        feeds = self.recipe.prepare(parsed.image, generation)

        def answer(result):
            return {api.CAPTION: np.array([self.recipe.caption_of(result).caption.encode("utf-8")], dtype=object)}

        return feeds, generation, answer
