"""Precision variants of the AudioLDM graphs: calibrated on the pipeline's own inputs, judged on its waveform.

Runs after the fp32 export (graphs, parity, text2music assets). For each requested component and precision:
1. calibration: the fp32 pipeline renders CALIBRATION_PROMPTS and every feed each component receives is kept
   (the real inputs: CLAP tokens, the UNet's noisy latents at every step, the decoded mel, ...);
2. the variant graph is written (export.precision.write_variant);
3. its own error against the fp32 graph on the parity inputs export checked fp32 on (`component`);
4. the whole waveform with only that component swapped, against the fp32 pipeline with the same prompt, seed and
   steps (`pipeline`): relative error and log-mel distance (export.fidelity).
Both land in the component's parity.json under "precision_variants".
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List

import numpy as np

from musicgen.audioldm.config import AudioLDMConfig
from musicgen.audioldm.pipeline import AudioLDMRecipe, StageRunner
from musicgen.protocol import AudioOptions
from musicgen.runtime import RuntimeOptions, local_stage_runner
from musicgen_client import interface as api

from .. import fidelity
from ..core import parity_cases
from ..precision import Feeds, add_variant_report, compare_with_fp32, write_variant
from .components import COMPONENTS

logger = logging.getLogger(__name__)

NAMES = [c.name for c in api.AUDIOLDM_COMPONENTS]
# The fidelity request is the benchmarks' (10 steps, ppdiffusers' 5.12 s); calibration renders other prompts
# with the same options, so the variants are judged on inputs they were not calibrated on.
FIDELITY_PROMPT = "a calm piano melody"
FIDELITY_OPTIONS = AudioOptions(negative_prompt="low quality", num_inference_steps=10, audio_length_in_s=5.12,
                                guidance_scale=2.5, seed=42)
CALIBRATION_PROMPTS = ("energetic drums and a distorted electric guitar", "soft ambient synth pads with rain")


def write_precision_variants(weights: Path, repository: Path, precisions: Dict[str, str],
                             options: AudioOptions = FIDELITY_OPTIONS) -> None:
    """Write and measure every requested variant ({component: precision}) in an exported AudioLDM repository;
    `options`: the request calibration and fidelity render (tests pass a shorter one)."""
    if not precisions:
        return
    repository = Path(repository)
    assets = repository / api.TEXT2MUSIC / "1"
    fp32 = local_stage_runner(repository, NAMES, RuntimeOptions())
    calibration = record_feeds(assets, fp32, options)
    reference = AudioLDMRecipe(assets, fp32)(FIDELITY_PROMPT, options)
    sampling_rate = AudioLDMConfig.load(assets).sampling_rate
    for name, precision in precisions.items():
        version_dir = repository / name / "1"
        started = time.perf_counter()
        path = write_variant(version_dir, precision, calibration[name])
        logger.info("%s: %s written in %.0f s (%.0f MB)", name, path.name, time.perf_counter() - started,
                    path.stat().st_size / 2**20)
        outputs = [t.name for t in api.COMPONENTS_BY_NAME[name].outputs]
        report = {
            "file": path.name,
            "component": compare_with_fp32(version_dir, precision, parity_cases(COMPONENTS[name], weights), outputs),
            "pipeline": waveform_fidelity(assets, swapped(fp32, repository, name, precision), reference,
                                          sampling_rate, options),
        }
        add_to_parity_report(version_dir, precision, report)


def record_feeds(assets: Path, run_stage: StageRunner, options: AudioOptions) -> Dict[str, List[Feeds]]:
    """Every feed each component receives while the pipeline renders the calibration prompts."""
    recorded: Dict[str, List[Feeds]] = {name: [] for name in NAMES}

    def recording(name, feeds):
        recorded[name].append({k: np.array(v) for k, v in feeds.items()})
        return run_stage(name, feeds)

    recipe = AudioLDMRecipe(assets, recording)
    for seed, prompt in enumerate(CALIBRATION_PROMPTS):
        recipe(prompt, replace(options, seed=seed))
    return recorded


def swapped(fp32: StageRunner, repository: Path, name: str, precision: str) -> StageRunner:
    """The fp32 stages with one component served by its `precision` variant."""
    variant = local_stage_runner(repository, [name], RuntimeOptions(precision=precision))
    return lambda stage, feeds: (variant if stage == name else fp32)(stage, feeds)


def waveform_fidelity(assets: Path, run_stage: StageRunner, reference: np.ndarray, sampling_rate: int,
                      options: AudioOptions) -> dict:
    """The fidelity request through `run_stage`, against the fp32 waveform."""
    waveform = AudioLDMRecipe(assets, run_stage)(FIDELITY_PROMPT, options)
    return {
        "prompt": FIDELITY_PROMPT, "steps": options.num_inference_steps,
        "audio_length_in_s": options.audio_length_in_s, "seed": options.seed,
        "waveform_rel_error": fidelity.waveform_relative_error(waveform, reference),
        "log_mel_distance_db": fidelity.log_mel_distance(waveform, reference, sampling_rate),
    }


def add_to_parity_report(version_dir: Path, precision: str, report: dict) -> None:
    add_variant_report(version_dir, precision, report)
    pipeline = report["pipeline"]
    logger.info("%s %s: component max rel %.3g; waveform rel error %.3g, log-mel distance %.3g dB",
                version_dir.parent.name, precision, max(r["max_rel"] for r in report["component"]),
                pipeline["waveform_rel_error"], pipeline["log_mel_distance_db"])
