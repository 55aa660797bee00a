"""Each exported LLM graph against its eager Layer, in both formats, as export's parity reports record it."""
import json

import pytest

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
