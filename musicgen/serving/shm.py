"""The Python backend's shared memory (`/dev/shm`): how much the launcher asks for, and a clear refusal to start
when there is not enough.

Every Python model instance talks to its stub through one region in /dev/shm: it starts at `SHM_DEFAULT_BYTES`
and grows by `SHM_GROWTH_BYTES` steps while a request's tensors do not fit (each growth is a new mapping), up
to what /dev/shm holds. The largest tensors crossing a region here: an image2music / caption image (≤ 20 MiB,
the interface's bound), a 60 s waveform (3.8 MB), a VAE mel of 60 s (1.5 MB); with `graphs: served` the LLM
stages send their KV cache through it at every token (≈ 1 MiB per token of context for the real 6-7 B models:
gigabytes — serve them in process, the default). Running out fails that request with Triton's "Failed to
increase the shared memory pool size ... use '--shm-size'" (a 500 naming the stage); at start, the launcher
refuses to run on a /dev/shm smaller than `required_bytes` (Docker's default is 64 MiB).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

SHM_DIR = Path("/dev/shm")
SHM_DEFAULT_BYTES = 4 << 20  # per instance at start: the small requests never grow the region
SHM_GROWTH_BYTES = 16 << 20  # a 20 MiB image costs two growths, not twenty
# Room for the largest request to cross two regions at once (an image going from image2music to caption).
SHM_HEADROOM_BYTES = 2 * (32 << 20)


class SharedMemoryError(RuntimeError):
    """/dev/shm cannot hold what the served models need."""


def backend_flags() -> List[str]:
    """tritonserver flags sizing the Python backend's regions."""
    return [f"--backend-config=python,shm-default-byte-size={SHM_DEFAULT_BYTES}",
            f"--backend-config=python,shm-growth-byte-size={SHM_GROWTH_BYTES}"]


def required_bytes(instances: int) -> int:
    return instances * SHM_DEFAULT_BYTES + SHM_HEADROOM_BYTES


def free_bytes(directory: Path = SHM_DIR) -> int:
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


def check_room(instances: int, directory: Path = SHM_DIR) -> None:
    """Raise SharedMemoryError when `directory` has less free space than `instances` model instances need."""
    if not Path(directory).is_dir():
        raise SharedMemoryError(f"{directory} does not exist: the Python backend needs POSIX shared memory")
    free, needed = free_bytes(directory), required_bytes(instances)
    if free < needed:
        raise SharedMemoryError(
            f"{directory} has {free >> 20} MiB free; {instances} Python model instances need at least "
            f"{needed >> 20} MiB ({SHM_DEFAULT_BYTES >> 20} MiB each + {SHM_HEADROOM_BYTES >> 20} MiB for the largest "
            "requests). Free it (stale triton_python_backend_shm_region_* files of killed servers) or enlarge it "
            "(Docker: --shm-size=1g; Kubernetes: an emptyDir with medium: Memory at /dev/shm)")
