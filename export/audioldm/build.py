"""Export a whole AudioLDM pipeline into a model repository: four graph models plus the text2music orchestrator."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Dict

from musicgen.audioldm.config import SCHEDULER_DIR, TOKENIZER_DIR, AudioLDMConfig
from musicgen.params import COMPONENT_PARAMETERS
from musicgen.repository import ModelEntry, write_model
from musicgen_client import interface as api

from ..core import run_job
from .components import COMPONENTS

logger = logging.getLogger(__name__)


def check_weights_folder(weights: Path) -> None:
    """Fail with a clear message when `weights` is not a ppdiffusers AudioLDM save_pretrained folder."""
    needed = ["model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
              "vocoder/config.json", "scheduler/scheduler_config.json", "tokenizer"]
    missing = [n for n in needed if not (weights / n).exists()]
    if missing:
        raise FileNotFoundError(
            f"{weights} is not an AudioLDM save_pretrained folder (missing {', '.join(missing)})"
        )


def export_audioldm(weights: Path, repository: Path, parameters: Dict[str, object], instance_kind: str) -> None:
    weights, repository = Path(weights).resolve(), Path(repository)
    check_weights_folder(weights)
    for i, (name, component) in enumerate(COMPONENTS.items(), 1):
        logger.info("[%d/%d] exporting %s from %s", i, len(COMPONENTS), name, weights)
        entry = ModelEntry(name, "component", component.spec.inputs, component.spec.outputs,
                           COMPONENT_PARAMETERS, dict(parameters), instance_kind=instance_kind)
        folder = write_model(repository, entry)
        run_job("audioldm", name, weights, folder / "1")

    orchestrator = write_model(repository, ModelEntry(api.TEXT2MUSIC, "text2music", api.TEXT2MUSIC_INPUTS,
                                                      api.TEXT2MUSIC_OUTPUTS))
    assets = orchestrator / "1"
    for sub in (TOKENIZER_DIR, SCHEDULER_DIR):
        shutil.rmtree(assets / sub, ignore_errors=True)
        shutil.copytree(weights / sub, assets / sub)
    AudioLDMConfig.from_weights(weights).save(assets)
    logger.info("text2music orchestrator written to %s", orchestrator)


def build_preset(preset: str, weights_root: Path) -> Path:
    from .presets import PRESETS, build_random_pipeline

    return build_random_pipeline(PRESETS[preset], Path(weights_root) / f"audioldm-{preset}")


def export_family(weights: Path, repository: Path, backend: str, device: str) -> None:
    """The registry's entry: serve the graphs on `backend` (both formats are always exported) on `device`."""
    export_audioldm(weights, repository, {"backend": backend, "device": device},
                    instance_kind="KIND_GPU" if device == "gpu" else "KIND_CPU")
