"""Prefill and decode speed of the two LLM stages (MiniGPT4 caption, ChatGLM), every way they run, in one run.

    python benchmarks/llm_decode.py --build build/llm-test --new-tokens 64 --contexts 64 512 2048 \
        --out benchmarks/results/llm-decode-cpu-tiny.md
    python benchmarks/llm_decode.py --build build/llm-wide --preset wide --llms chatglm --ways in_process \
        --backends onnxruntime --precisions fp32 fp16 int8-dynamic --out benchmarks/results/llm-precision-cpu-chatglm-wide.md

`--build` is a folder laid out as tests/llm builds it (`model_repository/` with the minigpt4 and chatglm graphs and
stages, `weights/minigpt4-<preset>`, `weights/chatglm-<preset>`). Same weights, prompt and settings everywhere:
greedy (ChatGLM's top_k 1 sampling), no stop token, so every run makes exactly the asked number of tokens.

- eager: paddlenlp `generate` as the original application calls it (float32, as exported);
- in_process/<backend>: the stage recipe, its step graph in process and the KV cache kept by the runtime
  (the served default);
- in_process/onnxruntime/<precision>, with `--precisions`: the same on the graphs' ONNX variants (export
  `--precision`); `tokens = fp32` counts the leading tokens equal to the fp32 in-process run's;
- numpy/<backend>: the same recipe with the cache handed over as numpy each step (the served-graph path's copies,
  without Triton's shared memory);
- served/graphs=<mode>: the `caption` and `chatglm` models through a real tritonserver (HTTP), their `graphs`
  parameter in_process (default) or served (every step a BLS call carrying the cache).

Prefill = the time of a 1-token request (the whole stage: tokenizing, image encoding, prompt embedding included);
decode tokens/s = (N - 1) / (t(N) - t(1)); the minimum of `--repeats` runs each. Per-token decode time at each
context C: the step graph alone after a prefill of C positions (random embeddings / the prompt's ids repeated), min
and median of `--steps` steps; with `--batches`, the same at the first context for B rows at once (would
token-level batching pay?).
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "client")]

from musicgen.llm.feeds import ChatGLMFeeds, LlamaEmbedsFeeds, chatglm_prompt_inputs  # noqa: E402
from musicgen.llm.recipes import CaptionRecipe, ChatGLMRecipe  # noqa: E402
from musicgen.precision import FP32, PRECISIONS  # noqa: E402
from musicgen.stage_graphs import InProcessGraphs, ServedGraphs  # noqa: E402
from musicgen.runtime import RuntimeOptions, local_stage_runner  # noqa: E402
from musicgen_client import flow  # noqa: E402
from musicgen_client import interface as api  # noqa: E402

logger = logging.getLogger("llm_decode")
LLMS = {api.CAPTION: [c.name for c in api.MINIGPT4_COMPONENTS], api.CHATGLM: [c.name for c in api.CHATGLM_COMPONENTS]}
CAPTION_TEXT = "The image shows a cat on a marble table"


def test_image() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(out, format="PNG")
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
        caption = CaptionRecipe(repository / api.CAPTION / "1", graphs, graphs.step(api.MINIGPT4_LLM_STEP))
        image = test_image()
        runs[api.CAPTION] = lambda n: caption(image, budget(caption, n))
    if api.CHATGLM in llms:
        chat = ChatGLMRecipe(repository / api.CHATGLM / "1", graphs, graphs.step(api.CHATGLM_LLM_STEP))
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


def served_runs(url: str, llms: List[str]) -> Dict[str, Callable[[int], object]]:
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

    runs = {api.CAPTION: infer(api.CAPTION, api.IMAGE, test_image()),
            api.CHATGLM: infer(api.CHATGLM, api.PROMPT, flow.music_prompt_request(CAPTION_TEXT).encode())}
    return {llm: runs[llm] for llm in llms}


def benchmark_repository(source: Path, graphs_mode: str, backend: str, threads: int, out: Path) -> Path:
    """A copy of `source` whose stages never stop early and reach their graphs as `graphs_mode` says, in process
    with `backend` and `threads` (graph folders are linked, not copied)."""
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
        config = out / folder.name / "config.pbtxt"
        text = config.read_text().replace('key: "graphs" value: { string_value: "in_process" }',
                                          f'key: "graphs" value: {{ string_value: "{graphs_mode}" }}')
        if graphs_mode == "in_process":  # served: the graph models' own configs decide
            text = text.replace('key: "backend" value: { string_value: "onnxruntime" }',
                                f'key: "backend" value: {{ string_value: "{backend}" }}')
            text = text.replace('key: "threads" value: { string_value: "0" }',
                                f'key: "threads" value: {{ string_value: "{threads}" }}')
        config.write_text(text)
    return out


# ---- per-token decode time against the context length ----------------------------------------------------
def context_feeds(repository: Path, graphs, llm: str, context: int, batch: int):
    if llm == api.CAPTION:
        rng = np.random.default_rng(context)
        recipe = CaptionRecipe(repository / api.CAPTION / "1", graphs)
        hidden = recipe.embed(np.array([[1]])).shape[-1]
        embeds = rng.standard_normal((batch, context, hidden)).astype(np.float32)
        return LlamaEmbedsFeeds(embeds, np.ones((batch, context), np.int64), recipe.embed, recipe.config.kv,
                                recipe.tokenizer.bos_token_id)
    recipe = ChatGLMRecipe(repository / api.CHATGLM / "1", graphs)
    tok = recipe.tokenizer
    text_ids = tok.encode(flow.music_prompt_request(CAPTION_TEXT), add_special_tokens=False)
    ids = tok.with_special_tokens(np.resize(text_ids, context - 2).tolist())  # the prompt's text, repeated
    inputs = chatglm_prompt_inputs([ids] * batch, tok.bos_token_id, tok.mask_token_id, tok.gmask_token_id,
                                   tok.pad_token_id)
    return ChatGLMFeeds(inputs, recipe.config.kv)


def per_token_ms(repository: Path, graphs, llm: str, context: int, steps: int, batch: int = 1) -> Dict[str, float]:
    """Decode step time after a prefill of `context` positions: min and median over `steps` (first one dropped)."""
    step = graphs.step(api.MINIGPT4_LLM_STEP if llm == api.CAPTION else api.CHATGLM_LLM_STEP)
    feeds = context_feeds(repository, graphs, llm, context, batch)
    logits, past = step(feeds.prefill())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        logits, past = step(feeds.decode(logits.argmax(-1)[:, None].astype(np.int64), past))
        times.append(time.perf_counter() - start)
    return {"min_ms": min(times[1:]) * 1e3, "median_ms": statistics.median(times[1:]) * 1e3}


# ---- report ------------------------------------------------------------------------------------------------
def report(args, rows: List[dict], context_rows: List[dict]) -> str:
    lines = [
        "# LLM stages: prefill and decode, every way they run",
        "",
        f"Command: `python benchmarks/{Path(__file__).name} {shlex.join(sys.argv[1:])}`",
        f"{args.new_tokens} new tokens, no stop token; best of {args.repeats}; "
        f"in-process threads {args.threads or 'default'}. "
        "Shared, noisy 2-core machine.",
        "",
        f"| stage | way | prefill ms (1-token request) | decode tokens/s | request s | tokens = fp32 (of {args.new_tokens}) |",
        "|---|---|---|---|---|---|",
    ] + [f"| {r['llm']} | {r['way']} | {r['prefill_ms']:.1f} | {r['decode_tok_s']:.0f} | {r['total_s']:.3f} | "
         f"{r.get('tokens_as_fp32', '')} |" for r in rows]
    if context_rows:
        contexts = sorted({r["context"] for r in context_rows})
        lines += ["", f"Decode step time, ms, min / median of {args.steps - 1} steps, after a prefill of C positions "
                  "(batch B):", "",
                  "| stage | way | B | " + " | ".join(f"C={c}" for c in contexts)
                  + f" | C={contexts[-1]} / C={contexts[0]} (min) |", "|---|---|---|" + "---|" * (len(contexts) + 1)]
        for key in dict.fromkeys((r["llm"], r["way"], r["batch"]) for r in context_rows):
            ms = {r["context"]: r for r in context_rows if (r["llm"], r["way"], r["batch"]) == key}
            cells = [f"{ms[c]['min_ms']:.2f} / {ms[c]['median_ms']:.2f}" if c in ms else "" for c in contexts]
            complete = len(ms) == len(contexts)
            ratio = f"{ms[contexts[-1]]['min_ms'] / ms[contexts[0]]['min_ms']:.2f}×" if complete else ""
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path, default=Path("build/llm-test"))
    parser.add_argument("--preset", default="tiny", help="names the weights folders under <build>/weights")
    parser.add_argument("--llms", nargs="+", default=list(LLMS), choices=list(LLMS))
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "paddle"], choices=["onnxruntime", "paddle"])
    parser.add_argument("--ways", nargs="+", default=["eager", "in_process", "numpy", "served"],
                        choices=["eager", "in_process", "numpy", "served"])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contexts", nargs="*", type=int, default=[64, 512, 2048])
    parser.add_argument("--steps", type=int, default=16, help="decode steps timed per context")
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 4],
                        help="batch sizes of the decode step, at the first context (would token-level batching pay?)")
    parser.add_argument("--precisions", nargs="+", default=[FP32], choices=PRECISIONS,
                        help="onnxruntime: the graphs' ONNX variants to run in process and numpy (exported with "
                        "--precision); fp32 always runs first, as the tokens' reference")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads of the in-process graphs (the served in_process stages' too); "
                        "0: the runtime's choice")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    repository = args.build / "model_repository"
    rows, context_rows = [], []

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
    for backend, precision in [(b, p) for b in args.backends for p in (variants if b == "onnxruntime" else [FP32])]:
        options = RuntimeOptions(backend=backend, threads=args.threads, precision=precision)
        ways = {"in_process": lambda: InProcessGraphs(repository, names, options, dict.fromkeys(names, precision)),
                "numpy": lambda: ServedGraphs(local_stage_runner(repository, names, options))}
        for way, make in ways.items():
            if way not in args.ways:
                continue
            graphs = make()
            label = f"{way}/{backend}" + (f"/{precision}" if len(variants) > 1 else "")
            record(label, recipe_runs(repository, graphs, args.llms), precision if len(variants) > 1 else "")
            for llm in args.llms:
                cases = [(c, 1) for c in args.contexts]
                if args.contexts:
                    cases += [(args.contexts[0], b) for b in args.batches if b != 1]
                for context, batch in cases:
                    ms = per_token_ms(repository, graphs, llm, context, args.steps, batch)
                    context_rows.append({"llm": llm, "way": label, "context": context, "batch": batch, **ms})
                    logger.info("%s", json.dumps(context_rows[-1]))
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
    text = report(args, rows, context_rows)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps({"speeds": rows, "per_token": context_rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
