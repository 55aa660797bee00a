"""Real-width presets pad their small trained tokenizers to the real vocabulary (export/tiny_tokenizers.py): every
id decodes and encodes back, the special ids stay, named pieces land at the ids asked for."""
import pytest
import sentencepiece as spm

from export.tiny_tokenizers import corpus, pad_vocabulary, train_sentencepiece


@pytest.fixture
def trained(tmp_path):
    return train_sentencepiece(tmp_path / "sp.model", corpus(), model_type="bpe", vocab_size=300, byte_fallback=True,
                               unk_id=0, bos_id=1, eos_id=2, pad_id=-1, user_defined_symbols=["###", "##"])


def test_every_id_of_the_padded_vocabulary_round_trips(trained):
    before = spm.SentencePieceProcessor(model_file=str(trained))
    pad_vocabulary(trained, 2000, {"###": 835, "##": 1999, "e": 1500})
    after = spm.SentencePieceProcessor(model_file=str(trained))
    assert after.get_piece_size() == 2000
    assert [after.id_to_piece(i) for i in (0, 1, 2)] == [before.id_to_piece(i) for i in (0, 1, 2)]
    assert (after.piece_to_id("###"), after.piece_to_id("##"), after.piece_to_id("e")) == (835, 1999, 1500)
    for token in (1000, 1234, 1500, 1999):
        text = after.decode([token])
        assert text and after.encode(text)[-1] == token
    # What the trained pieces spelled, they still spell (ids moved, text the same).
    line = "The image shows a cat that sits on a marble table. ###"
    assert after.decode(after.encode(line)) == before.decode(before.encode(line))


def test_refuses_a_vocabulary_smaller_than_the_trained_one_and_unknown_pieces(trained):
    with pytest.raises(ValueError, match="more than the vocab size"):
        pad_vocabulary(trained, 10)
    with pytest.raises(ValueError, match="cannot place piece"):
        pad_vocabulary(trained, 2000, {"not-a-piece": 5})
