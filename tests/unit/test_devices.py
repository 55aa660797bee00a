"""Device placement of a model instance and the refusal to run a GPU model on the CPU (musicgen.devices)."""
import warnings

import pytest

from musicgen.devices import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    DeviceUnavailableError,
    instance_device_id,
    onnx_providers,
    require_device_providers,
)


@pytest.mark.parametrize("kind, device_id, device, expected", [
    ("GPU", "3", "gpu", 3),  # the GPU Triton assigned this instance, not GPU 0
    ("GPU", "0", "gpu", 0),
    ("CPU", "0", "cpu", 0),
])
def test_instance_device_id_is_the_one_triton_assigned(kind, device_id, device, expected):
    args = {"model_instance_kind": kind, "model_instance_device_id": device_id}
    assert instance_device_id(args, device) == expected


@pytest.mark.parametrize("kind, device, message", [
    ("CPU", "gpu", "device=gpu but the instance group is KIND_CPU"),
    ("GPU", "cpu", "device=cpu but the instance group is KIND_GPU"),
    ("MODEL", "gpu", "use KIND_CPU or KIND_GPU"),
])
def test_device_and_instance_kind_must_agree(kind, device, message):
    with pytest.raises(DeviceUnavailableError, match=message):
        instance_device_id({"model_instance_kind": kind, "model_instance_device_id": "0"}, device)


def test_providers_pin_cuda_to_the_instance_device():
    assert onnx_providers("cpu") == [CPU_PROVIDER]
    assert onnx_providers("gpu", 2) == [(CUDA_PROVIDER, {"device_id": "2"}), CPU_PROVIDER]


@pytest.mark.parametrize("available, reason", [
    ([CPU_PROVIDER], "install onnxruntime-gpu"),
    ([CUDA_PROVIDER, CPU_PROVIDER], "not a visible GPU"),
])
def test_a_gpu_session_on_the_cpu_fails_saying_why(available, reason):
    with pytest.raises(DeviceUnavailableError, match=reason):
        require_device_providers([CPU_PROVIDER], "gpu", available)
    require_device_providers([CUDA_PROVIDER, CPU_PROVIDER], "gpu", available)
    require_device_providers([CPU_PROVIDER], "cpu", available)


def test_onnxruntime_falls_back_silently_and_the_check_catches_it():
    """The trap itself, on this CPU-only onnxruntime: asked for CUDA, the session still builds, on the CPU."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnxruntime's own "not in available providers" warning
        session = ort.InferenceSession(model, providers=onnx_providers("gpu", 1))
    if CUDA_PROVIDER in session.get_providers():
        pytest.skip("this onnxruntime has a working CUDA provider")
    with pytest.raises(DeviceUnavailableError, match="not on the GPU"):
        require_device_providers(session.get_providers(), "gpu", ort.get_available_providers())
