"""Sentencepiece models trained offline on a small fixed corpus, for the random-weight LLM presets (padded to the
real vocabulary size for the real-width ones: `pad_vocabulary`).

Real weights bring their own tokenizer (LLaMA's BPE `tokenizer.model`, ChatGLM's unigram `ice_text.model`);
the tiny presets need one of the same kind that nothing has to download. The corpus is generated from fixed
word lists and the family's own prompt templates, so the prompts the tests send tokenize into real pieces,
and training is deterministic (one thread, no sampling), so the same preset gives the same vocabulary.
"""
from __future__ import annotations

import io
import itertools
import logging
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

logger = logging.getLogger(__name__)

_SUBJECTS = ["a cat", "two dogs", "the old man", "a young woman", "children", "a red car", "the city", "a small boat",
             "the mountain", "a bowl of fruit", "the pineapple cocktail", "a jazz band", "the forest", "a lighthouse"]
_VERBS = ["sits on", "walks along", "looks at", "stands near", "plays beside", "rests under", "shines over",
          "floats on", "waits by", "drives through"]
_PLACES = ["a marble table", "the beach", "a quiet street", "the river", "a sunny garden", "the night sky",
           "a crowded market", "the snowy hills", "a wooden bridge", "the lake"]
_MOODS = ["calm piano music", "an upbeat jazz tune", "soft ambient pads", "a cheerful folk song",
          "dramatic orchestral strings", "a relaxed lounge vibe", "gentle acoustic guitar", "slow blues"]


def corpus(templates: Sequence[str] = ()) -> Iterable[str]:
    """Deterministic training lines: simple scene descriptions, music styles and the given prompt templates."""
    for subject, verb, place in itertools.product(_SUBJECTS, _VERBS, _PLACES):
        yield f"The image shows {subject} that {verb} {place}. There are also some other items, such as a plate."
    for number, (mood, place) in enumerate(itertools.product(_MOODS, _PLACES)):
        yield f"Track #{number % 10}: {mood} that fits {place}, with a smooth and cool atmosphere!"
    for template in templates:
        for _ in range(20):  # weight the prompts so their words become whole pieces
            yield template


def train_sentencepiece(out_file: Path, lines: Iterable[str], **options) -> Path:
    """Train a sentencepiece model on `lines` and write it to `out_file` (options as sentencepiece names them)."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(lines)), model_writer=model, num_threads=1, minloglevel=2,
        hard_vocab_limit=False, **options,
    )
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_bytes(model.getvalue())
    logger.info("trained a %s sentencepiece model into %s", options.get("model_type", "unigram"), out_file)
    return out_file


def pad_vocabulary(model_file: Path, vocab_size: int, placed: Mapping[str, int] = MappingProxyType({})) -> Path:
    """Grow the sentencepiece model in `model_file` to `vocab_size` pieces with user-defined `<extra_N>` pieces.

    A real-width preset keeps the real vocabulary size (LLaMA's 32000, ChatGLM's 130528) while its tokenizer is
    trained on a small corpus: padding makes every id the model can pick decode to a piece and encode back to the
    same id, as with the real tokenizers. `placed` moves named pieces to given ids (where the original relies on
    an id, e.g. LLaMA's "###" at 835) by swapping them with the piece there; the special ids stay in front.
    """
    from sentencepiece import sentencepiece_model_pb2 as sp_model

    proto = sp_model.ModelProto()
    proto.ParseFromString(Path(model_file).read_bytes())
    trained = len(proto.pieces)
    if trained > vocab_size:
        raise ValueError(f"{model_file} already has {trained} pieces, more than the vocab size {vocab_size}")
    for index in range(trained, vocab_size):
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = f"<extra_{index}>", 0.0, sp_model.ModelProto.SentencePiece.USER_DEFINED
    index_of = {piece.piece: i for i, piece in enumerate(proto.pieces)}
    for name, target in placed.items():
        if name not in index_of or not 0 <= target < vocab_size:
            raise ValueError(f"cannot place piece {name!r} at id {target}: not a piece, or outside the vocabulary")
        source = index_of[name]
        moving, staying = sp_model.ModelProto.SentencePiece(), sp_model.ModelProto.SentencePiece()
        moving.CopyFrom(proto.pieces[source])
        staying.CopyFrom(proto.pieces[target])
        proto.pieces[target].CopyFrom(moving)
        proto.pieces[source].CopyFrom(staying)
        index_of[staying.piece], index_of[name] = source, target
    Path(model_file).write_bytes(proto.SerializeToString())
    logger.info("padded %s from %d to %d pieces", model_file, trained, vocab_size)
    return Path(model_file)
