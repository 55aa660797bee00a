"""Greedy tokens of an LLM precision variant against fp32: how many agree, and whether a difference is noise.

A stage request decodes over the graphs at one precision while every step's logits are kept. Up to the first
differing token both runs saw the same context, so their logits compare there: a pick can only flip where fp32's
lead over its runner-up (the margin) is at most twice the variant's largest logit error at that step.

Used by the LLM export (each variant's parity.json, "greedy_tokens"), tests/llm/test_llm_precision.py and
benchmarks/gpu/llm_fp16_tokens.py.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from musicgen.llm.recipes import CaptionRecipe, ChatGLMRecipe, TextGenConfig
from musicgen.runtime import RuntimeOptions
from musicgen.stage_graphs import InProcessGraphs
from musicgen_client import flow
from musicgen_client import interface as api

Decoded = Tuple[List[int], List[np.ndarray]]  # token ids, each step's logits
NEW_TOKENS = 24
CHATGLM_CAPTION = "The image shows a cat on a marble table"  # the music-prompt request the export decodes


def recording(step, logits: list):
    """`step`, keeping each step's logits (the decoding loop's scores before selection)."""
    def run(feeds):
        out, past = step(feeds)
        logits.append(np.array(out, dtype=np.float32))
        return out, past
    return run


def decode(repository: Path, stage: str, request, precisions: Dict[str, str], new_tokens: int = NEW_TOKENS,
           options: RuntimeOptions = RuntimeOptions()) -> Decoded:
    """One `caption` (request: image bytes) or `chatglm` (request: prompt) request, greedy, no stop before
    `new_tokens` other than the stage's own, over its graphs in process at `precisions` ({graph: precision})."""
    repository = Path(repository)
    caption = stage == api.CAPTION
    components = api.MINIGPT4_COMPONENTS if caption else api.CHATGLM_COMPONENTS
    names = [c.name for c in components]
    # No manifest check: export decodes before it writes the manifests (the served stages check them).
    graphs = InProcessGraphs(repository, names, options, precisions, check_manifest=False)
    logits: List[np.ndarray] = []
    step = recording(graphs.step(api.MINIGPT4_LLM_STEP if caption else api.CHATGLM_LLM_STEP), logits)
    recipe = (CaptionRecipe if caption else ChatGLMRecipe)(repository / stage / "1", graphs, step)
    config = TextGenConfig.load(repository / stage / "1").generation.updated(max_new_tokens=new_tokens)
    return list(recipe(request, config).token_ids), logits


def first_difference(reference_ids: Sequence[int], variant_ids: Sequence[int]) -> Optional[int]:
    steps = min(len(reference_ids), len(variant_ids))
    return next((i for i in range(steps) if reference_ids[i] != variant_ids[i]), None)


def compare_tokens(reference: Decoded, variant: Decoded) -> dict:
    """How the variant's tokens compare with fp32's: the count agreeing before the first difference and, at that
    difference, fp32's margin against the variant's logit error (`within_noise`: margin ≤ 2 × error)."""
    (ref_ids, ref_logits), (var_ids, var_logits) = reference, variant
    differs = first_difference(ref_ids, var_ids)
    report = {"new_tokens": len(ref_ids), "agree": min(len(ref_ids), len(var_ids)) if differs is None else differs,
              "difference": None}
    if differs is not None:
        top2 = np.sort(ref_logits[differs][0])[-2:]
        margin = float(top2[1] - top2[0])
        error = float(np.abs(var_logits[differs] - ref_logits[differs]).max())
        report["difference"] = {"token": differs, "fp32_margin": margin, "logit_error": error,
                                "within_noise": margin <= 2 * error}
    return report


def random_image(seed: int = 0, size=(48, 64)) -> bytes:
    """A random RGB PNG: the caption request export decodes (no image files ship with the export)."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def stage_request(stage: str):
    """The request export decodes to compare a family's variants: a random image, or a music-prompt question."""
    return random_image() if stage == api.CAPTION else flow.music_prompt_request(CHATGLM_CAPTION)
