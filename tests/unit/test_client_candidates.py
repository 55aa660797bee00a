"""The client's side of candidates without a server: reading both audio shapes, writing the best or all of them."""
import numpy as np
import pytest
import soundfile

from musicgen_client import MusicResult, cli
from musicgen_client.api import _read_music
from musicgen_client.audio_encoding import AudioEncoding, encode
from musicgen_client.cli import candidate_paths, main
from musicgen_client import interface as api


class FakeResponse:
    def __init__(self, **outputs):
        self.outputs = outputs

    def as_numpy(self, name):
        return self.outputs.get(name)


def response(audio, scores=None, ranking=api.RANKING_CLAP):
    outputs = {api.AUDIO: audio, api.SEED: np.array([5], np.int64), api.SAMPLING_RATE: np.array([100], np.int32),
               api.RANKING: np.array([ranking.encode()], dtype=object)}
    if scores is not None:
        outputs[api.SCORES] = scores
    return FakeResponse(**outputs)


def test_flat_audio_is_one_candidate_and_rows_are_candidates():
    flat = _read_music(response(np.arange(4, dtype=np.float32), np.array([0.3], np.float32)), AudioEncoding())
    assert flat.candidates.shape == (1, 4) and np.array_equal(flat.audio, np.arange(4))
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    three = _read_music(response(rows, np.array([0.5, 0.2, 0.1], np.float32)), AudioEncoding())
    assert np.array_equal(three.audio, rows[0]) and np.array_equal(three.candidates, rows)
    assert three.scores.tolist() == pytest.approx([0.5, 0.2, 0.1]) and three.ranking == "clap"
    off = _read_music(response(rows, ranking="off: no CLAP audio encoder in the repository"), AudioEncoding())
    assert off.scores is None and off.ranking.startswith("off:")


def test_a_hand_made_result_has_its_one_candidate():
    result = MusicResult(audio=np.zeros(8, np.float32), sampling_rate=100, seed=1)
    assert result.candidates.shape == (1, 8) and result.scores is None


def test_candidate_paths_put_the_rank_before_the_suffix(tmp_path):
    assert [p.name for p in candidate_paths(tmp_path / "song.wav", 3)] == ["song.wav", "song.2.wav", "song.3.wav"]


class FakeClient:
    """Stands in for MusicClient: returns four ranked candidates and records the options it was given."""

    asked = {}

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def text_to_music(self, prompt, **options):
        FakeClient.asked = options
        candidates = np.stack([np.full(50, 0.1 * (i + 1), np.float32) for i in range(4)])
        return MusicResult(candidates[0], 100, 5, candidates, np.array([0.9, 0.5, 0.4, 0.1], np.float32), "clap")


@pytest.mark.parametrize("keep_all,written", [(False, ["best.wav"]), (True, ["best.wav", "best.2.wav", "best.3.wav",
                                                                             "best.4.wav"])])
def test_cli_writes_the_best_or_all_and_prints_scores(monkeypatch, tmp_path, capsys, keep_all, written):
    monkeypatch.setattr(cli, "MusicClient", FakeClient)
    argv = ["text", "rain", "--out", str(tmp_path / "best.wav"), "--candidates", "4"] + (["--all-candidates"] * keep_all)
    assert main(argv) == 0
    assert FakeClient.asked["num_waveforms_per_prompt"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(written)
    best, _ = soundfile.read(tmp_path / "best.wav")
    assert best[0] == pytest.approx(0.1, abs=1e-4)  # the first candidate, the best one
    assert "CLAP scores, best first: 0.9000, 0.5000, 0.4000, 0.1000" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0", "9"])
def test_cli_refuses_bad_candidate_counts_before_any_network(value, capsys, tmp_path):
    assert main(["text", "rain", "--out", str(tmp_path / "x.wav"), "--candidates", value]) == cli.EXIT_BAD_INPUT
    assert f"num_waveforms_per_prompt: {value} is out of range: allowed 1 to 8" in capsys.readouterr().err


def test_encoded_candidates_are_read_one_file_each_best_first():
    rate = 16000
    rows = np.stack([np.sin(np.arange(1600) / 9.0), 0.5 * np.sin(np.arange(1600) / 7.0)]).astype(np.float32) * 0.5
    files = np.array([encode(row, rate, "flac") for row in rows], dtype=object)
    answer = FakeResponse(**{api.AUDIO_FILE: files, api.SEED: np.array([5], np.int64),
                             api.SAMPLING_RATE: np.array([rate], np.int32), api.SCORES: np.array([0.4, 0.1], np.float32),
                             api.RANKING: np.array([api.RANKING_CLAP.encode()], dtype=object)})
    result = _read_music(answer, AudioEncoding("flac"))
    assert result.candidate_files == tuple(files) and result.audio_file == files[0]
    np.testing.assert_allclose(result.candidates, rows, atol=1 / 32768)
    second = result.candidate(1)
    assert second.audio_file == files[1] and second.audio_format == "flac"
    np.testing.assert_allclose(second.audio, rows[1], atol=1 / 32768)
