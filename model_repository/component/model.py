"""Serve one exported graph (ONNX on onnxruntime, or Paddle inference) as a Triton model.

The same file backs every component model (the AudioLDM text encoder, UNet, VAE decoder, vocoder): the
config.pbtxt says which tensors, the `backend` parameter which runtime; the graph sits in the version folder.
"""
import json
from pathlib import Path

from musicgen import triton_glue
from musicgen.devices import instance_device_id
from musicgen.params import COMPONENT_PARAMETERS, read_parameters
from musicgen.runtime import RuntimeOptions, check_feeds, open_graph


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = read_parameters(config, COMPONENT_PARAMETERS)
        options = RuntimeOptions(**parameters, device_id=instance_device_id(args, parameters["device"]))
        # check_manifest: a damaged graph fails this load, naming the file (musicgen.manifest)
        self.runner = open_graph(Path(args["model_repository"]) / args["model_version"], options, check_manifest=True)
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]
        check_feeds(self.runner, self.input_names)

    def execute(self, requests):
        return triton_glue.respond_each(requests, self._run)

    def _run(self, request):
        feeds = triton_glue.read_inputs(request, self.input_names)
        outputs = self.runner.run(feeds)  # graph order == config order: export writes both from one spec
        return dict(zip(self.output_names, outputs))
