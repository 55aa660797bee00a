"""Export a whole AudioLDM pipeline into a model repository: four graph models plus the text2music orchestrator,
and the CLAP audio encoder that ranks candidates when the weights folder has a `clap/` folder (export/audioldm/clap.py)."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from musicgen.audioldm.config import SCHEDULER_DIR, TOKENIZER_DIR, AudioLDMConfig
from musicgen.audioldm.schedulers import load_scheduler
from musicgen.audioldm.tokenizer import RobertaBPETokenizer
from musicgen_client import interface as api

from ..serving import Serving, export_components, stage_asset_folders, write_stage
from . import clap

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
    # The server tokenizes and steps with framework-free ports: refuse, before any export, a scheduler, a
    # scheduler option or a tokenizer folder they do not reproduce.
    load_scheduler(weights / SCHEDULER_DIR)
    RobertaBPETokenizer(weights / TOKENIZER_DIR)


def write_text2music_assets(weights: Path, repository: Path, serving: Serving) -> None:
    """Tokenizer, scheduler config and pipeline.json beside the orchestrator: the server needs no weights."""
    write_stage(repository, api.TEXT2MUSIC, serving)
    for assets in stage_asset_folders(repository, api.TEXT2MUSIC):
        for sub in (TOKENIZER_DIR, SCHEDULER_DIR):
            shutil.rmtree(assets / sub, ignore_errors=True)
            shutil.copytree(weights / sub, assets / sub)
        AudioLDMConfig.from_weights(weights).save(assets)


def build_preset(preset: str, weights_root: Path) -> Path:
    from .presets import PRESETS, build_random_pipeline

    weights = build_random_pipeline(PRESETS[preset], Path(weights_root) / f"audioldm-{preset}")
    if preset == "tiny":  # the tests' ranker; real-size CLAP weights are brought as clap/ (README)
        clap.build_tiny_clap(weights)
    return weights


def export_family(weights: Path, repository: Path, serving: Serving) -> None:
    weights = Path(weights).resolve()
    check_weights_folder(weights)
    with_clap = clap.has_clap(weights)
    if not with_clap:
        logger.info("no %s/ folder in %s: %s not exported, candidates will not be ranked", clap.CLAP_DIR, weights,
                    api.AUDIOLDM_CLAP_AUDIO)
        shutil.rmtree(Path(repository) / api.AUDIOLDM_CLAP_AUDIO, ignore_errors=True)  # a stale one would rank
    components = [c.name for c in api.AUDIOLDM_COMPONENTS] + ([api.AUDIOLDM_CLAP_AUDIO] if with_clap else [])
    export_components("audioldm", components, weights, repository, serving)
    if with_clap:
        clap.copy_feature_config(weights, Path(repository) / api.AUDIOLDM_CLAP_AUDIO / "1")
    write_text2music_assets(weights, repository, serving)
    if serving.precisions:  # needs the whole fp32 pipeline in place: calibration and fidelity run through it
        from .precision import write_precision_variants

        write_precision_variants(weights, repository, serving.precisions)
