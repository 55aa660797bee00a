"""The pipelines without a server: eager Paddle models and the exported graphs in-process, timed in a child process.

Each way of running a pipeline is ONE small function below that returns `render(workload) -> Rendered`; they
are the only places that call the project's recipes or the eager models, so an API change is mended here once:

- `exported_text2music`: `AudioLDMRecipe` over the graphs as the served text2music config sets them up
  (`open_stage_graphs`: device, precisions, CUDA graphs), on onnxruntime or paddle.inference;
- `exported_image2music`: `ImageToMusicPrompt` (caption + ChatGLM recipes) then the same AudioLDM recipe;
- `eager_text2music`: ppdiffusers' `AudioLDMPipeline` on the save_pretrained folder the graphs came from;
- `eager_image2music`: paddlenlp's MiniGPT4 and ChatGLM `generate`, called as the original application calls
  them (tests/llm/test_token_parity.py's references), then the eager AudioLDM pipeline.

`measure` runs one kind (eager, onnxruntime or paddle) in a fresh spawned process, so its peak RSS is its own and
paddle's global state (RNG, allocator) never leaks from one kind into the next or into the harness. The
pipelines of a kind share that process: image2music renders its audio with the same AudioLDM as text2music.
"""
from __future__ import annotations

import concurrent.futures
import io
import logging
import multiprocessing
import resource
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from musicgen.params import IN_PROCESS, TEXT2MUSIC_PARAMETERS, read_parameters
from musicgen.precision import FP32
from musicgen.protocol import AudioOptions
from musicgen.repository import read_config
from musicgen.runtime import BACKENDS, RuntimeOptions, local_stage_runner
from musicgen.stage_graphs import open_stage_graphs
from musicgen_client import flow
from musicgen_client import interface as api

from .workload import TEXT2MUSIC, Workload

log = logging.getLogger("benchmarks.local")

EAGER = "eager"
RUNTIMES = BACKENDS  # the exported graphs' runtimes: onnxruntime, paddle (paddle.inference)
KINDS = (EAGER,) + RUNTIMES


@dataclass
class Rendered:
    """What a pipeline made for one request."""

    audio: np.ndarray
    caption: Optional[str] = None  # image2music only
    music_prompt: Optional[str] = None


@dataclass(frozen=True)
class Weights:
    """The save_pretrained folders the repository was exported from: the eager side's inputs."""

    audioldm: Path
    minigpt4: Path
    chatglm: Path


@dataclass(frozen=True)
class LocalRun:
    """Pipelines run one way in one process: `kind` is "eager" or an exported graph runtime."""

    kind: str
    pipelines: Tuple[str, ...]
    repository: Path
    weights: Weights
    threads: int = 0  # intra-op threads of the exported graphs; 0: the runtime decides


Render = Callable[[Workload], Rendered]


def _audio_options(workload: Workload) -> AudioOptions:
    return AudioOptions(**workload.audio_options(workload.seed))


# ---- exported graphs, in-process ------------------------------------------------------------------------
def exported_text2music(repository: Path, options: RuntimeOptions) -> Render:
    """The served text2music's engine and graphs, built as its config says (device, precisions, CUDA graphs),
    with the backend and threads of `options`; candidates ranked as served when the repository has a CLAP audio
    encoder."""
    from musicgen.audioldm.pipeline import AudioLDMRecipe
    from musicgen.audioldm.ranking import has_audio_encoder

    parameters = read_parameters(read_config(repository / api.TEXT2MUSIC), TEXT2MUSIC_PARAMETERS)
    parameters.update(graphs=IN_PROCESS, backend=options.backend, threads=options.threads)
    if options.backend != "onnxruntime":  # the other runtime has one precision and no CUDA graphs
        parameters.update(precision=FP32, cuda_graphs=False)
    names = [c.name for c in api.AUDIOLDM_COMPONENTS]
    names += [api.AUDIOLDM_CLAP_AUDIO] if has_audio_encoder(repository) else []
    graphs = open_stage_graphs(parameters, repository, names, None)
    recipe = AudioLDMRecipe(repository / api.TEXT2MUSIC / "1", graphs, repository=repository)
    return lambda workload: Rendered(recipe(workload.prompt, _audio_options(workload)))


def exported_image2music(repository: Path, options: RuntimeOptions, text2music: Render) -> Render:
    from musicgen.llm.recipes import ImageToMusicPrompt

    names = [c.name for c in api.MINIGPT4_COMPONENTS + api.CHATGLM_COMPONENTS]
    chain = ImageToMusicPrompt.from_repository(repository, local_stage_runner(repository, names, options))

    def render(workload: Workload) -> Rendered:
        caption, music = chain(workload.image)
        prompt = flow.audio_prompt(music.music_prompt, caption.caption, api.MAX_PROMPT_BYTES)  # as image2music does
        return Rendered(text2music(workload.with_prompt(prompt)).audio, caption.caption, prompt)

    return render


# ---- eager Paddle models ------------------------------------------------------------------------------------
def eager_text2music(weights: Path) -> Render:
    import paddle
    from ppdiffusers import AudioLDMPipeline

    pipe = AudioLDMPipeline.from_pretrained(str(weights))
    pipe.set_progress_bar_config(disable=True)

    def render(workload: Workload) -> Rendered:
        options = _audio_options(workload)
        audio = pipe(workload.prompt, negative_prompt=options.negative_prompt,
                     num_inference_steps=options.num_inference_steps, audio_length_in_s=options.audio_length_in_s,
                     guidance_scale=options.guidance_scale, generator=paddle.Generator().manual_seed(options.seed),
                     ).audios[0]
        return Rendered(np.asarray(audio, dtype=np.float32))

    return render


def eager_image2music(repository: Path, weights: Weights, text2music: Render) -> Render:
    """The original flow on paddlenlp's models, with the generation settings the repository serves (token budgets
    and stop tokens from its textgen.json), in float32 as exported; then `text2music` (the eager AudioLDM)."""
    from paddlenlp.transformers import (ChatGLMForCausalLM, ChatGLMTokenizer, MiniGPT4ForConditionalGeneration,
                                        MiniGPT4Processor)
    from PIL import Image

    from musicgen.llm import prompts
    from musicgen.llm.recipes import TextGenConfig

    minigpt4 = MiniGPT4ForConditionalGeneration.from_pretrained(
        str(weights.minigpt4), vit_dtype="float32", qformer_dtype="float32", llama_dtype="float32")
    processor = MiniGPT4Processor.from_pretrained(str(weights.minigpt4))
    chatglm = ChatGLMForCausalLM.from_pretrained(str(weights.chatglm), dtype="float32")
    tokenizer = ChatGLMTokenizer.from_pretrained(str(weights.chatglm))
    minigpt4.eval(), chatglm.eval()
    caption_config = TextGenConfig.load(repository / api.CAPTION / "1")
    chat_config = TextGenConfig.load(repository / api.CHATGLM / "1")
    stop = list(caption_config.generation.stop_token_ids)

    def render(workload: Workload) -> Rendered:
        image = Image.open(io.BytesIO(workload.image)).convert("RGB")
        inputs = processor([image], caption_config.question, caption_config.prompt_template)
        ids, _ = minigpt4.generate(  # MiniGPT4Task's kwargs; its nested eos list
            **inputs, max_length=caption_config.generation.max_new_tokens, eos_token_id=[stop[:1], stop[1:]],
            num_beams=1, top_p=1.0, top_k=0, repetition_penalty=1.0, length_penalty=0.0, temperature=1.0,
            decode_strategy="greedy_search")
        caption = prompts.caption_from_answer(processor.batch_decode(ids)[0])
        inputs = tokenizer([flow.music_prompt_request(caption)], return_tensors="pd", padding=True,
                           max_length=chat_config.max_input_tokens or None, truncation=True, truncation_side="left")
        ids, _ = chatglm.generate(  # the ChatGLM Taskflow's kwargs: top_k=1 sampling, i.e. greedy
            **inputs, decode_strategy="sampling", top_k=1, top_p=1.0, temperature=1.0,
            max_length=chat_config.generation.max_new_tokens, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, use_cache=True)
        answer = tokenizer.decode(ids[0].tolist(), skip_special_tokens=True).strip("\n")
        prompt = flow.audio_prompt(flow.music_prompt_from_answer(answer), caption, api.MAX_PROMPT_BYTES)
        return Rendered(text2music(workload.with_prompt(prompt)).audio, caption, prompt)

    return render


def build(run: LocalRun) -> Dict[str, Render]:
    """The render function of each pipeline of `run`; image2music renders its audio with text2music's."""
    if run.kind == EAGER:
        text2music = eager_text2music(run.weights.audioldm)
        image2music = lambda: eager_image2music(run.repository, run.weights, text2music)  # noqa: E731
    else:
        options = RuntimeOptions(backend=run.kind, threads=run.threads)
        text2music = exported_text2music(run.repository, options)
        image2music = lambda: exported_image2music(run.repository, options, text2music)  # noqa: E731
    return {pipeline: text2music if pipeline == TEXT2MUSIC else image2music() for pipeline in run.pipelines}


# ---- timing, in a child process --------------------------------------------------------------------------------
def _time(label: str, render: Render, workload: Workload, repeats: int) -> Dict:
    start = time.perf_counter()
    first = render(workload)  # warm-up: first-run allocations; also the output compared with the server's
    latencies: List[float] = [] if repeats else [time.perf_counter() - start]
    for i in range(repeats):
        start = time.perf_counter()
        render(workload)
        latencies.append(time.perf_counter() - start)
        log.info("%s: request %d/%d %.3f s", label, i + 1, repeats, latencies[-1])
    return {"latencies_s": latencies, "median_s": statistics.median(latencies), "min_s": min(latencies),
            "warm_up_only": not repeats,
            "audio": first.audio, "caption": first.caption, "music_prompt": first.music_prompt}


def _measure_here(run: LocalRun, workload: Workload, repeats: int) -> List[Dict]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    start = time.perf_counter()
    renders = build(run)
    load_s = time.perf_counter() - start
    results = [{"pipeline": pipeline, "kind": run.kind, "load_s": load_s,
                **_time(f"{pipeline}/{run.kind}", render, workload, repeats)} for pipeline, render in renders.items()]
    # Linux reports ru_maxrss in KiB: the process's own peak, imports and every loaded pipeline included.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return [dict(result, peak_rss_mb=peak) for result in results]


def measure(run: LocalRun, workload: Workload, repeats: int) -> List[Dict]:
    """Per pipeline of `run`: render `workload` once to warm up, then `repeats` timed times; all in one fresh
    process, whose peak RSS every result carries."""
    log.info("%s %s: loading in a child process", run.kind, "+".join(run.pipelines))
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measure_here, run, workload, repeats).result()


# ---- a resident child: one kind loaded once, timed request by request (sweep.py --paired) ------------------------
_RESIDENT: Dict[str, Render] = {}


def _load_resident(run: LocalRun) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    _RESIDENT.update(build(run))


def _render_seconds(pipeline: str, workload: Workload) -> float:
    start = time.perf_counter()
    _RESIDENT[pipeline](workload)
    return time.perf_counter() - start


@contextmanager
def resident(run: LocalRun) -> Iterator[Callable[[str, Workload], float]]:
    """`run` loaded once in a fresh child process, kept while the context is open; yields `seconds(pipeline,
    workload)`: one render there, timed on the child's own clock (the waveform does not travel back)."""
    log.info("%s %s: loading in a resident child process", run.kind, "+".join(run.pipelines))
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_load_resident, initargs=(run,)) as pool:
        yield lambda pipeline, workload: pool.submit(_render_seconds, pipeline, workload).result()
