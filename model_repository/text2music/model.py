"""text2music: prompt (+ options) → 16 kHz waveforms, from the AudioLDM graphs, with in-flight batching; delivered
as raw samples or encoded files (musicgen.delivery, off the engine's thread).

A thin adapter: request parsing and validation live in musicgen.protocol, the batching engine in
musicgen.audioldm.engine, candidate ranking and its response tensors in musicgen.audioldm.ranking. `execute` only
validates and enqueues; the engine thread runs every request in flight together and answers each when its
waveforms are ready (or it was cancelled, or failed). The same code serves `text2music_stream`, whose config is
decoupled: it streams a progress response per denoising step before the result.
"""
import json
import threading
from pathlib import Path

import numpy as np

from musicgen import triton_glue
from musicgen.audioldm.engine import EngineLimits, Job
from musicgen.audioldm.pipeline import AudioLDMRecipe
from musicgen.audioldm.ranking import has_audio_encoder, response_outputs
from musicgen.delivery import Delivery
from musicgen.devices import instance_device_id
from musicgen.params import TEXT2MUSIC_PARAMETERS, capture_lengths, read_parameters
from musicgen.protocol import parse_text_to_music
from musicgen.stage_graphs import open_stage_graphs
from musicgen_client import interface as api


class TritonPythonModel:
    def initialize(self, args):
        model_config = json.loads(args["model_config"])
        params = read_parameters(model_config, TEXT2MUSIC_PARAMETERS)
        self.decoupled = triton_glue.is_decoupled(model_config)
        repository = Path(args["model_repository"]).parent
        graphs = [c.name for c in api.AUDIOLDM_COMPONENTS]
        graphs += [api.AUDIOLDM_CLAP_AUDIO] if has_audio_encoder(repository) else []
        run_stage = open_stage_graphs(params, repository, graphs, triton_glue.bls_stage,
                                      instance_device_id(args, params["device"]))
        limits = EngineLimits(**{k: params[k] for k in EngineLimits.__dataclass_fields__})
        self.recipe = AudioLDMRecipe(triton_glue.verified_version_dir(args), run_stage, limits, repository=repository)
        if params["cuda_graphs"]:  # capture each batch size's graphs now, not under the first clients
            self.recipe.warm_up(min(limits.max_active, limits.max_batch_requests),
                                capture_lengths(params["capture_lengths"]))
        self.recipe.engine.observer = triton_glue.EngineMetrics(model_config["name"])  # from here on: real traffic
        self.input_names = [t.name for t in api.TEXT2MUSIC_INPUTS]
        self.delivery = Delivery()  # encodes off the engine's thread
        self.loop = threading.Thread(target=self.recipe.engine.run_forever, name="audioldm-engine", daemon=True)
        self.loop.start()

    def execute(self, requests):
        triton_glue.respond_later(requests, self._submit, self.decoupled)
        return None

    def _submit(self, request, respond):
        parsed = parse_text_to_music(triton_glue.read_inputs(request, self.input_names),
                                     self.recipe.config.min_audio_length_in_s)
        outputs = {api.SEED: np.array([parsed.options.seed], dtype=np.int64),
                   api.SAMPLING_RATE: np.array([self.recipe.config.sampling_rate], dtype=np.int32)}
        ranker = self.recipe.engine.ranker
        deliver = self.delivery.finisher(outputs, parsed.encoding, respond)

        def finish(result, error):
            deliver(None if error else response_outputs(result, parsed.options, ranker), error)

        self.recipe.engine.submit(Job(
            parsed.prompt, parsed.options, finish,
            keep_going=triton_glue.watch(request, respond),
            progress=(lambda step, total: respond.progress(api.DENOISE, step, total)) if self.decoupled else None))

    def finalize(self):
        self.recipe.engine.stop()
        self.loop.join(timeout=30)
        self.delivery.close()
