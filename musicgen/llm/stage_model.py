"""What the `caption` and `chatglm` stage models share: a Triton Python model in front of an in-flight decode engine.

`execute` only parses and prepares each request (tokenizing; for the caption, the image encoder and the prompt
embedding) and enqueues it; the engine's thread (musicgen.llm.engine) decodes up to `max_active` requests together,
one shared decode step per token, and answers each through its response sender when its text is ready, it was
cancelled, or it failed. The step graph runs in the stage's process or, with `graphs: served`, over BLS.
A stage model subclasses `TextGenStage`, names its family and says how a request becomes a sequence (`prepare`).
"""
import json
import time
from pathlib import Path
from typing import Callable, Dict, Sequence, Tuple

import numpy as np

from musicgen_client import interface as api

from .. import triton_glue
from ..devices import instance_device_id
from ..generation import FeedsBuilder, GenerationConfig, GenerationResult
from ..params import TEXTGEN_PARAMETERS, read_parameters
from ..stage_graphs import open_stage_graphs
from .engine import LLMEngineLimits

Answer = Callable[[GenerationResult], Dict[str, np.ndarray]]  # a finished sequence → the response's outputs


class TextGenStage:
    stage: str  # the served model's name (api.CAPTION, api.CHATGLM)
    components: Sequence[api.ComponentSpec]  # its family's graphs
    step_graph: str  # the one the engine decodes with
    inputs: Sequence[api.TensorSpec]
    recipe_class: type  # musicgen.llm.recipes.CaptionRecipe or ChatGLMRecipe

    def prepare(self, inputs: Dict[str, np.ndarray]) -> Tuple[FeedsBuilder, GenerationConfig, Answer]:
        """A request's inputs → the sequence to decode, its settings, and how its result becomes the response."""
        raise NotImplementedError

    def initialize(self, args):
        parameters = read_parameters(json.loads(args["model_config"]), TEXTGEN_PARAMETERS)
        graphs = open_stage_graphs(parameters, Path(args["model_repository"]).parent,
                                   [c.name for c in self.components], triton_glue.bls_stage,
                                   instance_device_id(args, parameters["device"]))
        self.recipe = self.recipe_class(triton_glue.verified_version_dir(args), graphs, graphs.step(self.step_graph))
        limits = LLMEngineLimits(parameters["max_active"], parameters["max_waiting"])
        self.engine = self.recipe.decoder.batched(limits, triton_glue.EngineMetrics(self.stage))
        self.engine.start()
        self.input_names = [t.name for t in self.inputs]
        self.metrics = triton_glue.GenerationMetrics(self.stage)

    def execute(self, requests):
        triton_glue.respond_later(requests, self._submit)
        return None

    def _submit(self, request, respond):
        feeds, generation, answer = self.prepare(triton_glue.read_inputs(request, self.input_names))
        start = time.monotonic()

        def outputs(result):
            self.metrics.observe(result.token_ids.shape[1], time.monotonic() - start)
            return answer(result)

        future = self.engine.submit(feeds, generation, keep_going=triton_glue.watch(request, respond))
        triton_glue.answer_when_done(future, respond, outputs)

    def finalize(self):
        self.engine.close()
