"""The config.pbtxt parameter reader: strict types, known keys, listed choices."""
import pytest

from musicgen.params import COMPONENT_PARAMETERS, TEXT2MUSIC_PARAMETERS, Param, read_parameters


def config(**params):
    return {"parameters": {k: {"string_value": v} for k, v in params.items()}}


def test_defaults_when_absent():
    assert read_parameters({}, COMPONENT_PARAMETERS) == {
        "backend": "onnxruntime", "device": "cpu", "threads": 0, "use_onednn": False, "allow_spinning": False,
        "prepack_weights": True, "precision": "fp32", "cuda_graphs": False, "tf32": False}


def test_text2music_takes_the_runtime_parameters_and_its_engine_limits():
    values = read_parameters(config(graphs="served", max_active="4"), TEXT2MUSIC_PARAMETERS)
    assert values["graphs"] == "served" and values["max_active"] == 4 and values["backend"] == "onnxruntime"
    with pytest.raises(ValueError, match="choose one of in_process, served"):
        read_parameters(config(graphs="grpc"), TEXT2MUSIC_PARAMETERS)


def test_values_are_typed():
    values = read_parameters(config(backend="paddle", threads="2", use_onednn="TRUE"), COMPONENT_PARAMETERS)
    assert values["backend"] == "paddle" and values["threads"] == 2 and values["use_onednn"] is True


@pytest.mark.parametrize("params,message", [
    ({"use_onednn": "false-ish"}, "expected true or false"),
    ({"use_onednn": "0"}, "expected true or false"),
    ({"threads": "two"}, "expected int"),
    ({"backend": "tensorrt"}, "choose one of onnxruntime, paddle"),
    ({"bakend": "paddle"}, "unknown parameters \\['bakend'\\]"),
])
def test_rejects_bad_values(params, message):
    with pytest.raises(ValueError, match=message):
        read_parameters(config(**params), COMPONENT_PARAMETERS)


def test_false_string_is_false():
    assert Param("flag", bool, True, "doc").parse("false") is False


def test_the_python_backends_own_parameters_pass_through_unread():
    """A packed stub environment (EXECUTION_ENV_PATH) is Triton's to read, not a typo of ours."""
    values = read_parameters(config(EXECUTION_ENV_PATH="$$TRITON_MODEL_DIRECTORY/env.tar.gz",
                                    FORCE_CPU_ONLY_INPUT_TENSORS="no", backend="paddle"), COMPONENT_PARAMETERS)
    assert values["backend"] == "paddle" and "EXECUTION_ENV_PATH" not in values
    with pytest.raises(ValueError, match="unknown parameters \\['execution_env_path'\\]"):
        read_parameters(config(execution_env_path="/env"), COMPONENT_PARAMETERS)  # Triton's keys are case-exact


def test_capture_lengths_are_seconds_or_a_clear_error():
    from musicgen.params import capture_lengths

    assert capture_lengths("5.0,10.24") == (5.0, 10.24)
    for bad in ("", "5,abc", "0", "nan", "-1"):
        with pytest.raises(ValueError, match="capture_lengths"):
            capture_lengths(bad)
