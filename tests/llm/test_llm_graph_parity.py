"""Each exported LLM graph against its eager Layer, in both formats, as export's parity reports record it."""
import json

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from musicgen_client import interface as api

STEP_GRAPHS = {api.MINIGPT4_LLM_STEP, api.CHATGLM_LLM_STEP}


@pytest.mark.parametrize("component", [c.name for c in api.MINIGPT4_COMPONENTS + api.CHATGLM_COMPONENTS])
def test_parity_report_covers_both_formats_and_both_cache_cases(llm_build, component):
    report = json.loads((llm_build.repository / component / "1" / "parity.json").read_text())
    spec = api.COMPONENTS_BY_NAME[component]
    cases = {"sample", "decode"} if component in STEP_GRAPHS else {"sample"}
    assert set(report["cases"]) == cases
    seen = {(r["backend"], r["case"], r["output"]) for r in report["results"]}
    assert seen == {(b, c, t.name) for b in ("paddle", "onnxruntime") for c in cases for t in spec.outputs}
    for r in report["results"]:
        assert r["ok"] and r["max_rel"] <= r["tolerance"] <= 1e-4, r
    if component in STEP_GRAPHS:
        # the prefill runs over empty buffers; the decode step over buffers with more slots than written
        # (garbage in the rest: the mask must hide them) and a masked written position in one row
        capacity = {case: shapes["past_key_0"][2] for case, shapes in report["cases"].items()}
        masks = {case: shapes["attention_mask"] for case, shapes in report["cases"].items()}
        assert capacity["sample"] == 0 and capacity["decode"] > 0
        assert masks["decode"][0] == 2 and masks["decode"][3] == capacity["decode"] + 1


@pytest.mark.parametrize("component", sorted(STEP_GRAPHS))
@pytest.mark.parametrize("backend", ["onnxruntime", "paddle"])
def test_step_graphs_take_one_cache_input_per_layer_and_kind_as_their_configs_say(llm_build, component, backend):
    """Graph, served config and interface agree on the per-layer cache inputs (and on nothing stacked)."""
    from musicgen.llm.recipes import TextGenConfig
    from musicgen.runtime import RuntimeOptions, open_graph

    stage = api.CAPTION if component == api.MINIGPT4_LLM_STEP else api.CHATGLM
    layers = TextGenConfig.load(llm_build.repository / stage / "1").kv.layers
    expected = [t.name for t in api.COMPONENTS_BY_NAME[component].with_cache_inputs(layers).inputs]
    assert expected[-2 * layers:] == api.cache_input_names(layers)
    graph = open_graph(llm_build.repository / component / "1", RuntimeOptions(backend=backend))
    assert graph.input_names == expected
    config = text_format.Parse((llm_build.repository / component / "config.pbtxt").read_text(), mc.ModelConfig())
    assert [t.name for t in config.input] == expected
    assert [t.name for t in config.output] == [t.name for t in api.COMPONENTS_BY_NAME[component].outputs]
