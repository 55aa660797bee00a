"""/dev/shm sizing: the launcher's flags and its refusal to start on too small a /dev/shm."""
import pytest

from musicgen.serving import shm
from musicgen.serving.launcher import TritonServer, TritonServerError, model_instances


def test_flags_size_the_python_backend():
    assert shm.backend_flags() == [f"--backend-config=python,shm-default-byte-size={4 << 20}",
                                   f"--backend-config=python,shm-growth-byte-size={16 << 20}"]


def test_too_small_a_shm_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shm, "free_bytes", lambda directory: 70 << 20)
    with pytest.raises(shm.SharedMemoryError, match=r"has 70 MiB free; 3 Python model instances need at least "
                                                     r"76 MiB .*--shm-size"):
        shm.check_room(3, tmp_path)
    shm.check_room(1, tmp_path)  # 4 + 64 MiB fit in 70


def test_the_launcher_counts_instances_and_refuses_to_start(tmp_path, monkeypatch):
    for name, count in (("a", 1), ("b", 2)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.pbtxt").write_text(
            f'name: "{name}"\ninstance_group [ {{ kind: KIND_CPU count: {count} }} ]\n'
            'dynamic_batching { default_queue_policy { max_queue_size: 64 } }\n')
    assert model_instances(tmp_path) == 3
    monkeypatch.setattr(shm, "free_bytes", lambda directory: 1 << 20)
    with pytest.raises(TritonServerError, match="1 MiB free"):
        TritonServer(tmp_path).start()
    assert "--backend-config=python,shm-growth-byte-size=16777216" in TritonServer(tmp_path).command()[0]
