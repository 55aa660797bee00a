"""image2music: an encoded image (+ AudioLDM options) → caption, music prompt and audio.

A thin adapter over musicgen.image2music, which calls the served caption, chatglm and text2music models.
Requests run on a pool of workers, so that concurrent ones reach text2music together and share its batches.
"""
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from musicgen import triton_glue
from musicgen.audioldm.config import AudioLDMConfig
from musicgen.image2music import ImageToMusic
from musicgen.params import IMAGE2MUSIC_PARAMETERS, read_parameters
from musicgen.protocol import parse_image_to_music
from musicgen_client import interface as api


class TritonPythonModel:
    def initialize(self, args):
        params = read_parameters(json.loads(args["model_config"]), IMAGE2MUSIC_PARAMETERS)
        # The shortest clip text2music accepts, to reject a bad length before the LLMs run.
        text2music_assets = Path(args["model_repository"]).parent / api.TEXT2MUSIC / "1"
        self.min_audio_length_in_s = AudioLDMConfig.load(text2music_assets).min_audio_length_in_s
        self.flow = ImageToMusic(triton_glue.bls_call)
        self.input_names = [t.name for t in api.IMAGE2MUSIC_INPUTS]
        self.pool = ThreadPoolExecutor(params["max_concurrent"], thread_name_prefix="image2music")
        self.metrics = triton_glue.RequestMetrics(api.IMAGE2MUSIC)

    def execute(self, requests):
        triton_glue.respond_from_pool(requests, self.pool, self._generate, self.metrics)
        return None

    def _generate(self, request):
        parsed = parse_image_to_music(triton_glue.read_inputs(request, self.input_names), self.min_audio_length_in_s)
        result = self.flow(parsed, keep_going=lambda: not request.is_cancelled())
        return {
            api.CAPTION: np.array([result.caption.encode("utf-8")], dtype=object),
            api.MUSIC_PROMPT: np.array([result.music_prompt.encode("utf-8")], dtype=object),
            **result.outputs,
        }

    def finalize(self):
        self.pool.shutdown(wait=True, cancel_futures=True)
