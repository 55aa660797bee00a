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
    assert graphs.step(api.CHATGLM_LLM_STEP)({"past_key_0": 1}) == ("logits", "present")
    assert calls == [(api.CHATGLM_LLM_STEP, ["past_key_0"])]


@pytest.mark.parametrize("name, value", [("backend", "paddle"), ("threads", "2"), ("device", "gpu")])
def test_runtime_choices_are_refused_when_the_graphs_are_served(name, value):
    with pytest.raises(ValueError, match=f"\\['{name}'\\] apply to graphs run in process"):
        open_stage_graphs(parameters(graphs="served", **{name: value}), None, [], None)


def test_non_finite_logits_are_a_bad_output_naming_the_step_graph():
    import numpy as np

    from musicgen.llm.step_session import checked_step
    from musicgen.protocol import BadOutputError

    logits = np.array([[0.5, np.nan, np.inf]], dtype=np.float32)
    step = checked_step(lambda feeds: (logits, "cache"), api.CHATGLM_LLM_STEP)
    with pytest.raises(BadOutputError, match="stage chatglm_llm_step failed: produced 2 non-finite values .* in its logits"):
        step({})
    fine = checked_step(lambda feeds: (np.zeros((1, 3), np.float32), "cache"), api.CHATGLM_LLM_STEP)
    assert fine({})[1] == "cache"


# ---- the in-process onnxruntime step reads the cache buffers in place -----------------------------------------
def toy_step_graph() -> bytes:
    """An ONNX step graph with the step-graph signature for one layer: logits [rows, 1] = the sum of past_key_0
    over its capacity (so each step shows what the buffer held), new_key_values = the `new` input as given."""
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info("new", TensorProto.FLOAT, [1, 2, "rows", "heads", "n", "d"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["rows", 1, "n", "total"]),
              helper.make_tensor_value_info("past_key_0", TensorProto.FLOAT, ["rows", "heads", "capacity", "d"]),
              helper.make_tensor_value_info("past_value_0", TensorProto.FLOAT, ["rows", "heads", "capacity", "d"])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["rows", 1]),
               helper.make_tensor_value_info("new_key_values", TensorProto.FLOAT, [1, 2, "rows", "heads", "n", "d"])]
    axes = helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])
    nodes = [helper.make_node("ReduceSum", ["past_key_0", "axes"], ["summed"], keepdims=1),
             helper.make_node("Flatten", ["summed"], ["logits"], axis=1),
             helper.make_node("Identity", ["new"], ["new_key_values"])]
    graph = helper.make_graph(nodes, "toy_step", inputs, outputs, initializer=[axes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_the_onnxruntime_step_binds_the_cache_buffers_without_a_copy():
    import numpy as np

    from musicgen.llm.kv_cache import CachedStep, KVCache
    from musicgen.llm.step_session import OrtStepSession
    from musicgen.runtime import RuntimeOptions

    session = OrtStepSession(toy_step_graph(), RuntimeOptions())
    cache = KVCache(KVShape(1, 2, 3), rows=1, chunk=8)
    step = CachedStep(session, cache)
    ones = np.ones((1, 2, 1, 2, 2, 3), dtype=np.float32)
    logits = step({"new": ones, "attention_mask": np.ones((1, 1, 2, 2), dtype=np.int64)})  # prefill: 2 positions
    assert logits.tolist() == [[0.0]] and cache.lengths.tolist() == [2]
    logits = step({"new": 2 * ones[..., :1, :], "attention_mask": np.ones((1, 1, 1, 3), dtype=np.int64)})
    assert logits.tolist() == [[12.0]]  # the graph read the two positions written into the buffer: 2 heads × 2 × 3
    for buffer in cache.buffers():  # the views handed to the runtime, not copies of them
        assert session.bound(buffer).data_ptr() == buffer.ctypes.data
    key = cache.buffers()[0]
    bound = session.bound(key)
    key[0, 0, 0, 0] = 100.0  # written in place after binding: the runtime's value sees it
    assert bound.numpy()[0, 0, 0, 0] == 100.0


def test_step_specs_spell_out_one_cache_input_per_layer_and_kind_after_their_own_inputs():
    step = api.COMPONENTS_BY_NAME[api.CHATGLM_LLM_STEP]
    spec = step.with_cache_inputs(2)
    assert [t.name for t in spec.inputs] == ["input_ids", "position_ids", "attention_mask", "past_key_0",
                                             "past_value_0", "past_key_1", "past_value_1"]
    assert all(t.datatype == "FP32" and len(t.dims) == 4 for t in spec.inputs[3:])
    assert [t.name for t in spec.outputs] == ["logits", api.NEW_KEY_VALUES.name] and not spec.kv_cache
    with pytest.raises(ValueError, match="takes no KV cache inputs"):
        spec.with_cache_inputs(2)  # spelled out once
    with pytest.raises(ValueError, match="takes no KV cache inputs"):
        api.COMPONENTS_BY_NAME[api.AUDIOLDM_UNET].with_cache_inputs(2)


def test_a_request_decodes_over_a_cache_bounded_by_its_prompt_and_max_new_tokens():
    """The buffers the graph sees hold at most prompt + max_new_tokens positions, whatever the growth chunk; each
    step sees the logical mask laid over them and hands back only its new positions."""
    import numpy as np

    from musicgen.llm.feeds import ChatGLMFeeds, chatglm_prompt_inputs
    from musicgen.llm.recipes import TokenDecoder

    seen = []

    def run(feeds):
        seen.append((feeds["past_key_0"].shape[2], feeds["attention_mask"].shape[-1], feeds["input_ids"].shape[1]))
        new = feeds["input_ids"].shape[1]
        return np.zeros((1, 4), np.float32), np.ones((1, 2, 1, 1, new, 1), np.float32)

    config = textgen(100)
    feeds = ChatGLMFeeds(chatglm_prompt_inputs([[10, 11, 5, 7, 12]], 7, 4, 5, 3))  # a 5-token prompt
    result = TokenDecoder(run, api.CHATGLM_LLM_STEP, config)(feeds, config.generation_for(3))
    assert result.token_ids.shape == (1, 3)
    # 8 slots (5 + 3) reserved from the prefill on (its 5 positions then written there), the mask over them
    assert seen == [(8, 13, 5), (8, 9, 1), (8, 9, 1)]
