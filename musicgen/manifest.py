"""Checksums of exported artefacts: export lists every file of a model version folder with its size and
sha256 in `manifest.json`; a model checks the files it is about to load against it, so that a truncated,
corrupted or swapped graph fails the model's load with a message naming the file, instead of serving garbage
or crashing the stub later.

It guards against damage and mix-ups (a copy cut short, a disk error, a graph from another export), not against
someone who can write the repository: they can rewrite the manifest too. Hashing streams the file in chunks,
once per load (2.7–3.0 s per GiB measured on this CPU).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, Iterable, Optional

MANIFEST = "manifest.json"
_CHUNK = 1 << 20
_SKIPPED_DIRS = {"__pycache__"}  # written by the Python backend when it imports model.py


class ManifestError(RuntimeError):
    """An artefact does not match its manifest (or there is no manifest): the model must not load."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _artefacts(version_dir: Path) -> Iterable[Path]:
    for path in sorted(version_dir.rglob("*")):
        relative = path.relative_to(version_dir)
        if path.is_file() and relative.name != MANIFEST and not _SKIPPED_DIRS & set(relative.parts):
            yield path


def write_manifest(version_dir: Path) -> Path:
    """List every file of `version_dir` (subfolders included) with its size and sha256."""
    version_dir = Path(version_dir)
    files = {path.relative_to(version_dir).as_posix(): {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
             for path in _artefacts(version_dir)}
    target = version_dir / MANIFEST
    target.write_text(json.dumps({"files": files}, indent=1, sort_keys=True) + "\n")
    return target


def read_manifest(version_dir: Path) -> Dict[str, Dict]:
    path = Path(version_dir) / MANIFEST
    try:
        return json.loads(path.read_text())["files"]
    except FileNotFoundError:
        raise ManifestError(f"{path} is missing: this folder was not written by `python -m export` (or is "
                            "incomplete); export it again") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"{path} is unreadable ({exc}): export again") from None


def verify(version_dir: Path, files: Optional[Iterable[str]] = None) -> None:
    """Check `files` (paths relative to `version_dir`; default: every file the manifest lists) against the
    manifest: each must be listed, present, of its size, and hash to its sha256. Raises ManifestError naming
    the first file that does not."""
    version_dir = Path(version_dir)
    listed = read_manifest(version_dir)
    for name in (sorted(listed) if files is None else files):
        path = version_dir / name
        entry = listed.get(name)
        if entry is None:
            raise ManifestError(f"{path} is not listed in {version_dir / MANIFEST}: it was not written by this "
                                "export; export again")
        if not path.is_file():
            raise ManifestError(f"{path} is missing (listed in {version_dir / MANIFEST})")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise ManifestError(f"{path} is {size} bytes, the export wrote {entry['bytes']}: truncated or "
                                "replaced; export again")
        if file_sha256(path) != entry["sha256"]:
            raise ManifestError(f"{path} does not match its sha256 in {version_dir / MANIFEST}: corrupted or "
                                "replaced; export again")


def write_manifests(repository: Path, since: float) -> list:
    """Write the manifest of every model version folder of `repository` that holds a file modified at or after
    `since` (a time.time()): the folders one export run wrote, leaving the others' manifests alone."""
    written = []
    for version_dir in sorted(Path(repository).glob("*/[0-9]*")):
        if version_dir.is_dir() and any(p.stat().st_mtime >= since for p in _artefacts(version_dir)):
            written.append(write_manifest(version_dir))
    return written
