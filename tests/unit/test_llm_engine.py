"""The in-flight LLM engine over a toy numpy step graph: a request's tokens are the ones it gets alone whoever
shares its decode steps (joining and leaving at different steps, other prompt lengths, configs and stop
conditions); cancellation, bad outputs and failures stay with the requests they hit; the waiting queue is bounded.
"""
import threading

import numpy as np
import pytest

from musicgen.generation import GenerationConfig, generate
from musicgen.inflight import EngineObserver
from musicgen.llm.engine import PREFILL, LLMEngine, LLMEngineLimits
from musicgen.llm.feeds import KVShape
from musicgen.llm.kv_cache import CachedStep, CacheFullError, KVCache
from musicgen.protocol import BadOutputError, CancelledError, UnavailableError, status_of

VOCAB = 11  # ids the toy embeds; it chooses among the first VOCAB - 1
POISON = VOCAB - 1  # its embedding is NaN: a request fed this id gets non-finite logits
SHAPE = KVShape(layers=2, heads=2, head_dim=4)


def toy_graph(seed=0):
    """A two-layer attention 'LLM' over the cache buffers, computed for all rows at once as an exported step
    graph is: scores over the buffer slots and over the step's own positions, one softmax under the laid-out mask.
    Returns (logits of the last position [rows, vocab], new_key_values [layers, 2, rows, heads, new, d])."""
    rng = np.random.default_rng(seed)
    width = SHAPE.heads * SHAPE.head_dim
    embedding = rng.standard_normal((VOCAB, width))
    embedding[POISON] = np.nan
    projections = rng.standard_normal((SHAPE.layers, 3, width, width)) / np.sqrt(width)
    output = rng.standard_normal((width, POISON)) * 3  # POISON is never a chosen token

    def heads(x):  # [rows, new, width] → [rows, heads, new, d]
        return x.reshape(*x.shape[:2], SHAPE.heads, SHAPE.head_dim).transpose(0, 2, 1, 3)

    def run(feeds):
        hidden = embedding[feeds["input_ids"]]  # [rows, new, width]
        mask = feeds["attention_mask"][:, :1].astype(bool)  # [rows, 1, new, capacity + new]
        new_key_values = []
        for layer in range(SHAPE.layers):
            query, key, value = (heads(hidden @ projections[layer, i]) for i in range(3))
            keys = np.concatenate([feeds[f"past_key_{layer}"], key], axis=2)
            values = np.concatenate([feeds[f"past_value_{layer}"], value], axis=2)
            scores = np.where(mask, query @ keys.transpose(0, 1, 3, 2) / np.sqrt(SHAPE.head_dim), -1e30)
            weights = np.exp(scores - scores.max(-1, keepdims=True))
            attended = (weights / weights.sum(-1, keepdims=True)) @ values
            hidden = np.tanh(hidden + attended.transpose(0, 2, 1, 3).reshape(hidden.shape))
            new_key_values.append(np.stack([key, value]))
        return (hidden[:, -1] @ output).astype(np.float32), np.stack(new_key_values).astype(np.float32)

    return run


class ToyFeeds:
    """One sequence's step inputs: the prompt, then each chosen token; logical masks (causal prefill)."""

    def __init__(self, prompt, poison_after=None):
        self.prompt = np.array([prompt], dtype=np.int64)
        self.length = len(prompt)
        self.batch_size = 1
        self.poison_after = poison_after  # feed POISON at this decode step (1-based)
        self.decoded = 0

    def prefill(self):
        causal = np.tril(np.ones((self.length, self.length), dtype=np.int64))
        return {"input_ids": self.prompt, "attention_mask": causal[None, None]}

    def decode(self, next_tokens):
        self.decoded += 1
        self.length += 1
        tokens = np.full_like(next_tokens, POISON) if self.decoded == self.poison_after else next_tokens
        return {"input_ids": tokens, "attention_mask": np.ones((1, 1, 1, self.length), dtype=np.int64)}

    def context_ids(self):
        return self.prompt


GREEDY = GenerationConfig(max_new_tokens=9)
REQUESTS = [  # (prompt, config): other prompt lengths, strategies, penalties, stop ids and budgets
    ([1, 2, 3], GREEDY),
    ([4], GenerationConfig(max_new_tokens=12, decode_strategy="sampling", seed=3)),
    ([5, 6, 7, 8, 9, 1, 2], GenerationConfig(max_new_tokens=7, decode_strategy="sampling", top_k=3, temperature=0.7,
                                             seed=11)),
    ([2, 2], GenerationConfig(max_new_tokens=10, repetition_penalty=1.8)),
    ([3, 1], GenerationConfig(max_new_tokens=14, decode_strategy="sampling", top_p=0.6, seed=5,
                              stop_token_ids=(4, 7))),
    ([9, 8, 7, 6], GenerationConfig(max_new_tokens=1)),
]


def alone(prompt, config, run=None):
    cache = KVCache(SHAPE, rows=1, chunk=4)
    return generate(CachedStep(run or toy_graph(), cache), ToyFeeds(prompt), config).row()


def engine(max_active=8, max_waiting=64, run=None, **kwargs):
    return LLMEngine(run or toy_graph(), SHAPE, LLMEngineLimits(max_active, max_waiting), name="toy_step",
                     chunk=4, **kwargs)


def bystanders(batch, requests):
    """Requests sharing the engine with the one a test is about; each must still get its tokens alone."""
    return [batch.submit(ToyFeeds(prompt), config) for prompt, config in requests]


def tokens(futures):
    return [future.result().row() for future in futures]


def tokens_alone(requests):
    return [alone(prompt, config) for prompt, config in requests]


def drive(engine_, futures, limit=200):
    for _ in range(limit):
        if all(f.done() for f in futures):
            return
        engine_.step()
    raise AssertionError("the engine did not finish its requests")


def test_the_toy_step_depends_on_the_past_and_the_configs_differ():
    first = [alone(prompt, config) for prompt, config in REQUESTS]
    assert len({tuple(tokens) for tokens in first}) == len(REQUESTS)
    assert alone([1, 2, 3], GREEDY) != alone([2, 3], GREEDY)


@pytest.mark.parametrize("max_active", [1, 2, 3, 8])
def test_tokens_batched_equal_tokens_alone_as_requests_join_and_leave(max_active):
    expected = tokens_alone(REQUESTS)
    batch = engine(max_active)
    futures = []
    for prompt, config in REQUESTS:  # one joins per iteration while earlier ones are mid-decode
        futures.append(batch.submit(ToyFeeds(prompt), config))
        batch.step()
        assert batch.active <= max_active
    drive(batch, futures)
    assert tokens(futures) == expected
    assert batch.idle and batch.cache.lengths.tolist() == [0] * max_active
    assert batch.cache.capacity == 0  # an idle engine holds no cache


def test_the_shared_cache_shrinks_when_the_longest_row_leaves():
    batch = engine()
    long_config, short_config = GenerationConfig(max_new_tokens=2), GenerationConfig(max_new_tokens=8)
    long = batch.submit(ToyFeeds([1, 2, 3, 4, 5, 6, 7, 8, 9]), long_config)
    short = batch.submit(ToyFeeds([1]), short_config)
    while not long.done():
        batch.step()
    assert batch.active == 1 and batch.cache.capacity == 4  # the short row's 3 positions, not the long one's 10
    drive(batch, [short])
    assert short.result().row() == alone([1], short_config) and batch.cache.capacity == 0


def test_stop_ids_end_a_row_early_and_the_others_go_on():
    greedy = alone([5], GREEDY)
    config = GenerationConfig(max_new_tokens=30, stop_token_ids=(greedy[2],))
    stopping = alone([5], config)
    assert stopping == greedy[:greedy.index(greedy[2]) + 1]  # up to the stop token, included
    batch = engine()
    futures = [batch.submit(ToyFeeds([5]), config), batch.submit(ToyFeeds([1, 2]), GREEDY)]
    drive(batch, futures)
    assert futures[0].result().row() == stopping and futures[0].result().finished.tolist() == [True]
    assert futures[1].result().row() == alone([1, 2], GREEDY)


def test_a_cancelled_request_stops_at_the_next_token_and_only_it():
    asked = []

    def keep_going():
        asked.append(1)
        return len(asked) <= 3  # the prefill and two decode steps

    batch = engine()
    cancelled = batch.submit(ToyFeeds([1, 2, 3]), GREEDY, keep_going)
    others = bystanders(batch, REQUESTS[1:3])
    drive(batch, [cancelled] + others)
    with pytest.raises(CancelledError, match="after 3 of at most 9 new tokens") as info:
        cancelled.result()
    assert status_of(info.value) == "cancelled"
    assert tokens(others) == tokens_alone(REQUESTS[1:3])


def test_a_waiting_request_whose_caller_left_is_answered_without_a_row():
    batch = engine(max_active=1)
    running = batch.submit(ToyFeeds([1]), GREEDY)
    gone = batch.submit(ToyFeeds([2]), GREEDY, keep_going=lambda: False)
    batch.step()
    with pytest.raises(CancelledError, match="after 0 of"):
        gone.result(timeout=0)
    drive(batch, [running])
    assert running.result().row() == alone([1], GREEDY)


def test_non_finite_logits_fail_their_row_never_the_engine():
    batch = engine()
    poisoned = batch.submit(ToyFeeds([1, 2], poison_after=3), GREEDY)
    others = bystanders(batch, REQUESTS[1:4])
    drive(batch, [poisoned] + others)
    with pytest.raises(BadOutputError, match="toy_step failed: produced .* non-finite values .* at token 4") as info:
        poisoned.result()
    assert status_of(info.value) == "internal"
    assert tokens(others) == tokens_alone(REQUESTS[1:4])


def test_a_failing_graph_call_fails_its_rows_and_the_engine_serves_the_next_ones():
    graph = toy_graph()
    calls = []

    def flaky(feeds):
        calls.append(feeds["input_ids"].shape[0])
        if len(calls) == 4:  # the 2 prefills, one decode step, then this one: both rows fail
            raise RuntimeError("graph exploded")
        return graph(feeds)

    batch = engine(run=flaky)
    hit = [batch.submit(ToyFeeds(prompt), GREEDY) for prompt in ([1], [2, 3])]
    drive(batch, hit)
    for future in hit:
        with pytest.raises(RuntimeError, match="graph exploded"):
            future.result()
    assert batch.idle
    later = batch.submit(ToyFeeds([4, 5]), GREEDY)
    drive(batch, [later])
    assert later.result().row() == alone([4, 5], GREEDY)


def test_a_row_at_the_context_limit_fails_alone():
    batch = engine(context_limit=6)
    full = batch.submit(ToyFeeds([1, 2, 3, 4]), GenerationConfig(max_new_tokens=8))  # 4 + 8 > 6
    fits = batch.submit(ToyFeeds([5]), GenerationConfig(max_new_tokens=5))  # 1 + 5 = 6
    drive(batch, [full, fits])
    with pytest.raises(CacheFullError, match="at most 6 positions"):
        full.result()
    assert fits.result().row() == alone([5], GenerationConfig(max_new_tokens=5))


def test_the_waiting_queue_is_bounded_and_a_stopped_engine_refuses():
    batch = engine(max_active=1, max_waiting=2)
    accepted = [batch.submit(ToyFeeds([1]), GREEDY) for _ in range(2)]
    with pytest.raises(UnavailableError, match="busy: 0 requests decoding and 2 waiting") as info:
        batch.submit(ToyFeeds([1]), GREEDY)
    assert status_of(info.value) == "unavailable"
    batch.step()  # one admitted: a waiting place frees up
    accepted.append(batch.submit(ToyFeeds([2]), GREEDY))
    drive(batch, accepted)
    assert tokens(accepted) == [alone([1], GREEDY)] * 2 + [alone([2], GREEDY)]
    batch.stop()
    with pytest.raises(UnavailableError, match="shutting down"):
        batch.submit(ToyFeeds([1]), GREEDY)


def test_a_batch_of_rows_is_refused():
    feeds = ToyFeeds([1])
    feeds.batch_size = 2
    with pytest.raises(ValueError, match="one sequence per request; got a batch of 2"):
        engine().submit(feeds, GREEDY)


def test_concurrent_callers_on_the_serving_thread_get_their_own_tokens():
    batch = engine(max_active=4)
    loop = threading.Thread(target=batch.run_forever, daemon=True)
    loop.start()
    results = {}

    def call(index):
        prompt, config = REQUESTS[index]
        results[index] = batch.generate(ToyFeeds(prompt), config)

    callers = [threading.Thread(target=call, args=(i,)) for i in range(len(REQUESTS))]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=60)
    batch.stop()
    loop.join(timeout=60)
    assert not loop.is_alive()
    assert [results[i].row() for i in range(len(REQUESTS))] == tokens_alone(REQUESTS)


def test_stopping_answers_the_waiting_requests():
    batch = engine(max_active=1)
    waiting = batch.submit(ToyFeeds([1]), GREEDY)
    batch.stop()
    batch.run_forever()  # returns at once: stopped
    with pytest.raises(UnavailableError, match="shutting down"):
        waiting.result(timeout=0)


class Recorder(EngineObserver):
    def __init__(self):
        self.batches, self.outcomes, self.depths = [], [], []

    def batch(self, stage, items, seconds):
        self.batches.append((stage, items))

    def finished(self, outcome, seconds):
        self.outcomes.append(outcome)

    def depth(self, active, waiting):
        self.depths.append((active, waiting))


def test_the_observer_sees_shared_steps_outcomes_and_depth():
    recorder = Recorder()
    batch = engine(max_active=2, observer=recorder)
    futures = [batch.submit(ToyFeeds([1, 2]), GREEDY), batch.submit(ToyFeeds([3]), GREEDY),
               batch.submit(ToyFeeds([4], poison_after=1), GREEDY),
               batch.submit(ToyFeeds([5]), GREEDY, keep_going=lambda: False)]
    drive(batch, futures)
    assert recorder.batches[:2] == [(PREFILL, 1), (PREFILL, 1)] and ("toy_step", 2) in recorder.batches
    assert sorted(recorder.outcomes) == ["bad_output", "cancelled", "success", "success"]
    assert recorder.depths[0] == (2, 1) and recorder.depths[-1] == (0, 0)
