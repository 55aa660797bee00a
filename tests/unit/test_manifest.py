"""Manifest checksums: written by export, checked at load; damage fails naming the file."""
import json
import os
import time

import pytest

from musicgen.manifest import MANIFEST, ManifestError, verify, write_manifest, write_manifests
from musicgen.runtime import RuntimeOptions, verify_graph


@pytest.fixture
def version_dir(tmp_path):
    folder = tmp_path / "audioldm_unet" / "1"
    (folder / "paddle").mkdir(parents=True)
    (folder / "model.onnx").write_bytes(os.urandom(3 << 20))  # several hashing chunks
    (folder / "paddle" / "model.json").write_text("{}")
    (folder / "paddle" / "model.pdiparams").write_bytes(b"params")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"written by the stub")
    write_manifest(folder)
    return folder


def test_manifest_lists_every_artefact_but_caches(version_dir):
    files = json.loads((version_dir / MANIFEST).read_text())["files"]
    assert sorted(files) == ["model.onnx", "paddle/model.json", "paddle/model.pdiparams"]
    assert files["model.onnx"]["bytes"] == 3 << 20 and len(files["model.onnx"]["sha256"]) == 64
    verify(version_dir)
    verify_graph(version_dir, RuntimeOptions())
    verify_graph(version_dir, RuntimeOptions(backend="paddle"))


def test_a_truncated_graph_is_named(version_dir):
    graph = version_dir / "model.onnx"
    os.truncate(graph, graph.stat().st_size // 2)
    with pytest.raises(ManifestError, match=f"{graph} is {(3 << 20) // 2} bytes, the export wrote {3 << 20}"):
        verify_graph(version_dir, RuntimeOptions())
    verify_graph(version_dir, RuntimeOptions(backend="paddle"))  # only what is loaded is checked


def test_a_corrupted_file_of_the_same_size_is_named(version_dir):
    params = version_dir / "paddle" / "model.pdiparams"
    params.write_bytes(b"PARAMS")
    with pytest.raises(ManifestError, match=f"{params} does not match its sha256"):
        verify_graph(version_dir, RuntimeOptions(backend="paddle"))


def test_missing_unlisted_and_manifestless(version_dir):
    (version_dir / "model.onnx").unlink()
    with pytest.raises(ManifestError, match="model.onnx is missing"):
        verify(version_dir)
    with pytest.raises(ManifestError, match="model.int8-dynamic.onnx is not listed"):
        verify(version_dir, ["model.int8-dynamic.onnx"])
    (version_dir / MANIFEST).unlink()
    with pytest.raises(ManifestError, match="manifest.json is missing"):
        verify(version_dir, [])


def test_write_manifests_touches_only_the_folders_written_since(tmp_path):
    old, new = tmp_path / "old" / "1", tmp_path / "new" / "1"
    for folder in (old, new):
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(b"graph")
    past = time.time() - 100
    os.utime(old / "model.onnx", (past, past))
    assert write_manifests(tmp_path, since=time.time() - 10) == [new / MANIFEST]
    assert not (old / MANIFEST).exists()
