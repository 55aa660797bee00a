"""Config generation: the template is filled strictly and the result is a valid Triton ModelConfig."""
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from musicgen.params import COMPONENT_PARAMETERS
from musicgen.repository import TEMPLATE, ModelEntry, fill_template, write_model
from musicgen_client import interface as api


def test_fill_template_rejects_unknown_and_unfilled():
    assert fill_template("a ${x} b", {"x": 1}) == "a 1 b"
    with pytest.raises(KeyError, match="no slot for \\['y'\\]"):
        fill_template("a ${x}", {"x": 1, "y": 2})
    with pytest.raises(KeyError, match="unfilled: \\['x'\\]"):
        fill_template("a ${x}", {})


def parse(text):
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_orchestrator_config_matches_interface():
    entry = ModelEntry(api.TEXT2MUSIC, "text2music", api.TEXT2MUSIC_INPUTS, api.TEXT2MUSIC_OUTPUTS)
    cfg = parse(entry.render_config(TEMPLATE.read_text()))
    assert cfg.name == "text2music" and cfg.backend == "python" and cfg.max_batch_size == 0
    assert [i.name for i in cfg.input] == [t.name for t in api.TEXT2MUSIC_INPUTS]
    assert [i.optional for i in cfg.input] == [t.optional for t in api.TEXT2MUSIC_INPUTS]
    assert cfg.input[0].data_type == model_config_pb2.TYPE_STRING
    assert [o.name for o in cfg.output] == ["audio", "seed", "sampling_rate", "scores", "ranking", "audio_file"]


def test_component_config_parameters_round_trip(tmp_path):
    spec = api.COMPONENTS_BY_NAME[api.AUDIOLDM_UNET]
    entry = ModelEntry(spec.name, "component", spec.inputs, spec.outputs, COMPONENT_PARAMETERS,
                       {"backend": "paddle", "use_onednn": False}, instance_count=2)
    folder = write_model(tmp_path, entry)
    cfg = parse((folder / "config.pbtxt").read_text())
    assert {k: v.string_value for k, v in cfg.parameters.items()} == {
        "backend": "paddle", "device": "cpu", "threads": "0", "use_onednn": "false", "allow_spinning": "false",
        "prepack_weights": "true", "precision": "fp32", "cuda_graphs": "false", "tf32": "false"}
    assert cfg.instance_group[0].count == 2
    assert list(cfg.input[0].dims) == [-1, -1, -1, -1]
    assert (folder / "1" / "model.py").exists()


def test_component_config_rejects_bad_parameter_values():
    spec = api.COMPONENTS_BY_NAME[api.AUDIOLDM_UNET]
    entry = ModelEntry(spec.name, "component", spec.inputs, spec.outputs, COMPONENT_PARAMETERS, {"backend": "trt"})
    with pytest.raises(ValueError, match="choose one of"):
        entry.render_config(TEMPLATE.read_text())
    entry = ModelEntry(spec.name, "component", spec.inputs, spec.outputs, COMPONENT_PARAMETERS, {"nope": 1})
    with pytest.raises(KeyError, match="unknown parameters"):
        entry.render_config(TEMPLATE.read_text())


def test_stream_variant_is_the_decoupled_twin(tmp_path):
    unary = ModelEntry(api.TEXT2MUSIC, "text2music", api.TEXT2MUSIC_INPUTS, api.TEXT2MUSIC_OUTPUTS)
    stream = unary.stream_variant()
    cfg = parse(stream.render_config(TEMPLATE.read_text()))
    assert cfg.name == api.TEXT2MUSIC_STREAM and cfg.model_transaction_policy.decoupled
    assert [i.name for i in cfg.input] == [t.name for t in api.TEXT2MUSIC_INPUTS]
    assert [o.name for o in cfg.output] == [t.name for t in api.TEXT2MUSIC_OUTPUTS] + ["stage", "step", "total"]
    assert not parse(unary.render_config(TEMPLATE.read_text())).HasField("model_transaction_policy")
    # One backend: the twin's model.py is the unary model's.
    assert (write_model(tmp_path, stream) / "1" / "model.py").read_text() == \
        (write_model(tmp_path, unary) / "1" / "model.py").read_text()


def test_queue_bound_renders_triton_s_queue_policy():
    from export.serving import COMPONENT_QUEUE_SIZE, STAGES, Serving

    spec = api.COMPONENTS_BY_NAME[api.AUDIOLDM_UNET]
    policy = parse(Serving().component_entry(spec).render_config(TEMPLATE.read_text())).dynamic_batching
    assert policy.default_queue_policy.max_queue_size == COMPONENT_QUEUE_SIZE
    assert policy.default_queue_policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
    assert policy.default_queue_policy.allow_timeout_override
    # The models answering from their own threads bound their own queues (max_waiting): no Triton queue policy.
    for name in (api.TEXT2MUSIC, api.IMAGE2MUSIC, api.CAPTION, api.CHATGLM):
        assert not parse(STAGES[name].render_config(TEMPLATE.read_text())).HasField("dynamic_batching")
