"""The framework-free decoding loop over a fake numpy step: token choice, stopping, filtering maths, validation."""
import numpy as np
import pytest

from musicgen.generation import (
    GREEDY, SAMPLING, GenerationConfig, GenerationConfigError, apply_repetition_penalty, generate, select_tokens,
    softmax, stop_ids_from_nested, top_k_filter, top_p_filter,
)
from musicgen.protocol import CancelledError, status_of

VOCAB = 6
# Next-token logits given the last token: a fixed table. Greedy from token 0 walks 0 → 1 → 2 → 3 → 1 → 2 ...
TABLE = np.full((VOCAB, VOCAB), -1.0, dtype=np.float32)
for last, best in {0: 1, 1: 2, 2: 3, 3: 1, 4: 5, 5: 4}.items():
    TABLE[last, best] = 2.0
TABLE[1, 4] = 1.5  # runner-up after 1


class TableFeeds:
    """A FeedsBuilder whose 'model input' is just each row's last token."""

    def __init__(self, prompt):
        self.prompt = np.array(prompt, dtype=np.int64)
        self.batch_size = self.prompt.shape[0]
        self.decoded = []

    def prefill(self):
        return {"last": self.prompt[:, -1]}

    def decode(self, next_tokens):
        assert next_tokens.shape == (self.batch_size, 1) and next_tokens.dtype == np.int64
        self.decoded.append(next_tokens[:, 0].tolist())
        return {"last": next_tokens[:, 0]}

    def context_ids(self):
        return self.prompt


class CountingStep:
    def __init__(self, table=TABLE):
        self.table = table
        self.calls = 0

    def __call__(self, feeds):
        self.calls += 1
        return self.table[feeds["last"]]


def run(config, prompt=((0,),), table=TABLE, keep_going=None):
    step, feeds = CountingStep(table), TableFeeds(prompt)
    return generate(step, feeds, config, keep_going), step, feeds


def test_greedy_follows_the_argmax_chain_and_feeds_each_token_back():
    result, step, feeds = run(GenerationConfig(max_new_tokens=5))
    assert result.row() == [1, 2, 3, 1, 2]
    assert feeds.decoded == [[1], [2], [3], [1]]  # the last token is never fed: no wasted step
    assert step.calls == 5


def test_max_new_tokens_bounds_the_output():
    for n in (1, 2, 7):
        result, step, _ = run(GenerationConfig(max_new_tokens=n))
        assert result.token_ids.shape == (1, n) and step.calls == n
        assert not result.finished[0]


def test_a_stop_token_is_emitted_then_ends_the_row():
    result, step, _ = run(GenerationConfig(max_new_tokens=10, stop_token_ids=(3,)))
    assert result.row() == [1, 2, 3] and result.finished.tolist() == [True]
    assert step.calls == 3


def test_finished_rows_get_padding_while_others_continue():
    config = GenerationConfig(max_new_tokens=4, stop_token_ids=(2,), pad_token_id=0)
    result, _, _ = run(config, prompt=[[0], [4]])
    assert result.token_ids.tolist() == [[1, 2, 0, 0], [5, 4, 5, 4]]
    assert result.finished.tolist() == [True, False]


@pytest.mark.parametrize("allowed_steps", [0, 1, 3])
def test_keep_going_is_asked_before_every_step_and_stops_the_loop(allowed_steps):
    """A cancelled request costs no step after the one in flight: the loop asks before each, prefill included."""
    asked = []

    def keep_going():
        asked.append(True)
        return len(asked) <= allowed_steps

    step, feeds = CountingStep(), TableFeeds(((0,),))
    with pytest.raises(CancelledError, match=f"after {allowed_steps} of at most 10") as info:
        generate(step, feeds, GenerationConfig(max_new_tokens=10), keep_going)
    assert step.calls == allowed_steps and len(asked) == allowed_steps + 1
    assert status_of(info.value) == "cancelled"


def test_keep_going_true_changes_nothing():
    result, step, _ = run(GenerationConfig(max_new_tokens=5), keep_going=lambda: True)
    assert result.row() == [1, 2, 3, 1, 2] and step.calls == 5


def test_repetition_penalty_maths():
    logits = np.array([[2.0, -2.0, 1.0, 0.5]], dtype=np.float32)
    out = apply_repetition_penalty(logits, np.array([[0, 1, 1]]), 2.0)
    np.testing.assert_allclose(out, [[1.0, -4.0, 1.0, 0.5]])  # positive divided, negative multiplied, once
    assert apply_repetition_penalty(logits, np.array([[0]]), 1.0) is logits


def test_repetition_penalty_steers_greedy_away_from_seen_tokens():
    # Without a penalty 1 → 2 (2.0); with 2 already in the prompt and a 2x penalty, 4 (1.5) wins.
    result, _, _ = run(GenerationConfig(max_new_tokens=2, repetition_penalty=2.0), prompt=[[2, 0]])
    assert result.row() == [1, 4]


def test_top_k_keeps_the_k_largest_and_their_ties():
    probs = np.array([[0.1, 0.4, 0.2, 0.2, 0.1]])
    np.testing.assert_array_equal(top_k_filter(probs, 1), [[0, 0.4, 0, 0, 0]])
    np.testing.assert_array_equal(top_k_filter(probs, 2), [[0, 0.4, 0.2, 0.2, 0]])  # tie with the 2nd kept
    assert top_k_filter(probs, 0) is probs


def test_top_p_keeps_the_smallest_prefix_crossing_p_and_always_the_best():
    probs = np.array([[0.05, 0.5, 0.3, 0.15]])
    np.testing.assert_array_equal(top_p_filter(probs, 0.6), [[0, 0.5, 0.3, 0]])  # 0.5 < 0.6, +0.3 crosses
    np.testing.assert_array_equal(top_p_filter(probs, 0.79), [[0, 0.5, 0.3, 0]])
    np.testing.assert_array_equal(top_p_filter(probs, 0.81), [[0, 0.5, 0.3, 0.15]])  # 0.8 < 0.81: 0.15 crosses
    np.testing.assert_array_equal(top_p_filter(probs, 0.1), [[0, 0.5, 0, 0]])
    assert top_p_filter(probs, 1.0) is probs


def test_sampling_with_top_k_1_is_greedy_whatever_the_seed():
    for seed in range(5):
        result, _, _ = run(GenerationConfig(max_new_tokens=6, decode_strategy=SAMPLING, top_k=1, seed=seed))
        assert result.row() == [1, 2, 3, 1, 2, 3]


def test_sampling_is_deterministic_per_seed():
    config = GenerationConfig(max_new_tokens=12, decode_strategy=SAMPLING, temperature=3.0, seed=7)
    first, _, _ = run(config)
    again, _, _ = run(config)
    other, _, _ = run(config.updated(seed=8))
    assert first.row() == again.row()
    assert first.row() != other.row()


def test_temperature_sharpens_or_flattens_the_distribution():
    logits = np.log(np.array([[0.6, 0.3, 0.1]], dtype=np.float32)).repeat(4000, axis=0)
    rng = np.random.default_rng(0)

    def freq(temperature):
        config = GenerationConfig(decode_strategy=SAMPLING, temperature=temperature)
        return np.bincount(select_tokens(logits, config, rng), minlength=3) / len(logits)

    np.testing.assert_allclose(freq(1.0), [0.6, 0.3, 0.1], atol=0.03)
    expected_hot = softmax(logits[:1] / 3.0)[0]  # flatter
    np.testing.assert_allclose(freq(3.0), expected_hot, atol=0.03)
    assert freq(0.05)[0] > 0.99  # nearly greedy


def test_sampling_draws_only_from_the_filtered_set():
    logits = np.log(np.array([[0.4, 0.3, 0.2, 0.1]], dtype=np.float32)).repeat(2000, axis=0)
    rng = np.random.default_rng(1)
    picked = select_tokens(logits, GenerationConfig(decode_strategy=SAMPLING, top_k=3, top_p=0.6), rng)
    assert set(np.unique(picked)) == {0, 1}  # top-3, then 0.4 + 0.3 crosses 0.6


def test_greedy_ignores_sampling_parameters():
    config = GenerationConfig(max_new_tokens=4, decode_strategy=GREEDY, temperature=50.0, top_k=3, top_p=0.2, seed=3)
    result, _, _ = run(config)
    assert result.row() == [1, 2, 3, 1]


def test_nested_eos_lists_stop_on_each_id_as_paddlenlp_does():
    assert stop_ids_from_nested([[835], [2277, 29937]]) == (835, 2277, 29937)
    assert stop_ids_from_nested(130005) == (130005,)
    assert stop_ids_from_nested([5, [5, 6]]) == (5, 6)


@pytest.mark.parametrize("field, value", [
    ("max_new_tokens", 0), ("max_new_tokens", 10**6), ("max_new_tokens", 2.5), ("decode_strategy", "beam_search"),
    ("temperature", 0.0), ("temperature", float("nan")), ("top_k", -1), ("top_p", 0.0), ("top_p", 1.5),
    ("repetition_penalty", 0.0), ("pad_token_id", -1), ("stop_token_ids", (3, -2)), ("seed", -5),
])
def test_invalid_values_name_the_field_and_the_range(field, value):
    with pytest.raises(GenerationConfigError, match=field) as info:
        GenerationConfig(**{field: value})
    assert isinstance(info.value, ValueError)
    assert "allowed" in str(info.value)


def test_from_dict_round_trips_and_rejects_unknown_keys():
    config = GenerationConfig(max_new_tokens=9, decode_strategy=SAMPLING, top_k=4, stop_token_ids=[7, 8], seed=1)
    assert GenerationConfig.from_dict(config.to_dict()) == config
    assert config.stop_token_ids == (7, 8)
    with pytest.raises(GenerationConfigError, match="num_beams"):
        GenerationConfig.from_dict({"num_beams": 2})
    with pytest.raises(GenerationConfigError, match="top_p"):
        config.updated(top_p=2.0)
