"""image2music: an encoded image (+ AudioLDM and delivery options) → caption, music prompt and audio.

A thin adapter over musicgen.image2music, which calls the served caption, chatglm and text2music models.
Requests run on a pool of workers, so that concurrent ones reach text2music together and share its batches;
a full pool answers 503 at once. A cancelled request (or one past its timeout) stops the stage it is in.
The same code serves `image2music_stream` (decoupled): it streams each stage's progress, the denoising steps
relayed from `text2music_stream`, before the result.
"""
import functools
import json
from pathlib import Path

import numpy as np

from musicgen import triton_glue
from musicgen.admission import BoundedPool
from musicgen.audioldm.config import AudioLDMConfig
from musicgen.delivery import delivered_outputs
from musicgen.image2music import ImageToMusic
from musicgen.params import IMAGE2MUSIC_PARAMETERS, read_parameters
from musicgen.protocol import parse_image_to_music
from musicgen_client import interface as api


class TritonPythonModel:
    def initialize(self, args):
        model_config = json.loads(args["model_config"])
        params = read_parameters(model_config, IMAGE2MUSIC_PARAMETERS)
        self.decoupled = triton_glue.is_decoupled(model_config)
        triton_glue.verified_version_dir(args)
        # The shortest clip text2music accepts, to reject a bad length before the LLMs run.
        text2music_assets = Path(args["model_repository"]).parent / api.TEXT2MUSIC / "1"
        self.min_audio_length_in_s = AudioLDMConfig.load(text2music_assets).min_audio_length_in_s
        self.input_names = [t.name for t in api.IMAGE2MUSIC_INPUTS]
        self.pool = BoundedPool(params["max_concurrent"], params["max_waiting"], "image2music")
        self.metrics = triton_glue.RequestMetrics(model_config["name"])

    def execute(self, requests):
        triton_glue.respond_from_pool(requests, self.pool, self._generate, self.decoupled, self.metrics)
        return None

    def _generate(self, request, respond):
        watch = triton_glue.watch(request, respond)
        parsed = parse_image_to_music(triton_glue.read_inputs(request, self.input_names), self.min_audio_length_in_s)
        # Streaming, text2music's denoising steps are relayed from its streaming twin.
        call_audio = functools.partial(triton_glue.bls_stream, api.TEXT2MUSIC_STREAM,
                                       parent=watch) if self.decoupled else None
        result = ImageToMusic(functools.partial(triton_glue.bls_call, parent=watch), call_audio)(
            parsed, keep_going=watch, progress=respond.progress)
        return {
            api.CAPTION: np.array([result.caption.encode("utf-8")], dtype=object),
            api.MUSIC_PROMPT: np.array([result.music_prompt.encode("utf-8")], dtype=object),
            **delivered_outputs(result.outputs, parsed.encoding),
        }

    def finalize(self):
        self.pool.shutdown()
