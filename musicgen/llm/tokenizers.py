"""LLaMA's and ChatGLM's tokenizers on sentencepiece alone: the ids and strings of paddlenlp 2.8.1's, without paddle.

Export writes `TOKENIZER_FILE` next to the sentencepiece model, recording what paddlenlp's tokenizer object
knows beyond the model file (its special tokens, the ones it never splits, its id offset); the classes below
replay paddlenlp's encode and decode steps over the same sentencepiece calls, so the served prompt ids and
answer strings equal the eager pipeline's (tests/llm/test_tokenizers.py checks them side by side):

- encode: model-specific text preparation (ChatGLM: "\\n" → <n>, tabs, runs of spaces → <|blank_N|>); split
  out the no-split special tokens, stripping whitespace on both sides of each (paddlenlp's default for plain
  string tokens); sentencepiece pieces per chunk; piece → id; the model's special ids around.
- decode: ids → pieces (optionally dropping special ids), pieces → text (LLaMA decodes runs between special
  tokens and keeps those verbatim), then paddlenlp's `clean_up_tokenization` (" ." → "." ...).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import List, Sequence

TOKENIZER_FILE = "musicgen_tokenizer.json"


def clean_up_tokenization(text: str) -> str:
    """paddlenlp's (and transformers') clean-up of spaces before punctuation and contractions."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(before, after)
    return text


class SentencePieceTokenizer:
    """The encode/decode skeleton paddlenlp's PretrainedTokenizer runs; subclasses fill in the model's steps."""

    def __init__(self, folder: Path, info: dict):
        import sentencepiece as spm

        self.info = info
        self.sp = spm.SentencePieceProcessor(model_file=str(Path(folder) / info["model_file"]))
        self.no_split_tokens = list(info["no_split_tokens"])
        self.all_special_tokens = list(info["all_special_tokens"])
        self.all_special_ids = set(info["all_special_ids"])
        self.bos_token_id = info["bos_token_id"]
        self.eos_token_id = info["eos_token_id"]
        self.pad_token_id = info["pad_token_id"]
        longest_first = sorted(self.no_split_tokens, key=len, reverse=True)
        self._special = re.compile("(" + "|".join(map(re.escape, longest_first)) + ")") if longest_first else None

    @classmethod
    def load(cls, folder: Path) -> "SentencePieceTokenizer":
        """The tokenizer described by `folder/TOKENIZER_FILE`, of the kind it names."""
        info = json.loads((Path(folder) / TOKENIZER_FILE).read_text())
        kinds = {"llama": LlamaTokenizer, "chatglm": ChatGLMTokenizer}
        if info.get("kind") not in kinds:
            raise ValueError(f"{folder}/{TOKENIZER_FILE}: kind {info.get('kind')!r} is not one of {sorted(kinds)}")
        return kinds[info["kind"]](folder, info)

    # ---- encode ------------------------------------------------------------------------------------
    def prepare(self, text: str) -> str:
        return text

    def tokenize(self, text: str) -> List[str]:
        chunks = self._special.split(self.prepare(text)) if self._special else [self.prepare(text)]
        for i, chunk in enumerate(chunks):
            if chunk in self.no_split_tokens:
                if i + 1 < len(chunks) and chunks[i + 1]:
                    chunks[i + 1] = chunks[i + 1].lstrip()
                if i > 0 and chunks[i - 1]:
                    chunks[i - 1] = chunks[i - 1].rstrip()
        pieces: List[str] = []
        for chunk in chunks:
            if not chunk:
                continue
            pieces.extend([chunk] if chunk in self.no_split_tokens else self.sp.encode(chunk, out_type=str))
        return pieces

    def piece_to_id(self, piece: str) -> int:
        return self.sp.piece_to_id(piece)

    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        ids = [self.piece_to_id(p) for p in self.tokenize(text)]
        return self.with_special_tokens(ids) if add_special_tokens else ids

    def with_special_tokens(self, ids: List[int]) -> List[int]:
        return ids

    # ---- decode ------------------------------------------------------------------------------------
    def id_to_piece(self, index: int) -> str:
        return self.sp.id_to_piece(index)

    def pieces_to_text(self, pieces: Sequence[str]) -> str:
        return self.sp.decode_pieces(list(pieces))

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        pieces = [self.id_to_piece(int(i)) for i in ids if not (skip_special_tokens and int(i) in self.all_special_ids)]
        return clean_up_tokenization(self.pieces_to_text(pieces)) if pieces else ""


class LlamaTokenizer(SentencePieceTokenizer):
    """paddlenlp's LlamaTokenizer: raw sentencepiece pieces, BOS first when asked."""

    def with_special_tokens(self, ids: List[int]) -> List[int]:
        return ([self.bos_token_id] if self.info.get("add_bos_token", True) else []) + ids

    def pieces_to_text(self, pieces: Sequence[str]) -> str:
        """Special tokens are kept verbatim (a space before one that follows text), the runs between them go
        through sentencepiece's decoder."""
        out, run, prev_special = "", [], False
        for i, piece in enumerate(pieces):
            if piece in self.all_special_tokens:
                if not prev_special and i != 0:
                    out += " "
                out += self.sp.decode(run) + piece
                run, prev_special = [], True
            else:
                run.append(piece)
                prev_special = False
        return out + self.sp.decode(run)


class ChatGLMTokenizer(SentencePieceTokenizer):
    """paddlenlp's ChatGLMTokenizer (v1): ids are sentencepiece ids shifted by `num_image_tokens`, text
    prepared with <n>, <|tab|> and <|blank_N|> pieces, prompts end with [gMASK] <sop>."""

    def __init__(self, folder: Path, info: dict):
        super().__init__(folder, info)
        self.num_image_tokens = info["num_image_tokens"]
        self.max_blank_length = info["max_blank_length"]
        self.vocab_size = self.sp.get_piece_size() + self.num_image_tokens
        self.unk_token = info["unk_token"]
        self.mask_token_id = info["mask_token_id"]
        self.gmask_token_id = info["gmask_token_id"]

    def prepare(self, text: str) -> str:
        text = text.replace("\n", "<n>").replace("\t", "<|tab|>")
        for n in range(self.max_blank_length, 1, -1):
            text = text.replace(" " * n, f"<|blank_{n}|>")
        return text

    def piece_to_id(self, piece: str) -> int:
        if piece.startswith("<image_") and piece.endswith(">") and piece[7:-1].isdigit():
            return int(piece[7:-1])
        return self.sp.piece_to_id(piece) + self.num_image_tokens

    def with_special_tokens(self, ids: List[int]) -> List[int]:
        return ids + [self.gmask_token_id, self.bos_token_id]

    def id_to_piece(self, index: int) -> str:
        if index >= self.vocab_size:
            return self.unk_token
        if index < self.num_image_tokens:
            return f"<image_{index}>"
        return self.sp.id_to_piece(index - self.num_image_tokens)

    def pieces_to_text(self, pieces: Sequence[str]) -> str:
        return self.postprocess(self.sp.decode_pieces(list(pieces)))

    def postprocess(self, text: str) -> str:
        text = text.replace("<n>", "\n").replace("<|tab|>", "\t")
        for n in range(2, self.max_blank_length + 1):
            text = text.replace(f"<|blank_{n}|>", " " * n)
        return text

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        # paddlenlp subtracts the image-token offset here AND again when mapping ids to pieces; the special
        # ids are then compared after the first subtraction. Kept as is: the strings must match.
        shifted = [int(i) - self.num_image_tokens for i in ids]
        return self.postprocess(super().decode([i for i in shifted if i >= 0], skip_special_tokens))
