"""Which device a model instance runs on, and a refusal to serve on the CPU what was configured for a GPU.

Triton tells each Python model instance its kind and device (`initialize(args)`: `model_instance_kind` "CPU" or
"GPU", `model_instance_device_id`): with `instance_group { kind: KIND_GPU }` and no `gpus` list it starts
one instance per visible GPU, each told its own id, so an instance that always opens device 0 piles every
instance onto GPU 0. And onnxruntime, asked for a CUDA provider it cannot start, builds the session on the
CPU without an error: measured on an H200, the CPU-only onnxruntime 1.30 only warns, and onnxruntime-gpu 1.31.1
given device_id 1 on that one-GPU machine prints "Falling back to ['CPUExecutionProvider']" and carries on. A GPU
deployment would serve many times slower and look healthy. These functions turn both into explicit choices and
clear load failures; no Triton import.
"""
from __future__ import annotations

from typing import Any, List, Mapping, Sequence, Tuple, Union

CPU, GPU = "cpu", "gpu"
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
_TRITON_KINDS = {"CPU": CPU, "GPU": GPU}  # what `model_instance_kind` says, as our `device` parameter says it

Provider = Union[str, Tuple[str, Mapping[str, str]]]


class DeviceUnavailableError(RuntimeError):
    """A model configured for a device it cannot run on: its load fails with this message."""


def instance_device_id(args: Mapping[str, Any], device: str) -> int:
    """The GPU Triton assigned this instance (`device` gpu), or 0 on the CPU.

    `args` is `initialize()`'s. The `device` parameter and the instance group's kind must agree: a GPU graph
    in a KIND_CPU instance gets no GPU assigned (every instance would land on GPU 0), and a CPU graph in a
    KIND_GPU instance holds a GPU it never uses.
    """
    kind = _TRITON_KINDS.get(str(args.get("model_instance_kind", "CPU")).upper())
    if kind is None:  # KIND_MODEL: the model places itself; we do not
        raise DeviceUnavailableError(f"instance kind {args.get('model_instance_kind')!r}: use KIND_CPU or KIND_GPU")
    if kind != device:
        raise DeviceUnavailableError(
            f"parameter device={device} but the instance group is KIND_{kind.upper()}: export with --device "
            f"{device} (KIND_{device.upper()}) or set the device parameter to {kind}")
    return int(args.get("model_instance_device_id", 0)) if device == GPU else 0


def onnx_providers(device: str, device_id: int = 0, cuda_options: Mapping[str, str] = {}) -> List[Provider]:
    """onnxruntime's providers for `device`, the CUDA one pinned to `device_id` with `cuda_options` (its provider
    options: enable_cuda_graph, use_tf32 ...); CPU kept for the nodes CUDA lacks kernels for."""
    if device == GPU:
        return [(CUDA_PROVIDER, {"device_id": str(device_id), **cuda_options}), CPU_PROVIDER]
    return [CPU_PROVIDER]


def require_device_providers(active: Sequence[str], device: str, available: Sequence[str] = ()) -> None:
    """Fail when a session meant for the GPU came up without the CUDA provider (onnxruntime only warns).

    `active`: the session's `get_providers()`; `available`: `onnxruntime.get_available_providers()`, for the
    message.
    """
    if device == GPU and CUDA_PROVIDER not in active:
        reason = ("this onnxruntime has no CUDA provider: install onnxruntime-gpu instead of onnxruntime"
                  if CUDA_PROVIDER not in available else
                  "the CUDA provider did not start: a device_id that is not a visible GPU, or CUDA and cuDNN "
                  "libraries of the versions this onnxruntime-gpu was built for missing from the library path")
        raise DeviceUnavailableError(f"device gpu: the session runs on {list(active)}, not on the GPU: {reason}")
