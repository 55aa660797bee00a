"""Prefill and decode speed of the two LLM stages (MiniGPT4 caption, ChatGLM), every way they run, in one run.

    python benchmarks/llm_decode.py --build build/llm-test --new-tokens 64 --contexts 64 512 2048 \
        --out benchmarks/results/llm-decode-cpu-tiny.md
    python benchmarks/llm_decode.py --build build/llm-wide --preset wide --llms chatglm --ways in_process \
        --backends onnxruntime --precisions fp32 fp16 int8-dynamic --out benchmarks/results/llm-precision-cpu-chatglm-wide.md

`--build` is a folder laid out as tests/llm builds it (`model_repository/` with the minigpt4 and chatglm graphs and
stages, `weights/minigpt4-<preset>`, `weights/chatglm-<preset>`). Same weights, prompt and settings everywhere:
greedy (ChatGLM's top_k 1 sampling), no stop token, so every run makes exactly the asked number of tokens.

- eager: paddlenlp `generate` as the original application calls it (float32, as exported);
- in_process/<backend>: the stage recipe, its step graph in process reading the stage's KV cache buffers in place
  (the served default);
- in_process/onnxruntime/<precision>, with `--precisions`: the same on the graphs' ONNX variants (export
  `--precision`); `tokens = fp32` counts the leading tokens equal to the fp32 in-process run's;
- numpy/<backend>: the same recipe with the cache buffers handed to the graph runner as numpy feeds each step (the
  served-graph path, without Triton's shared memory);
- served/graphs=<mode>: the `caption` and `chatglm` models through a real tritonserver (HTTP), their `graphs`
  parameter in_process (default) or served (every step a BLS call carrying the cache).

Prefill = the time of a 1-token request (the whole stage: tokenizing, image encoding, prompt embedding included);
decode tokens/s = (N - 1) / (t(N) - t(1)); the minimum of `--repeats` runs each. Per-token decode time at each
context C: the step graph alone after a prefill of C positions (random embeddings / the prompt's ids repeated), min
and median of `--steps` steps; with `--batches`, the same at the first context for B rows at once.

In-flight batching (way `inflight`): the stage recipe with its in-flight engine (musicgen.llm.engine, the served
stages' decoder) on a thread, `--concurrency` callers each sending `--rounds` requests of `--new-tokens` tokens
(different prompts / images), with `--max-active` rows (1 decodes one request at a time): generated tokens/s over
the wall time, the stage's whole work (tokenizing, image encoding, prefill) included. Way `served_inflight`: the
same callers over HTTP to the `caption` and `chatglm` models of a tritonserver whose stages have that `max_active`.

    python benchmarks/llm_decode.py --ways inflight served_inflight --backends onnxruntime --contexts \
        --new-tokens 32 --concurrency 1 2 4 8 --max-active 1 8 --rounds 3 --threads 1 \
        --out benchmarks/results/llm-inflight-cpu-tiny.md
"""
from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "client")]

from musicgen.llm.engine import LLMEngineLimits  # noqa: E402
from musicgen.llm.feeds import ChatGLMFeeds, LlamaEmbedsFeeds, chatglm_prompt_inputs  # noqa: E402
from musicgen.llm.kv_cache import CachedStep, KVCache  # noqa: E402
from musicgen.llm.recipes import CaptionRecipe, ChatGLMRecipe  # noqa: E402
from musicgen.llm.step_session import cache_dtype  # noqa: E402
from musicgen.manifest import write_manifest  # noqa: E402
from musicgen.precision import FP32, PRECISIONS  # noqa: E402
from musicgen.stage_graphs import InProcessGraphs, ServedGraphs  # noqa: E402
from musicgen.runtime import RuntimeOptions, local_stage_runner  # noqa: E402
from musicgen_client import flow  # noqa: E402
from musicgen_client import interface as api  # noqa: E402

logger = logging.getLogger("llm_decode")
LLMS = {api.CAPTION: [c.name for c in api.MINIGPT4_COMPONENTS], api.CHATGLM: [c.name for c in api.CHATGLM_COMPONENTS]}
CAPTION_TEXT = "The image shows a cat on a marble table"


def test_image(seed: int = 0) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def best_time(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def speeds(run: Callable[[int], object], new_tokens: int, repeats: int) -> Dict[str, float]:
    """run(n) makes exactly n tokens; prefill from n = 1, decode rate from the difference to n = new_tokens."""
    run(new_tokens)  # warm-up
    one = best_time(lambda: run(1), repeats)
    full = best_time(lambda: run(new_tokens), repeats)
    return {"prefill_ms": one * 1e3, "decode_tok_s": (new_tokens - 1) / (full - one), "total_s": full}


# ---- the ways a stage runs ------------------------------------------------------------------------------
def recipe_runs(repository: Path, graphs, llms: List[str]) -> Dict[str, Callable[[int], object]]:
    def budget(recipe, n):
        return recipe.config.generation.updated(max_new_tokens=n, stop_token_ids=())

    runs = {}
    if api.CAPTION in llms:
        caption = make_recipe(repository, graphs, api.CAPTION)
        image = test_image()
        runs[api.CAPTION] = lambda n: caption(image, budget(caption, n))
    if api.CHATGLM in llms:
        chat = make_recipe(repository, graphs, api.CHATGLM)
        prompt = flow.music_prompt_request(CAPTION_TEXT)
        runs[api.CHATGLM] = lambda n: chat(prompt, budget(chat, n))
    return runs


def eager_runs(build: Path, preset: str, llms: List[str]) -> Dict[str, Callable[[int], object]]:
    """paddlenlp's generate on the weights the graphs were exported from (`<build>/weights/<family>-<preset>`)."""
    runs = {}
    if api.CAPTION in llms:
        runs[api.CAPTION] = eager_caption(build / "weights" / f"minigpt4-{preset}")
    if api.CHATGLM in llms:
        runs[api.CHATGLM] = eager_chat(build / "weights" / f"chatglm-{preset}")
    return runs


def eager_caption(weights: Path) -> Callable[[int], object]:
    from PIL import Image
    from paddlenlp.transformers import MiniGPT4ForConditionalGeneration, MiniGPT4Processor
    from musicgen.llm import prompts

    minigpt4 = MiniGPT4ForConditionalGeneration.from_pretrained(
        str(weights), vit_dtype="float32", qformer_dtype="float32", llama_dtype="float32")
    minigpt4.eval()
    processor = MiniGPT4Processor.from_pretrained(str(weights))
    image = Image.open(io.BytesIO(test_image())).convert("RGB")
    never = [[minigpt4.config.text_config.vocab_size]]  # an id no model emits: no early stop

    def caption(n):  # as the original MiniGPT4Task, image preprocessing included
        inputs = processor([image], prompts.MINIGPT4_QUESTION, prompts.MINIGPT4_PROMPT)
        return minigpt4.generate(**inputs, max_length=n, eos_token_id=never, num_beams=1, top_p=1.0, top_k=0,
                                 repetition_penalty=1.0, length_penalty=0.0, temperature=1.0,
                                 decode_strategy="greedy_search")

    return caption


def eager_chat(weights: Path) -> Callable[[int], object]:
    from paddlenlp.transformers import ChatGLMForCausalLM, ChatGLMTokenizer

    chatglm = ChatGLMForCausalLM.from_pretrained(str(weights), dtype="float32")
    chatglm.eval()
    tokenizer = ChatGLMTokenizer.from_pretrained(str(weights))

    def chat(n):  # as the ChatGLM Taskflow, tokenization included
        inputs = tokenizer([flow.music_prompt_request(CAPTION_TEXT)], return_tensors="pd", padding=True,
                           max_length=2048, truncation=True, truncation_side="left")
        return chatglm.generate(**inputs, decode_strategy="sampling", top_k=1, top_p=1.0, temperature=1.0,
                                max_length=n, bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=chatglm.config.vocab_size,  # no id stops it early
                                pad_token_id=tokenizer.pad_token_id, use_cache=True)

    return chat


def served_runs(url: str, llms: List[str], value=None) -> Dict[str, Callable[[int], object]]:
    """Each stage through a server's HTTP endpoint, asked about `value` (an image / a prompt; default the
    benchmark's own)."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)

    def infer(model, name, value):
        def run(n):
            inputs = [httpclient.InferInput(name, [1], "BYTES"),
                      httpclient.InferInput(api.MAX_NEW_TOKENS, [1], "INT32")]
            inputs[0].set_data_from_numpy(np.array([value], dtype=object))
            inputs[1].set_data_from_numpy(np.array([n], dtype=np.int32))
            return client.infer(model, inputs)
        return run

    runs = {api.CAPTION: lambda: infer(api.CAPTION, api.IMAGE, value or test_image()),
            api.CHATGLM: lambda: infer(api.CHATGLM, api.PROMPT,
                                       (value or flow.music_prompt_request(CAPTION_TEXT)).encode())}
    return {llm: runs[llm]() for llm in llms}


def benchmark_repository(source: Path, graphs_mode: str, backend: str, threads: int, out: Path,
                         max_active: int = 8) -> Path:
    """A copy of `source` whose stages never stop early and reach their graphs as `graphs_mode` says, in process
    with `backend` and `threads`, decoding up to `max_active` requests together (graph folders are linked, not
    copied)."""
    for folder in source.iterdir():
        if not (folder / "config.pbtxt").exists():
            continue
        if folder.name not in LLMS:
            (out / folder.name).symlink_to(folder.resolve())
            continue
        shutil.copytree(folder, out / folder.name)
        textgen = out / folder.name / "1" / "textgen.json"
        values = json.loads(textgen.read_text())
        values["generation"]["stop_token_ids"] = []
        textgen.write_text(json.dumps(values))
        write_manifest(out / folder.name / "1")  # as export would: the stage checks its files at load
        config = out / folder.name / "config.pbtxt"
        text = config.read_text().replace('key: "graphs" value: { string_value: "in_process" }',
                                          f'key: "graphs" value: {{ string_value: "{graphs_mode}" }}')
        text = text.replace('key: "max_active" value: { string_value: "8" }',
                            f'key: "max_active" value: {{ string_value: "{max_active}" }}')
        if graphs_mode == "in_process":  # served: the graph models' own configs decide
            text = text.replace('key: "backend" value: { string_value: "onnxruntime" }',
                                f'key: "backend" value: {{ string_value: "{backend}" }}')
            text = text.replace('key: "threads" value: { string_value: "0" }',
                                f'key: "threads" value: {{ string_value: "{threads}" }}')
        config.write_text(text)
    return out


def make_recipe(repository: Path, graphs, llm: str):
    if llm == api.CAPTION:
        return CaptionRecipe(repository / api.CAPTION / "1", graphs, graphs.step(api.MINIGPT4_LLM_STEP))
    return ChatGLMRecipe(repository / api.CHATGLM / "1", graphs, graphs.step(api.CHATGLM_LLM_STEP))


# ---- in-flight batching: throughput under concurrent requests -----------------------------------------------
def inflight_input(llm: str, index: int):
    """Caller `index`'s own image / prompt."""
    return test_image(index) if llm == api.CAPTION else flow.music_prompt_request(f"{CAPTION_TEXT} number {index}")


def concurrent_throughput(callers: List[Callable[[], Callable[[], int]]], rounds: int) -> Dict[str, float]:
    """Each caller (a factory, run on the caller's own thread, of the call that sends its request and returns the
    tokens generated) sends `rounds` requests, all callers at once: generated tokens per second of wall time, and
    the mean request latency. A caller's error is raised here."""
    tokens, latencies, errors = [], [], []

    def caller(make_call) -> None:
        try:
            call = make_call()
            for _ in range(rounds):
                start = time.perf_counter()
                tokens.append(call())
                latencies.append(time.perf_counter() - start)
        except Exception as exc:  # noqa: BLE001 - re-raised on the main thread
            errors.append(exc)

    callers[0]()()  # warm-up
    threads = [threading.Thread(target=caller, args=(make_call,)) for make_call in callers]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return {"tok_s": sum(tokens) / wall, "latency_s": statistics.mean(latencies), "requests": len(tokens)}


def inflight_in_process(repository: Path, graphs, llm: str, concurrency: int, max_active: int, new_tokens: int,
                        rounds: int) -> Dict[str, float]:
    """`concurrency` callers through the stage recipe's in-flight engine of `max_active` rows, in this process."""
    recipe = make_recipe(repository, graphs, llm)
    generation = recipe.config.generation.updated(max_new_tokens=new_tokens, stop_token_ids=())
    engine = recipe.decoder.batched(LLMEngineLimits(max_active=max_active))
    engine.start()

    def caller(index: int) -> Callable[[], Callable[[], int]]:
        value = inflight_input(llm, index)
        return lambda: lambda: len(recipe(value, generation).token_ids)

    try:
        return concurrent_throughput([caller(i) for i in range(concurrency)], rounds)
    finally:
        engine.close()


def inflight_served(url: str, llm: str, concurrency: int, new_tokens: int, rounds: int) -> Dict[str, float]:
    """`concurrency` HTTP callers, a client each (tritonclient's HTTP client stays on its thread), to a served stage
    whose copy never stops early: `new_tokens` tokens a request."""
    def caller(index: int) -> Callable[[], Callable[[], int]]:
        def make_call() -> Callable[[], int]:
            run = served_runs(url, [llm], inflight_input(llm, index))[llm]

            def call() -> int:
                run(new_tokens)
                return new_tokens

            return call

        return make_call

    return concurrent_throughput([caller(i) for i in range(concurrency)], rounds)


# ---- per-token decode time against the context length ----------------------------------------------------
def context_feeds(repository: Path, graphs, llm: str, context: int, batch: int):
    """(feeds builder, the stage's KV dims) for a prompt of `context` positions."""
    if llm == api.CAPTION:
        rng = np.random.default_rng(context)
        recipe = CaptionRecipe(repository / api.CAPTION / "1", graphs)
        hidden = recipe.embed(np.array([[1]])).shape[-1]
        embeds = rng.standard_normal((batch, context, hidden)).astype(np.float32)
        feeds = LlamaEmbedsFeeds(embeds, np.ones((batch, context), np.int64), recipe.embed, recipe.tokenizer.bos_token_id)
        return feeds, recipe.config.kv
    recipe = ChatGLMRecipe(repository / api.CHATGLM / "1", graphs)
    tok = recipe.tokenizer
    text_ids = tok.encode(flow.music_prompt_request(CAPTION_TEXT), add_special_tokens=False)
    ids = tok.with_special_tokens(np.resize(text_ids, context - 2).tolist())  # the prompt's text, repeated
    inputs = chatglm_prompt_inputs([ids] * batch, tok.bos_token_id, tok.mask_token_id, tok.gmask_token_id,
                                   tok.pad_token_id)
    return ChatGLMFeeds(inputs), recipe.config.kv


def per_token_ms(repository: Path, graphs, llm: str, context: int, steps: int, batch: int = 1) -> Dict[str, float]:
    """Decode step time after a prefill of `context` positions: min and median over `steps` (first one dropped:
    it grows the cache by a chunk), the cache as the recipes keep it (`KVCache`, chunked growth)."""
    feeds, kv = context_feeds(repository, graphs, llm, context, batch)
    run = graphs.step(api.MINIGPT4_LLM_STEP if llm == api.CAPTION else api.CHATGLM_LLM_STEP)
    step = CachedStep(run, KVCache(kv, batch, limit=context + steps + 1, dtype=cache_dtype(run)))
    logits = step(feeds.prefill())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        logits = step(feeds.decode(logits.argmax(-1)[:, None].astype(np.int64)))
        times.append(time.perf_counter() - start)
    return {"min_ms": min(times[1:]) * 1e3, "median_ms": statistics.median(times[1:]) * 1e3}


# ---- report ------------------------------------------------------------------------------------------------
def current_rss_gb() -> float:
    """This process's resident memory now (not its peak: what the loaded graphs hold is measured)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


def report(args, rows: List[dict], context_rows: List[dict], inflight_rows: List[dict]) -> str:
    lines = [
        "# LLM stages: prefill and decode, every way they run",
        "",
        f"Command: `python benchmarks/{Path(__file__).name} {shlex.join(sys.argv[1:])}`",
        f"{args.new_tokens} new tokens, no stop token; " + (f"best of {args.repeats}; " if rows else "")
        + f"in-process threads {args.threads or 'default'}. Shared, noisy 2-core machine.",
    ]
    if rows:
        lines += ["", f"| stage | way | prefill ms (1-token request) | decode tokens/s | request s | tokens = fp32 (of "
                  f"{args.new_tokens}) |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['llm']} | {r['way']} | {r['prefill_ms']:.1f} | {r['decode_tok_s']:.0f} | {r['total_s']:.3f} | "
                  f"{r.get('tokens_as_fp32', '')} |" for r in rows]
    if context_rows:
        contexts = sorted({r["context"] for r in context_rows})
        lines += ["", f"Decode step time, ms, min / median of {args.steps - 1} steps, after a prefill of C positions "
                  "(batch B):", "",
                  "| stage | way | graphs GB | B | " + " | ".join(f"C={c}" for c in contexts)
                  + f" | C={contexts[-1]} / C={contexts[0]} (min) |", "|---|---|---|---|" + "---|" * (len(contexts) + 1)]
        for key in dict.fromkeys((r["llm"], r["way"], r["batch"]) for r in context_rows):
            ms = {r["context"]: r for r in context_rows if (r["llm"], r["way"], r["batch"]) == key}
            cells = [f"{ms[c]['min_ms']:.2f} / {ms[c]['median_ms']:.2f}" if c in ms else "" for c in contexts]
            complete = len(ms) == len(contexts)
            ratio = f"{ms[contexts[-1]]['min_ms'] / ms[contexts[0]]['min_ms']:.2f}×" if complete else ""
            loaded = next(iter(ms.values()))["graphs_gb"]
            lines.append(f"| {key[0]} | {key[1]} | {loaded:.2f} | {key[2]} | " + " | ".join(cells) + f" | {ratio} |")
    if inflight_rows:
        lines += ["", f"In-flight batching: {args.new_tokens} new tokens per request, {args.rounds} requests per "
                  "caller, generated tokens/s over the wall time (mean request latency, s):", "",
                  "| stage | way | max_active | " + " | ".join(f"c={c}" for c in args.concurrency) + " |",
                  "|---|---|---|" + "---|" * len(args.concurrency)]
        for key in dict.fromkeys((r["llm"], r["way"], r["max_active"]) for r in inflight_rows):
            at = {r["concurrency"]: r for r in inflight_rows if (r["llm"], r["way"], r["max_active"]) == key}
            cells = [f"{at[c]['tok_s']:.0f} ({at[c]['latency_s']:.2f})" if c in at else "" for c in args.concurrency]
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path, default=Path("build/llm-test"))
    parser.add_argument("--preset", default="tiny", help="names the weights folders under <build>/weights")
    parser.add_argument("--llms", nargs="+", default=list(LLMS), choices=list(LLMS))
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "paddle"], choices=["onnxruntime", "paddle"])
    parser.add_argument("--ways", nargs="+", default=["eager", "in_process", "numpy", "served"],
                        choices=["eager", "in_process", "numpy", "served", "inflight", "served_inflight"])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contexts", nargs="*", type=int, default=[64, 512, 2048])
    parser.add_argument("--steps", type=int, default=16, help="decode steps timed per context")
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 4],
                        help="batch sizes of the decode step, at the first context (would token-level batching pay?)")
    parser.add_argument("--precisions", nargs="+", default=[FP32], choices=PRECISIONS,
                        help="onnxruntime: the graphs' ONNX variants to run in process and numpy (exported with "
                        "--precision); fp32 always runs first, as the tokens' reference")
    parser.add_argument("--prepack", nargs="+", default=["on"], choices=["on", "off"],
                        help="onnxruntime: with and/or without its weight prepacking (model parameter "
                        "prepack_weights; off holds ≈1× the weights instead of ≈1.75×)")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads of the in-process graphs (the served in_process stages' too); "
                        "0: the runtime's choice")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 2, 4, 8],
                        help="way inflight: concurrent callers")
    parser.add_argument("--max-active", nargs="+", type=int, default=[1, 8],
                        help="way inflight: the engine's rows (1 decodes one request at a time)")
    parser.add_argument("--rounds", type=int, default=3, help="way inflight: requests per caller")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    repository = args.build / "model_repository"
    rows, context_rows, inflight_rows = [], [], []

    fp32_tokens: Dict[str, List[int]] = {}  # per LLM, the first fp32 graph run's: what the variants are held to

    def record(way: str, runs: Dict[str, Callable[[int], object]], precision: str = "") -> None:
        for llm, run in runs.items():
            rows.append({"llm": llm, "way": way, **speeds(run, args.new_tokens, args.repeats)})
            if precision:
                ids = list(run(args.new_tokens).token_ids)
                reference = fp32_tokens.setdefault(llm, ids) if precision == FP32 else fp32_tokens[llm]
                rows[-1]["tokens_as_fp32"] = next((i for i, (a, b) in enumerate(zip(reference, ids)) if a != b),
                                                  min(len(reference), len(ids)))
            logger.info("%s", json.dumps(rows[-1]))

    if "eager" in args.ways:
        record("eager", eager_runs(args.build, args.preset, args.llms))
    names = [name for llm in args.llms for name in LLMS[llm]]
    variants = [FP32] + [p for p in args.precisions if p != FP32]
    runtimes = [(b, p, pack) for b in args.backends for p in (variants if b == "onnxruntime" else [FP32])
                for pack in (args.prepack if b == "onnxruntime" else ["on"])]
    for backend, precision, prepack in runtimes:
        options = RuntimeOptions(backend=backend, threads=args.threads, precision=precision,
                                 prepack_weights=prepack == "on")
        ways = {"in_process": lambda: InProcessGraphs(repository, names, options, dict.fromkeys(names, precision)),
                "numpy": lambda: ServedGraphs(local_stage_runner(repository, names, options))}
        if "inflight" in args.ways:
            graphs = ways["in_process"]()
            for llm in args.llms:
                for max_active in args.max_active:
                    for concurrency in args.concurrency:
                        speed = inflight_in_process(repository, graphs, llm, concurrency, max_active, args.new_tokens,
                                                    args.rounds)
                        inflight_rows.append({"llm": llm, "way": f"inflight/{backend}", "max_active": max_active,
                                              "concurrency": concurrency, **speed})
                        logger.info("%s", json.dumps(inflight_rows[-1]))
        for way, make in ways.items():
            if way not in args.ways:
                continue
            graphs = None  # the previous runtime's graphs go first: what these hold is measured alone
            gc.collect()
            before = current_rss_gb()
            graphs = make()
            label = (f"{way}/{backend}" + (f"/{precision}" if len(variants) > 1 else "")
                     + (f"/prepack-{prepack}" if len(args.prepack) > 1 and backend == "onnxruntime" else ""))
            record(label, recipe_runs(repository, graphs, args.llms), precision if len(variants) > 1 else "")
            for llm in args.llms:
                cases = [(c, 1) for c in args.contexts]
                if args.contexts:
                    cases += [(args.contexts[0], b) for b in args.batches if b != 1]
                for context, batch in cases:
                    ms = per_token_ms(repository, graphs, llm, context, args.steps, batch)
                    context_rows.append({"llm": llm, "way": label, "context": context, "batch": batch, **ms})
                    logger.info("%s", json.dumps(context_rows[-1]))
            # Resident after the runs, not after the load: onnxruntime maps an external-data file and pages it in
            # as the graph first reads it. The few MB of KV cache buffers are included.
            held_gb = current_rss_gb() - before
            logger.info("%s: the graphs hold %.2f GB", label, held_gb)
            for row in context_rows:
                row.setdefault("graphs_gb", held_gb)
    if "served_inflight" in args.ways:
        from musicgen.serving import TritonServer, free_ports

        for max_active in args.max_active:
            with tempfile.TemporaryDirectory() as tmp:
                served_repo = benchmark_repository(repository, "in_process", args.backends[0], args.threads, Path(tmp),
                                                   max_active)
                server = TritonServer(served_repo, *free_ports(3), log_file=Path(tmp) / "tritonserver.log")
                server.start()
                try:
                    server.wait_until_ready(180)
                    for llm in args.llms:
                        for concurrency in args.concurrency:
                            speed = inflight_served(server.http_url, llm, concurrency, args.new_tokens, args.rounds)
                            inflight_rows.append({"llm": llm, "way": f"served-http/{args.backends[0]}",
                                                  "max_active": max_active, "concurrency": concurrency, **speed})
                            logger.info("%s", json.dumps(inflight_rows[-1]))
                finally:
                    server.stop()
    if "served" in args.ways:
        from musicgen.serving import TritonServer, free_ports

        for mode in ("in_process", "served"):
            with tempfile.TemporaryDirectory() as tmp:
                served_repo = benchmark_repository(repository, mode, args.backends[0], args.threads, Path(tmp))
                server = TritonServer(served_repo, *free_ports(3), log_file=Path(tmp) / "tritonserver.log")
                server.start()
                try:
                    server.wait_until_ready(180)
                    record(f"served/graphs={mode}" + (f"/{args.backends[0]}" if mode == "in_process" else ""),
                           served_runs(server.http_url, args.llms))
                finally:
                    server.stop()
    text = report(args, rows, context_rows, inflight_rows)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(
            json.dumps({"speeds": rows, "per_token": context_rows, "inflight": inflight_rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
