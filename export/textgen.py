"""What the two LLM families share at export: the asset folder of a text-generation stage (framework-free
tokenizer description, prompt, generation parameters) in `<repository>/<stage>/1/`."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Sequence

from musicgen.llm.recipes import TOKENIZER_DIR, TextGenConfig
from musicgen.llm.tokenizers import TOKENIZER_FILE

from .core import ExportError

logger = logging.getLogger(__name__)


def check_files(weights: Path, needed: Sequence[str], what: str) -> None:
    """Fail with a clear message when `weights` lacks any of `needed` (a name, or alternatives joined by |)."""
    missing = [n for n in needed if not any((weights / alt).exists() for alt in n.split("|"))]
    if missing:
        raise FileNotFoundError(f"{weights} is not a {what} folder (missing {', '.join(missing)})")


def write_tokenizer(tokenizer, kind: str, out_dir: Path, **extra) -> None:
    """Copy the sentencepiece model of a paddlenlp tokenizer and describe the rest for musicgen.llm.tokenizers."""
    if tokenizer.added_tokens_encoder:
        raise ExportError(f"tokenizer has added tokens {sorted(tokenizer.added_tokens_encoder)}: "
                          "the framework-free tokenizer does not reproduce them")
    out_dir.mkdir(parents=True, exist_ok=True)
    model_file = Path(tokenizer.vocab_file)
    shutil.copyfile(model_file, out_dir / model_file.name)
    info = {
        "kind": kind,
        "model_file": model_file.name,
        "no_split_tokens": list(tokenizer.unique_no_split_tokens),
        "all_special_tokens": list(tokenizer.all_special_tokens),
        "all_special_ids": [int(i) for i in tokenizer.all_special_ids],
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "unk_token": tokenizer.unk_token,
    } | extra
    (out_dir / TOKENIZER_FILE).write_text(json.dumps(info, indent=2))


def write_stage_assets(repository: Path, stage: str, tokenizer, kind: str, config: TextGenConfig,
                       **tokenizer_extra) -> Path:
    """`<repository>/<stage>/1/`: tokenizer + prompt and generation config. Returns the folder."""
    folder = Path(repository) / stage / "1"
    shutil.rmtree(folder / TOKENIZER_DIR, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    write_tokenizer(tokenizer, kind, folder / TOKENIZER_DIR, **tokenizer_extra)
    config.save(folder)
    logger.info("%s assets written to %s", stage, folder)
    return folder
