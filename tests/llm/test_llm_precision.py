"""fp16 and int8-dynamic variants of the LLM graphs: written beside fp32, the KV cache in the graph's precision,
their error against fp32 in parity.json, and greedy tokens against the fp32 graphs and eager paddlenlp `generate`.

Runs on a copy of the tiny LLM build's graphs and stages, so the shared repository stays fp32-only. Eager paddle in
fp16 or bf16 does not run on this CPU (paddle 3.2.2 has no CPU fp16/bf16 `where` kernel): the eager comparison is
against fp32 `generate`; benchmarks/gpu/llm_fp16_tokens.py compares eager fp16 with the fp16 graph on a GPU.
"""
import json
import math
import shutil

import numpy as np
import onnxruntime
import pytest

from cases import infer_raw  # tests/cases.py
from export.chatglm.components import COMPONENTS as CHATGLM_COMPONENTS
from export.core import parity_cases
from export.minigpt4.components import COMPONENTS as MINIGPT4_COMPONENTS
from export.precision import write_graph_variants
from export.serving import Serving, write_stage
from export.token_agreement import NEW_TOKENS as TOKEN_CHECK_LENGTH, compare_tokens, decode
from musicgen.llm.recipes import ChatGLMRecipe, TextGenConfig
from musicgen.manifest import write_manifest
from musicgen.precision import is_kv_cache, onnx_file
from musicgen.repository import write_model
from musicgen.runtime import RuntimeOptions, open_graph
from musicgen.stage_graphs import InProcessGraphs
from musicgen_client import flow
from musicgen_client import interface as api
from test_token_parity import LLM_GRAPHS, NEW_TOKENS, eager_caption, eager_music_prompt, png

VARIANTS = ("fp16", "int8-dynamic")
# fp16 against fp32 on the export's parity inputs, tiny presets: measured ≤ 2.5e-3 (logits) and ≤ 1.5e-3 (cache).
FP16_TOLERANCE = 1e-2
# ... and over 24 greedy decode steps, relative to each step's largest logit (the tiny caption model's logits are
# small, ≈ 0.5): measured ≤ 1.5e-2.
FP16_DECODE_TOLERANCE = 3e-2
CAPTIONS = ["The image shows a cat on a marble table", "two dogs walk along the beach\nat night"]


@pytest.fixture(scope="module")
def variant_repository(llm_build, tmp_path_factory):
    """The tiny LLM graphs and stages, with every graph's fp16 and int8-dynamic variants written as export does."""
    repository = tmp_path_factory.mktemp("llm-variants")
    for name in LLM_GRAPHS + [api.CAPTION, api.CHATGLM]:
        shutil.copytree(llm_build.repository / name, repository / name, ignore=shutil.ignore_patterns("paddle"))
    for precision in VARIANTS:
        write_graph_variants(MINIGPT4_COMPONENTS, llm_build.minigpt4_weights, repository,
                             at(precision, MINIGPT4_COMPONENTS), stage=api.CAPTION)
        write_graph_variants(CHATGLM_COMPONENTS, llm_build.chatglm_weights, repository,
                             at(precision, CHATGLM_COMPONENTS), stage=api.CHATGLM)
    for name in LLM_GRAPHS:
        write_manifest(repository / name / "1")  # as export does last: the stages check their graphs' files
    return repository


def graphs_at(repository, precision):
    return InProcessGraphs(repository, LLM_GRAPHS, RuntimeOptions(), {name: precision for name in LLM_GRAPHS})


def at(precision, components):
    return {name: precision for name in components}


def assert_close_logits(reference_logits, variant_logits):
    """Every step's logits (same tokens, so the same contexts) within FP16_DECODE_TOLERANCE of fp32's, relative to
    the step's largest."""
    assert len(reference_logits) == len(variant_logits)
    worst = max(np.abs(var - ref).max() / np.abs(ref).max() for ref, var in zip(reference_logits, variant_logits))
    print(f"fp16 decode: worst step's logits relative error {worst:.3g}")
    assert worst <= FP16_DECODE_TOLERANCE


def test_variants_sit_beside_fp32_with_the_cache_in_their_precision(variant_repository):
    for name in LLM_GRAPHS:
        folder = variant_repository / name / "1"
        assert (folder / "model.onnx").exists()
        for precision in VARIANTS:
            session = onnxruntime.InferenceSession(str(folder / onnx_file(precision)), providers=["CPUExecutionProvider"])
            for tensor, interface_name in interface_names(session, name):
                cache_in_fp16 = precision == "fp16" and is_kv_cache(interface_name)
                assert tensor.type in (("tensor(float16)",) if cache_in_fp16 else ("tensor(float)", "tensor(int64)"))
    for name in (api.MINIGPT4_LLM_STEP, api.CHATGLM_LLM_STEP):
        step = onnxruntime.InferenceSession(str(variant_repository / name / "1" / "model.fp16.onnx"))
        fp16 = [interface for tensor, interface in interface_names(step, name) if tensor.type == "tensor(float16)"]
        cache = [interface for _, interface in interface_names(step, name)
                 if interface.startswith(("past_key_", "past_value_"))] + [api.NEW_KEY_VALUES.name]
        assert len(cache) > 1 and fp16 == cache  # the per-layer buffers in, the new positions out: nothing else


def interface_names(session, name):
    """(graph tensor, its interface name): inputs by name, outputs by position (paddle2onnx's fetch_name_<i>)."""
    spec = api.COMPONENTS_BY_NAME[name]
    return [(t, t.name) for t in session.get_inputs()] + list(zip(session.get_outputs(), [t.name for t in spec.outputs]))


def test_parity_report_has_each_variant_against_fp32(variant_repository):
    for name in LLM_GRAPHS:
        report = json.loads((variant_repository / name / "1" / "parity.json").read_text())
        assert report["results"]  # the fp32 parity against eager is kept
        for precision in VARIANTS:
            rows = report["precision_variants"][precision]["component"]
            outputs = {r["output"] for r in rows}
            assert outputs == {t.name for t in api.COMPONENTS_BY_NAME[name].outputs}
            assert all(0 < r["max_rel"] < math.inf for r in rows)  # really another graph, and finite
            tokens = report["precision_variants"][precision]["greedy_tokens"]  # the export's own stage request
            assert tokens["stage"] in (api.CAPTION, api.CHATGLM) and tokens["new_tokens"] == TOKEN_CHECK_LENGTH
            if precision == "fp16":
                assert max(r["max_rel"] for r in rows) <= FP16_TOLERANCE, rows
                assert tokens["agree"] == tokens["new_tokens"] and tokens["difference"] is None
            else:
                assert tokens["difference"] is None or tokens["difference"]["within_noise"]


@pytest.mark.parametrize("seed", [0, 1])
def test_fp16_caption_tokens_equal_fp32_and_eager(variant_repository, eager_minigpt4, seed):
    image = png(seed)
    fp32_ids, fp32_logits = decode(variant_repository, api.CAPTION, image, {}, NEW_TOKENS)
    fp16_ids, fp16_logits = decode(variant_repository, api.CAPTION, image, at("fp16", MINIGPT4_COMPONENTS), NEW_TOKENS)
    stops = TextGenConfig.load(variant_repository / api.CAPTION / "1").generation.stop_token_ids
    eager_ids, _ = eager_caption(eager_minigpt4, image, NEW_TOKENS, stops)
    assert len(fp32_ids) >= 16 and fp32_ids == eager_ids
    assert fp16_ids == fp32_ids
    assert_close_logits(fp32_logits, fp16_logits)


@pytest.mark.parametrize("caption", CAPTIONS)
def test_fp16_chatglm_tokens_equal_fp32_and_eager(variant_repository, eager_chatglm, caption):
    prompt = flow.music_prompt_request(caption)
    fp32_ids, fp32_logits = decode(variant_repository, api.CHATGLM, prompt, {}, NEW_TOKENS)
    fp16_ids, fp16_logits = decode(variant_repository, api.CHATGLM, prompt, at("fp16", CHATGLM_COMPONENTS), NEW_TOKENS)
    eager_ids, _ = eager_music_prompt(eager_chatglm, caption, NEW_TOKENS)
    assert len(fp32_ids) >= 16 and fp32_ids == eager_ids
    assert fp16_ids == fp32_ids
    assert_close_logits(fp32_logits, fp16_logits)


@pytest.mark.parametrize("case", ["caption-0", "caption-1"] + [f"chatglm-{i}" for i in range(len(CAPTIONS))])
def test_int8_dynamic_tokens_differ_only_within_its_noise(variant_repository, case):
    """int8 weights move the tiny models' logits by about their own size (parity.json): greedy tokens agree with
    fp32 until a step where fp32's top two are within twice int8's logit error, never before (export/LLM.md has
    the counts)."""
    family, index = case.split("-")
    stage, components = (api.CAPTION, MINIGPT4_COMPONENTS) if family == "caption" else (api.CHATGLM, CHATGLM_COMPONENTS)
    request = png(int(index)) if family == "caption" else flow.music_prompt_request(CAPTIONS[int(index)])
    tokens = compare_tokens(decode(variant_repository, stage, request, {}, NEW_TOKENS),
                            decode(variant_repository, stage, request, at("int8-dynamic", components), NEW_TOKENS))
    print(f"{case}: int8-dynamic agrees on {tokens['agree']} of {tokens['new_tokens']} tokens, then {tokens['difference']}")
    assert tokens["difference"] is None or tokens["difference"]["within_noise"]


@pytest.mark.e2e
def test_served_fp16_chatglm_stage_and_step_graph(variant_repository, llm_build, triton_server_factory, tmp_path):
    """A real tritonserver serving the chatglm stage and its step-graph model as `--precision fp16` writes them:
    the stage decodes in process with the fp16 graph (its cache fp16) and answers the fp16 recipe's text; the
    step-graph model keeps the FP32 interface (its cache widened at the boundary) and gives the fp16 logits. The
    fp32 graph is removed from the copy, so nothing else could answer."""
    repository = tmp_path / "repo"
    for name in (api.CHATGLM, api.CHATGLM_LLM_STEP):
        shutil.copytree(variant_repository / name, repository / name)
    (repository / api.CHATGLM_LLM_STEP / "1" / "model.onnx").unlink()  # only the fp16 graph can answer
    serving = Serving(precisions={api.CHATGLM_LLM_STEP: "fp16"})
    layers = TextGenConfig.load(repository / api.CHATGLM / "1").kv.layers
    step_spec = api.COMPONENTS_BY_NAME[api.CHATGLM_LLM_STEP].with_cache_inputs(layers)
    write_model(repository, serving.component_entry(step_spec))
    write_stage(repository, api.CHATGLM, serving)
    for name in (api.CHATGLM, api.CHATGLM_LLM_STEP):
        write_manifest(repository / name / "1")
    assert 'string_value: "chatglm_llm_step=fp16"' in (repository / api.CHATGLM / "config.pbtxt").read_text()
    server = triton_server_factory(repository)

    config = TextGenConfig.load(repository / api.CHATGLM / "1").generation.updated(max_new_tokens=NEW_TOKENS)
    prompt = flow.music_prompt_request(CAPTIONS[0])
    graphs = graphs_at(variant_repository, "fp16")
    expected = ChatGLMRecipe(repository / api.CHATGLM / "1", graphs, graphs.step(api.CHATGLM_LLM_STEP))(prompt, config)
    served = infer_raw(server, "http", api.CHATGLM, {api.PROMPT: np.array([prompt.encode()], dtype=object),
                                                    api.MAX_NEW_TOKENS: np.array([NEW_TOKENS], dtype=np.int32)})
    assert served.as_numpy(api.TEXT).reshape(-1)[0].decode() == expected.text

    feeds = parity_cases(CHATGLM_COMPONENTS[api.CHATGLM_LLM_STEP], llm_build.chatglm_weights)["decode"]
    step = infer_raw(server, "http", api.CHATGLM_LLM_STEP, feeds)
    local = open_graph(variant_repository / api.CHATGLM_LLM_STEP / "1", RuntimeOptions(precision="fp16")).run(feeds)
    for spec, want in zip(api.COMPONENTS_BY_NAME[api.CHATGLM_LLM_STEP].outputs, local):
        got = step.as_numpy(spec.name)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
