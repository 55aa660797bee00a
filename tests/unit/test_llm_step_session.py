"""Stage-level LLM logic without graphs: the cache budget's 400, and which graphs a stage's parameters choose."""
import pytest

from musicgen.generation import GenerationConfig
from musicgen.llm.feeds import KVShape
from musicgen.llm.recipes import TextGenConfig
from musicgen.stage_graphs import ServedGraphs, open_stage_graphs
from musicgen.params import TEXTGEN_PARAMETERS, read_parameters
from musicgen.protocol import InvalidRequestError, status_of
from musicgen_client import interface as api


def textgen(max_context_tokens):
    return TextGenConfig("{}", GenerationConfig(max_new_tokens=20), KVShape(1, 1, 1),
                         max_context_tokens=max_context_tokens)


def test_budget_within_the_context_passes_and_past_it_is_a_400_naming_the_field_and_range():
    config = textgen(100)
    config.check_budget(80, config.generation_for(20))  # exactly full
    with pytest.raises(InvalidRequestError) as info:
        config.check_budget(80, config.generation_for(21))
    assert info.value.field == api.MAX_NEW_TOKENS and status_of(info.value) == "invalid_argument"
    assert "21 is out of range: allowed 1 to 20 after this 80-token prompt" in str(info.value)
    with pytest.raises(InvalidRequestError, match="allowed 1 to 0 after this 120-token prompt"):
        config.check_budget(120, config.generation_for(1))


def test_no_context_limit_means_no_budget_check():
    textgen(0).check_budget(10**6, GenerationConfig(max_new_tokens=8192))


def test_budget_round_trips_through_the_assets(tmp_path):
    textgen(4096).save(tmp_path)
    assert TextGenConfig.load(tmp_path).max_context_tokens == 4096


def parameters(**values):
    return read_parameters({"parameters": {k: {"string_value": v} for k, v in values.items()}}, TEXTGEN_PARAMETERS)


def test_stages_run_their_graphs_in_process_by_default():
    assert parameters()["graphs"] == "in_process"


def test_served_graphs_call_every_graph_through_bls_the_step_included():
    calls = []
    graphs = open_stage_graphs(parameters(graphs="served"), None, [api.CHATGLM_LLM_STEP],
                               lambda name, feeds: calls.append((name, sorted(feeds))) or ["logits", "present"])
    assert isinstance(graphs, ServedGraphs)
    assert graphs.step(api.CHATGLM_LLM_STEP)({"past_key_values": 1}) == ("logits", "present")
    assert calls == [(api.CHATGLM_LLM_STEP, ["past_key_values"])]


@pytest.mark.parametrize("name, value", [("backend", "paddle"), ("threads", "2"), ("device", "gpu")])
def test_runtime_choices_are_refused_when_the_graphs_are_served(name, value):
    with pytest.raises(ValueError, match=f"\\['{name}'\\] apply to graphs run in process"):
        open_stage_graphs(parameters(graphs="served", **{name: value}), None, [], None)


def test_non_finite_logits_are_a_bad_output_naming_the_step_graph():
    import numpy as np

    from musicgen.llm.step_session import checked_step
    from musicgen.protocol import BadOutputError

    logits = np.array([[0.5, np.nan, np.inf]], dtype=np.float32)
    step = checked_step(lambda feeds: logits, api.CHATGLM_LLM_STEP)
    with pytest.raises(BadOutputError, match="stage chatglm_llm_step failed: produced 2 non-finite values .* in its logits"):
        step({})
    fine = checked_step(lambda feeds: np.zeros((1, 3), np.float32), api.CHATGLM_LLM_STEP)
    assert fine({}).shape == (1, 3)
