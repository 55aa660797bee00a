"""Every config the export writes, for the CPU and for the GPU, parses as a Triton ModelConfig with the instance
kind, devices, batching and parameters the models read back at load time."""
import json

import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

from export.serving import GRAPH_STAGES, STAGES, Serving, write_stage
from musicgen.params import COMPONENT_PARAMETERS, IMAGE2MUSIC_PARAMETERS, read_parameters
from musicgen.repository import TEMPLATE, ModelEntry, write_model
from musicgen_client import interface as api

KIND = {"cpu": mc.ModelInstanceGroup.KIND_CPU, "gpu": mc.ModelInstanceGroup.KIND_GPU}
SERVINGS = {
    "cpu": Serving(),
    "gpu": Serving(device="gpu"),  # one instance on every GPU the server sees (one GPU per pod)
    "gpu-pinned": Serving(device="gpu", gpus=(0, 1)),
}


def written_repository(tmp_path, serving):
    """Every model the export writes: the graph components of the three families and the four stages."""
    for spec in api.COMPONENTS_BY_NAME.values():
        write_model(tmp_path, serving.component_entry(spec))
    for name in STAGES:
        write_stage(tmp_path, name, serving)
    return {folder.name: text_format.Parse((folder / "config.pbtxt").read_text(), mc.ModelConfig())
            for folder in tmp_path.iterdir()}


def as_triton_json(config):
    """The config as Triton hands it to `initialize()` (args["model_config"])."""
    return json.loads(json_format.MessageToJson(config, preserving_proto_field_name=True))


@pytest.mark.parametrize("name", sorted(SERVINGS))
def test_configs_place_every_graph_on_the_served_device(tmp_path, name):
    serving = SERVINGS[name]
    configs = written_repository(tmp_path, serving)
    assert set(configs) == set(api.COMPONENTS_BY_NAME) | set(STAGES) | set(api.STREAM_VARIANTS.values())
    twin_of = {twin: model for model, twin in api.STREAM_VARIANTS.items()}
    for name_served, config in configs.items():
        model = twin_of.get(name_served, name_served)  # a streaming twin is configured as its model
        runs_graphs = model in api.COMPONENTS_BY_NAME or model in GRAPH_STAGES
        (group,) = config.instance_group
        assert group.kind == (KIND[serving.device] if runs_graphs else mc.ModelInstanceGroup.KIND_CPU), model
        assert list(group.gpus) == (list(serving.gpus) if runs_graphs else []), model
        assert group.count == 1
        # Batching is the engine's (in-flight) and the stages' own: Triton's batcher only bounds a queue.
        assert config.max_batch_size == 0 and not config.dynamic_batching.preferred_batch_size, model
        assert config.backend == "python"
        schema = COMPONENT_PARAMETERS if model in api.COMPONENTS_BY_NAME else (
            GRAPH_STAGES.get(model, IMAGE2MUSIC_PARAMETERS))
        values = read_parameters(as_triton_json(config), schema)  # what initialize() reads back
        if runs_graphs:
            assert values["device"] == serving.device, model


def test_gpus_are_refused_for_a_cpu_instance_group():
    entry = ModelEntry("m", "component", (), (), gpus=(0,))
    with pytest.raises(ValueError, match="gpus \\[0\\] given for a KIND_CPU"):
        entry.render_config(TEMPLATE.read_text())


def test_a_packed_stub_environment_passes_the_parameter_reader(tmp_path):
    """EXECUTION_ENV_PATH added to a generated config (as a deployment does) still loads."""
    folder = write_stage(tmp_path, api.TEXT2MUSIC, SERVINGS["gpu"])
    text = (folder / "config.pbtxt").read_text() + (
        '\nparameters { key: "EXECUTION_ENV_PATH" value: { string_value: "$$TRITON_MODEL_DIRECTORY/env.tar.gz" } }\n')
    config = text_format.Parse(text, mc.ModelConfig())
    values = read_parameters(as_triton_json(config), GRAPH_STAGES[api.TEXT2MUSIC])
    assert values["device"] == "gpu" and "EXECUTION_ENV_PATH" not in values


def test_export_takes_gpus_only_with_the_gpu_device(tmp_path, capsys):
    from export.__main__ import main as export_main

    for argv, message in [(["--gpus", "0"], "--gpus: only with --device gpu"),
                          (["--device", "gpu", "--gpus", "0,x"], "expected GPU ids like 0,1")]:
        with pytest.raises(SystemExit) as exit_info:
            export_main(["audioldm", "--preset", "tiny", "--out", str(tmp_path), *argv])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.parametrize("serving", list(SERVINGS.values()) + [Serving("paddle", precisions={api.AUDIOLDM_UNET: "fp16"})])
def test_serving_crosses_to_the_export_job_unchanged(serving):
    """export.job writes each component's config from the Serving its parent passed as JSON."""
    restored = Serving.from_json(serving.to_json())
    assert restored == serving and restored.component_entry(api.COMPONENTS_BY_NAME[api.AUDIOLDM_UNET]) == \
        serving.component_entry(api.COMPONENTS_BY_NAME[api.AUDIOLDM_UNET])
