"""CLAP's RoBERTa byte-level BPE tokenizer, read from an exported `tokenizer/` folder, without paddle.

`encode(text, max_length)` gives the ids ppdiffusers' `RobertaTokenizer` gives for
`tokenizer(text, truncation=True, max_length=max_length)["input_ids"]`: `<s>`, the text's ids cut to fit, `</s>`.
The steps are that tokenizer's (paddlenlp's base class for the first two):
1. special tokens written in the text are split out whole (leftmost, longest first); a special token marked
   `lstrip`/`rstrip` (RoBERTa's `<mask>` is `lstrip`) eats the whitespace on that side;
2. `add_prefix_space` puts a space before text that does not start with one;
3. the rest is cut by GPT-2's pre-tokenising pattern (it needs the `regex` package: `\\p{L}`, `\\p{N}`), each
   piece's UTF-8 bytes mapped to printable characters and merged by the ranked BPE merges; unknown pieces
   become `<unk>`.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import regex

VOCAB_FILE, MERGES_FILE = "vocab.json", "merges.txt"
CONFIG_FILE, SPECIAL_TOKENS_FILE = "tokenizer_config.json", "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"

_PRETOKENIZE = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

# RobertaTokenizer's special tokens and their (lstrip, rstrip) when the folder does not say otherwise.
_SPECIAL_DEFAULTS = {
    "bos_token": ("<s>", False, False), "eos_token": ("</s>", False, False), "sep_token": ("</s>", False, False),
    "cls_token": ("<s>", False, False), "unk_token": ("<unk>", False, False), "pad_token": ("<pad>", False, False),
    "mask_token": ("<mask>", True, False),
}


class TokenizerConfigError(ValueError):
    """A tokenizer folder this port cannot reproduce exactly."""


@lru_cache(maxsize=1)
def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's byte → character map: printable bytes stand for themselves, the others are shifted past 255,
    so that a BPE vocabulary holds no whitespace or control characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    shifted = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + shifted)
            shifted += 1
    return {b: chr(c) for b, c in zip(printable, codes)}


class RobertaBPETokenizer:
    """Byte-level BPE over vocab.json + merges.txt, with the folder's special tokens and model_max_length."""

    def __init__(self, folder: Path):
        folder = Path(folder)
        config = _read_json(folder / CONFIG_FILE)
        if (folder / ADDED_TOKENS_FILE).exists():
            raise TokenizerConfigError(f"{folder}: added tokens ({ADDED_TOKENS_FILE}) are not supported")
        if config.get("do_lower_case"):
            raise TokenizerConfigError(f"{folder}: do_lower_case is not supported (RoBERTa is cased)")
        if config.get("add_prefix_space", False) not in (True, False):
            raise TokenizerConfigError(f"{folder}: add_prefix_space={config['add_prefix_space']!r} is not a boolean")
        if not isinstance(config.get("model_max_length"), int):
            raise TokenizerConfigError(f"{folder}/{CONFIG_FILE} must give an integer model_max_length")
        self.model_max_length: int = config["model_max_length"]
        self.add_prefix_space: bool = config.get("add_prefix_space", False)

        self.encoder: Dict[str, int] = json.loads((folder / VOCAB_FILE).read_text(encoding="utf-8"))
        merges = (folder / MERGES_FILE).read_text(encoding="utf-8").split("\n")[1:-1]  # skip "#version", last ""
        self.bpe_ranks: Dict[Tuple[str, ...], int] = {tuple(m.split()): rank for rank, m in enumerate(merges)}
        self._byte_chars = bytes_to_unicode()
        self._cache: Dict[str, List[str]] = {}

        specials = {**config, **_read_json(folder / SPECIAL_TOKENS_FILE)}  # the map wins, as in from_pretrained
        self._special: Dict[str, Tuple[bool, bool]] = {}  # content -> (lstrip, rstrip)
        self._special_ids: Dict[str, int] = {}
        for role, (content, lstrip, rstrip) in _SPECIAL_DEFAULTS.items():
            value = specials.get(role, content)
            if isinstance(value, dict):
                content, lstrip, rstrip = value["content"], value.get("lstrip", False), value.get("rstrip", False)
            else:
                content = value
            if content not in self.encoder:
                raise TokenizerConfigError(f"{folder}: special token {role}={content!r} is not in {VOCAB_FILE}")
            self._special[content] = (lstrip, rstrip)
            self._special_ids[role] = self.encoder[content]
        self._split_special = regex.compile(
            "(" + "|".join(regex.escape(s) for s in sorted(self._special, key=len, reverse=True)) + ")"
        )
        self.pad_token_id: int = self._special_ids["pad_token"]
        self.unk_token_id: int = self._special_ids["unk_token"]

    def encode(self, text: str, max_length: Optional[int] = None) -> List[int]:
        """`<s>` + the text's ids (cut to leave room) + `</s>`, at most `max_length` (default model_max_length)."""
        max_length = self.model_max_length if max_length is None else max_length
        if max_length < 3:  # paddlenlp does not truncate at all then (it logs an error): nothing to match
            raise ValueError(f"max_length must leave room for <s>, one token and </s>: {max_length}")
        ids = self.text_ids(text)[: max_length - 2]
        return [self._special_ids["cls_token"], *ids, self._special_ids["sep_token"]]

    def text_ids(self, text: str) -> List[int]:
        """The ids of `text` alone, no special tokens added."""
        if self.add_prefix_space and text and not text[0].isspace():
            text = " " + text
        ids = []
        for piece in self._split_out_special_tokens(text):
            if piece in self._special:
                ids.append(self.encoder[piece])
            else:
                ids.extend(self.encoder.get(token, self.unk_token_id) for token in self._bpe_tokens(piece))
        return ids

    def _split_out_special_tokens(self, text: str) -> List[str]:
        pieces = [p for p in self._split_special.split(text) if p]
        for i, piece in enumerate(pieces):  # in place and in order, as paddlenlp's tokenize() does
            if piece not in self._special:
                continue
            lstrip, rstrip = self._special[piece]
            if rstrip and i + 1 < len(pieces) and pieces[i + 1]:
                pieces[i + 1] = pieces[i + 1].lstrip()
            if lstrip and i > 0 and pieces[i - 1]:
                pieces[i - 1] = pieces[i - 1].rstrip()
        return [p for p in pieces if p]

    def _bpe_tokens(self, text: str) -> List[str]:
        tokens = []
        for word in _PRETOKENIZE.findall(text):
            tokens.extend(self._bpe("".join(self._byte_chars[b] for b in word.encode("utf-8"))))
        return tokens

    def _bpe(self, word: str) -> List[str]:
        """Merge the lowest-ranked adjacent pair, everywhere it occurs, until no ranked pair is left."""
        if word in self._cache:
            return self._cache[word]
        parts = list(word)
        while len(parts) > 1:
            ranked = [(self.bpe_ranks.get(pair, None), pair) for pair in zip(parts, parts[1:])]
            ranked = [(rank, pair) for rank, pair in ranked if rank is not None]
            if not ranked:
                break
            first, second = min(ranked)[1]
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self._cache[word] = parts
        return parts


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
