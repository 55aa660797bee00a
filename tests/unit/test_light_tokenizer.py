"""musicgen.audioldm.tokenizer against ppdiffusers' RobertaTokenizer, id for id, over a varied corpus.

Tokenizers: the tiny preset's (written offline by export), a realistic one (a few hundred BPE merges learnt
here from a corpus, every byte in the vocabulary), and variants of the tiny one that exercise the rarer paths:
`add_prefix_space`, bytes missing from the vocabulary (`<unk>`), a special token that strips on its right.
"""
import json
from collections import Counter
from pathlib import Path

import pytest
from ppdiffusers.transformers import RobertaTokenizer

from export.audioldm.presets import SPECIAL_TOKENS, write_byte_bpe_tokenizer
from export.tiny_tokenizers import corpus
from musicgen.audioldm.tokenizer import (
    RobertaBPETokenizer, TokenizerConfigError, _PRETOKENIZE, bytes_to_unicode,
)

TEXTS = [
    "a calm piano melody",
    "Techno music with a strong, upbeat tempo and high melodic riffs.",
    "low quality, average quality, muffled quality, noise interference, poor and low-grade quality",
    "It's the drummer's song: we're sure they've heard I'm told you'll see he'd go",
    "DON'T 'S 's 'sss ''' 't",
    "digits 0123456789 and 3.14159, 1,000,000 2024-11-30 ５５ ½ Ⅻ",
    "punctuation!!! ??? ... --- ((brackets)) [x] {y} <z> @#$%^&*_+=|\\/~`",
    "   leading and trailing spaces   ",
    "many    spaces\tand\t\ttabs\nnew\n\nlines\r\n and \u00a0nbsp \u2003em-space",
    "accents: café naïve résumé Ångström São Paulo façade über",
    "CJK: 一首平静的钢琴曲 ピアノの曲 피아노 음악",
    "emoji: 🎹🎸 🥁🎺 👩🏽‍🎤 ❤️ 🇫🇷",
    "mixed中文and English混合text",
    "specials in text: <s> hi </s> <pad><mask> mask <mask> x <unk>",
    "<mask>", "</s>", " <s>", "<s><s>",
    "",
    " ",
    "\n",
    "\t \n ",
    ".",
    "a",
    " a",
    "ü",
    "Zero\u200bwidth and combining e\u0301 and RTL مرحبا",
    "word " * 300,  # longer than every limit: truncation
    "x" * 2000,
    "🎵" * 100,
]
MAX_LENGTHS = [None, 3, 8, 32]


def train_byte_bpe(lines, merges_wanted):
    """A plain byte-level BPE trainer (most frequent pair first, ties by the pair itself)."""
    to_chars = bytes_to_unicode()
    words = Counter()
    for line in lines:
        for piece in _PRETOKENIZE.findall(line):
            words[tuple(to_chars[b] for b in piece.encode("utf-8"))] += 1
    merges = []
    for _ in range(merges_wanted):
        pairs = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        merged = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    return merges


def write_realistic(folder: Path) -> Path:
    folder.mkdir(parents=True)
    lines = list(corpus()) + TEXTS[:12] * 5
    merges = train_byte_bpe(lines, 400)
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in bytes_to_unicode().values():
        vocab.setdefault(ch, len(vocab))
    for first, second in merges:
        vocab.setdefault(first + second, len(vocab))
    vocab["<mask>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    return folder


def saved_by_ppdiffusers(folder: Path, out: Path) -> Path:
    """Round-trip through ppdiffusers' save_pretrained: the files export copies are the ones it writes."""
    RobertaTokenizer.from_pretrained(str(folder)).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module", params=["tiny", "realistic", "prefix-space", "holes", "rstrip-special"])
def folder(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "realistic":
        return saved_by_ppdiffusers(write_realistic(tmp / "src"), tmp / "saved")
    write_byte_bpe_tokenizer(tmp / "src", model_max_length=64)  # what the tiny preset exports
    saved = saved_by_ppdiffusers(tmp / "src", tmp / "saved")
    config_file = saved / "tokenizer_config.json"
    if request.param == "prefix-space":
        config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "add_prefix_space": True}))
    elif request.param == "holes":  # é's and the CJK lead bytes missing: those pieces become <unk>
        vocab = json.loads((saved / "vocab.json").read_text())
        to_chars = bytes_to_unicode()
        for b in (0xC3, 0xE4, 0xE9):
            del vocab[to_chars[b]]
        (saved / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    elif request.param == "rstrip-special":
        specials_file = saved / "special_tokens_map.json"
        specials = json.loads(specials_file.read_text())
        specials["pad_token"] = {"content": "<pad>", "lstrip": False, "rstrip": True, "normalized": True,
                                 "single_word": False}
        specials_file.write_text(json.dumps(specials))
    return saved


@pytest.fixture(scope="module")
def pair(folder):
    return RobertaBPETokenizer(folder), RobertaTokenizer.from_pretrained(str(folder))


@pytest.mark.parametrize("max_length", MAX_LENGTHS)
def test_ids_equal_ppdiffusers(pair, max_length):
    ours, ref = pair
    assert ours.model_max_length == ref.model_max_length
    assert ours.pad_token_id == ref.pad_token_id
    limit = ref.model_max_length if max_length is None else max_length
    for text in TEXTS:
        expected = ref(text, truncation=True, max_length=limit)["input_ids"]
        assert ours.encode(text, max_length) == expected, repr(text)


def test_padding_to_max_length_is_ours_plus_pad_ids(pair):
    """What the pipeline feeds the text encoder: padding="max_length"."""
    ours, ref = pair
    for text in TEXTS:
        ids = ours.encode(text)
        padded = ref(text, padding="max_length", max_length=ref.model_max_length, truncation=True)["input_ids"]
        assert ids + [ours.pad_token_id] * (ref.model_max_length - len(ids)) == padded, repr(text)


def test_the_realistic_tokenizer_merges_words(tmp_path):
    tokenizer = RobertaBPETokenizer(write_realistic(tmp_path / "tok"))
    ids = tokenizer.encode("a calm piano melody")
    assert len(ids) < len("a calm piano melody") + 2  # whole words, not bytes


def test_unsupported_folders_are_refused(tmp_path):
    folder = tmp_path / "tok"
    write_byte_bpe_tokenizer(folder, model_max_length=16)
    (folder / "added_tokens.json").write_text('{"<new>": 400}')
    with pytest.raises(TokenizerConfigError, match="added tokens"):
        RobertaBPETokenizer(folder)
    (folder / "added_tokens.json").unlink()
    (folder / "tokenizer_config.json").write_text("{}")
    with pytest.raises(TokenizerConfigError, match="model_max_length"):
        RobertaBPETokenizer(folder)
    write_byte_bpe_tokenizer(folder, model_max_length=16)
    with pytest.raises(ValueError, match="max_length"):
        RobertaBPETokenizer(folder).encode("a calm piano melody", max_length=2)  # paddlenlp would not cut


def test_each_variant_takes_its_path(pair, request):
    ours, _ = pair
    variant = request.node.callspec.params["folder"]
    if variant == "holes":
        assert ours.unk_token_id in ours.encode("café")
    elif variant == "rstrip-special":
        assert ours.encode("<pad>   x") == ours.encode("<pad>x")
    elif variant == "prefix-space":
        assert ours.encode("x") == ours.encode(" x")
    assert ours.encode("a <mask>") == ours.encode("a<mask>")  # RoBERTa's <mask> eats the space before it
