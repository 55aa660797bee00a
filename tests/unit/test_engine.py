"""The in-flight batching engine over fake stages: who shares which call, and that sharing changes nothing.

The fakes compute every row on its own (as the real graphs do), so a request's waveform must be exactly the
one it gets alone, whatever it was batched with. Real graphs: tests/export/test_batching_parity.py.
"""
import threading

import numpy as np
import pytest

from musicgen.audioldm.config import AudioLDMConfig
from musicgen.audioldm.engine import AudioLDMEngine, EngineLimits, Job
from musicgen.cancellation import Watch
from musicgen.protocol import AudioOptions, BadOutputError, CancelledError, UnavailableError
from musicgen_client import interface as api

CONFIG = AudioLDMConfig(latent_channels=2, vae_scale_factor=2, mel_bins=4, hop_length=10, sampling_rate=100,
                        text_embed_dim=6, default_audio_length_in_s=1.0)


class FakeTokenizer:
    model_max_length = 12
    pad_token_id = 1

    def encode(self, text, max_length):
        body = [3 + ord(c) % 40 for c in text][: max_length - 2]
        return [0] + body + [2]


class FakeScheduler:
    init_noise_sigma = 1.5

    def set_timesteps(self, steps):
        self.timesteps = np.arange(steps)[::-1] * 10

    def scale_model_input(self, sample, t):
        return sample * np.float32(1 + t / 1000)

    def step(self, noise, t, latents):
        return (latents - np.float32(0.1) * noise).astype(np.float32)


class FakeStages:
    """Row-wise fakes of the four graphs, recording every call's batch."""

    def __init__(self):
        self.calls = []
        self.fail_unet_rows = None
        self.nan_at_timestep = None  # UNet rows at this timestep come out NaN
        self.silent = False

    def __call__(self, name, feeds):
        self.calls.append((name, {k: v.copy() for k, v in feeds.items()}))
        if name == api.AUDIOLDM_TEXT_ENCODER:
            ids, mask = feeds["input_ids"].astype(np.float32), feeds["attention_mask"]
            mean = (ids * mask).sum(1) / mask.sum(1)  # the padding must not matter
            return [np.stack([mean + k for k in range(CONFIG.text_embed_dim)], axis=1).astype(np.float32)]
        if name == api.AUDIOLDM_UNET:
            if self.fail_unet_rows == feeds["sample"].shape[2]:
                raise RuntimeError("unet exploded")
            sample, t, labels = feeds["sample"], feeds["timestep"], feeds["class_labels"]
            out = (0.5 * sample + 1e-3 * t[:, None, None, None] + labels.mean(1)[:, None, None, None]).astype(np.float32)
            out[t == self.nan_at_timestep] = np.nan
            return [out]
        if name == api.AUDIOLDM_VAE_DECODER:
            latents = feeds["latents"]
            mel = latents.mean(1).repeat(CONFIG.vae_scale_factor, axis=1).repeat(CONFIG.vae_scale_factor, axis=2)
            return [mel.astype(np.float32)]
        if name == api.AUDIOLDM_VOCODER:
            mel = feeds["mel_spectrogram"]
            waveform = np.repeat(mel.mean(2), CONFIG.hop_length, axis=1).astype(np.float32)
            return [waveform * 0 if self.silent else waveform]
        raise KeyError(name)

    def batches(self, name):
        return [feeds for called, feeds in self.calls if called == name]


def noise(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def make_engine(stages=None, ranker=None, **limits):
    return AudioLDMEngine(CONFIG, FakeTokenizer(), FakeScheduler, noise, stages or FakeStages(), EngineLimits(**limits),
                          **({"ranker": ranker} if ranker else {}))


class Collector:
    def __init__(self):
        self.results = {}
        self.scores = {}

    def job(self, name, prompt, options, **kwargs):
        def finish(result, error):
            self.results[name] = error if error is not None else result.audio  # [candidates, samples]
            self.scores[name] = None if error is not None else result.scores
        return Job(prompt, options, finish, **kwargs)


def run(engine):
    while not engine.idle:
        engine.step()


REQUESTS = {
    "a": ("calm piano", AudioOptions(num_inference_steps=3, audio_length_in_s=0.4, guidance_scale=2.5, seed=1)),
    "b": ("fast drums", AudioOptions(negative_prompt="noise", num_inference_steps=5, audio_length_in_s=0.4,
                                     guidance_scale=4.0, seed=2)),
    "c": ("violin", AudioOptions(num_inference_steps=2, audio_length_in_s=0.8, guidance_scale=1.0, seed=3)),
    "d": ("calm piano", AudioOptions(num_inference_steps=3, audio_length_in_s=0.4, guidance_scale=2.5, seed=4)),
    # Candidates: 3 guided rows pairs sharing a's shape, 2 unguided of c's.
    "k3": ("soft strings", AudioOptions(negative_prompt="hiss", num_inference_steps=4, audio_length_in_s=0.4,
                                        guidance_scale=3.0, seed=5, num_waveforms_per_prompt=3)),
    "k2": ("violin", AudioOptions(num_inference_steps=2, audio_length_in_s=0.8, guidance_scale=1.0, seed=3,
                                  num_waveforms_per_prompt=2)),
}
SINGLE = ["a", "b", "c", "d"]


def alone(name, ranker=None):
    collector = Collector()
    engine = make_engine(ranker=ranker)
    engine.submit(collector.job(name, *REQUESTS[name]))
    run(engine)
    return collector.results[name]


def test_batched_waveforms_equal_alone_ones_exactly():
    stages, collector = FakeStages(), Collector()
    engine = make_engine(stages)
    for name, (prompt, options) in REQUESTS.items():
        engine.submit(collector.job(name, prompt, options))
    run(engine)
    for name in REQUESTS:
        expected = alone(name)
        assert collector.results[name].shape == expected.shape
        np.testing.assert_array_equal(collector.results[name], expected)
    assert collector.results["c"].shape == (1, 80)  # one candidate of 0.8 s at 100 Hz, trimmed


def test_one_unet_call_per_step_and_shape_with_a_timestep_per_row():
    stages, collector = FakeStages(), Collector()
    engine = make_engine(stages)
    for name in SINGLE:
        engine.submit(collector.job(name, *REQUESTS[name]))
    engine.step()
    first = stages.batches(api.AUDIOLDM_UNET)
    # Two shapes in flight (0.4 s and 0.8 s): two calls; a, b, d share one with 2 guided rows each.
    assert sorted(b["sample"].shape[0] for b in first) == [1, 6]
    shared = next(b for b in first if b["sample"].shape[0] == 6)
    assert shared["timestep"].tolist() == [20, 20, 40, 40, 20, 20]  # a and d have 3 steps, b has 5
    # The prompts of every admitted request were encoded in ONE text-encoder call, repeated ones once.
    assert len(stages.batches(api.AUDIOLDM_TEXT_ENCODER)) == 1


def test_a_late_request_joins_the_running_batch():
    stages, collector = FakeStages(), Collector()
    engine = make_engine(stages)
    engine.submit(collector.job("b", *REQUESTS["b"]))
    engine.step()
    engine.step()
    engine.submit(collector.job("a", *REQUESTS["a"]))
    engine.step()
    last = stages.batches(api.AUDIOLDM_UNET)[-1]
    assert last["timestep"].tolist() == [20, 20, 20, 20]  # b at its 3rd step, a at its 1st
    run(engine)
    np.testing.assert_array_equal(collector.results["a"], alone("a"))
    np.testing.assert_array_equal(collector.results["b"], alone("b"))


def test_prompt_embeddings_are_cached_and_unpadded():
    stages, collector = FakeStages(), Collector()
    engine = make_engine(stages)
    engine.submit(collector.job("a", *REQUESTS["a"]))
    run(engine)
    engine.submit(collector.job("d", *REQUESTS["d"]))  # same prompt and (empty) negative prompt
    run(engine)
    calls = stages.batches(api.AUDIOLDM_TEXT_ENCODER)
    assert len(calls) == 1 and engine.cache.hits == 2
    ids = calls[0]["input_ids"]
    assert ids.shape == (2, len(FakeTokenizer().encode("calm piano", 12)))  # the longest text, not 12
    assert calls[0]["attention_mask"][1].tolist() == [1, 1] + [0] * (ids.shape[1] - 2)  # "" is <s></s>


def test_the_negative_prompt_is_truncated_at_the_embedding_width():
    stages, collector = FakeStages(), Collector()
    engine = make_engine(stages)
    long = "x" * 40
    engine.submit(collector.job("a", long, AudioOptions(negative_prompt=long, num_inference_steps=1,
                                                        audio_length_in_s=0.2, seed=0)))
    run(engine)
    mask = stages.batches(api.AUDIOLDM_TEXT_ENCODER)[0]["attention_mask"]
    assert sorted(mask.sum(1).tolist()) == [CONFIG.text_embed_dim, FakeTokenizer.model_max_length]


def test_cancelled_request_stops_at_the_next_step_and_the_others_go_on():
    stages, collector = FakeStages(), Collector()
    engine = make_engine(stages)
    steps = []
    engine.submit(collector.job("b", *REQUESTS["b"], keep_going=lambda: len(steps) < 2,
                                progress=lambda done, total: steps.append(done)))
    engine.submit(collector.job("a", *REQUESTS["a"]))
    run(engine)
    assert isinstance(collector.results["b"], CancelledError)
    assert "after 2 of 5 steps" in str(collector.results["b"])
    np.testing.assert_array_equal(collector.results["a"], alone("a"))


def test_a_failing_call_fails_only_the_requests_in_it():
    stages, collector = FakeStages(), Collector()
    stages.fail_unet_rows = 4  # 0.8 s = 8 mel frames = 4 latent rows: request c only
    engine = make_engine(stages)
    for name in ("a", "c"):
        engine.submit(collector.job(name, *REQUESTS[name]))
    run(engine)
    assert isinstance(collector.results["c"], RuntimeError)
    np.testing.assert_array_equal(collector.results["a"], alone("a"))


def test_max_active_holds_the_rest_back_and_batches_are_capped():
    stages, collector = FakeStages(), Collector()
    engine = make_engine(stages, max_active=2, max_batch_requests=1)
    for name in ("a", "b", "d"):
        engine.submit(collector.job(name, *REQUESTS[name]))
    engine.step()
    assert [b["sample"].shape[0] for b in stages.batches(api.AUDIOLDM_UNET)] == [2, 2]
    run(engine)
    assert set(collector.results) == {"a", "b", "d"}


def test_limits_are_checked():
    with pytest.raises(ValueError, match="max_active: 0 is out of range"):
        EngineLimits(max_active=0)


class Served:
    """The engine driven by its own serving thread, as text2music runs it; `submit(name)` waits for the answer."""

    def __init__(self):
        self.collector = Collector()
        self.engine = make_engine()
        self.loop = threading.Thread(target=self.engine.run_forever, daemon=True)  # a failing test must not hang
        self.loop.start()

    def submit(self, name, **kwargs):
        done = threading.Event()
        job = self.collector.job(name, *REQUESTS[name], **kwargs)
        finish = job.finish
        job.finish = lambda audio, error: (finish(audio, error), done.set())
        self.engine.submit(job)
        assert done.wait(10), f"{name} was never answered"
        return self.collector.results[name]

    def stop(self):
        self.engine.stop()
        self.loop.join(10)
        assert not self.loop.is_alive()


def test_serving_thread_answers_submissions_from_other_threads_and_stops():
    served = Served()
    np.testing.assert_array_equal(served.submit("a"), alone("a"))
    served.stop()
    with pytest.raises(UnavailableError, match="shutting down"):
        served.engine.submit(served.collector.job("b", *REQUESTS["b"]))


def test_nan_from_the_unet_fails_that_request_naming_the_stage_and_step():
    stages, collector = FakeStages(), Collector()
    stages.nan_at_timestep = 40  # b's first step (40 30 20 10 0); a (20 10 0) never sees it
    engine = make_engine(stages)
    for name in ("a", "b"):
        engine.submit(collector.job(name, *REQUESTS[name]))
    run(engine)
    error = collector.results["b"]
    assert isinstance(error, BadOutputError)
    assert str(error) == "stage audioldm_unet failed: produced 16 non-finite values (NaN or inf) at step 1 of 5"  # 2 rows of 2×2×2
    np.testing.assert_array_equal(collector.results["a"], alone("a"))


def test_silence_is_an_error_not_audio():
    stages, collector = FakeStages(), Collector()
    stages.silent = True
    engine = make_engine(stages)
    engine.submit(collector.job("a", *REQUESTS["a"]))
    run(engine)
    assert "stage audioldm_vocoder failed: produced silence" in str(collector.results["a"])


def test_a_full_queue_refuses_at_once():
    collector = Collector()
    engine = make_engine(max_active=1, max_waiting=1)
    engine.submit(collector.job("a", *REQUESTS["a"]))
    with pytest.raises(UnavailableError, match="busy: 0 requests running and 1 waiting"):
        engine.submit(collector.job("b", *REQUESTS["b"]))


def test_a_waiting_request_past_its_deadline_is_answered_at_once_and_frees_its_place():
    collector, clock = Collector(), [0.0]
    engine = make_engine(max_active=1, max_waiting=1)
    engine.submit(collector.job("b", *REQUESTS["b"]))
    engine.step()  # b runs
    engine.submit(collector.job("a", *REQUESTS["a"], keep_going=Watch(lambda: False, 2.0, clock=lambda: clock[0])))
    engine.step()
    clock[0] = 2.0
    engine.step()  # b still denoising: a is answered anyway
    assert "b" not in collector.results
    assert str(collector.results["a"]) == "deadline exceeded: the request's timeout of 2 s has passed"
    engine.submit(collector.job("c", *REQUESTS["c"]))  # its waiting place is free again
    run(engine)
    assert set(collector.results) == {"a", "b", "c"}


def test_the_serving_loop_survives_a_failing_cancellation_check():
    """An error asking whether the caller still waits fails that request, not the loop."""
    served = Served()

    def broken_keep_going():
        raise RuntimeError("is_cancelled failed")

    assert "is_cancelled failed" in str(served.submit("a", keep_going=broken_keep_going))
    np.testing.assert_array_equal(served.submit("b"), alone("b"))
    served.stop()


# ---- candidates (num_waveforms_per_prompt) and their ranking --------------------------------------------------
def test_candidates_are_rows_of_one_loop_drawn_as_one_noise_tensor():
    stages, collector = FakeStages(), Collector()
    engine = make_engine(stages)
    engine.submit(collector.job("k3", *REQUESTS["k3"]))
    engine.step()
    (first,) = stages.batches(api.AUDIOLDM_UNET)
    # ppdiffusers: latents = randn([k, C, H, W]) × sigma, then [latents; latents] for guidance.
    latents = noise([3, CONFIG.latent_channels, 2, CONFIG.mel_bins // CONFIG.vae_scale_factor], 5) * np.float32(1.5)
    expected = FakeScheduler().scale_model_input(np.concatenate([latents, latents]), 30)
    np.testing.assert_array_equal(first["sample"], expected)
    labels = first["class_labels"]  # [negative × 3; prompt × 3]: the embedding shared, not re-encoded per row
    assert len(np.unique(labels[:3], axis=0)) == len(np.unique(labels[3:], axis=0)) == 1
    assert not np.array_equal(labels[0], labels[3])
    assert stages.batches(api.AUDIOLDM_TEXT_ENCODER)[0]["input_ids"].shape[0] == 2
    run(engine)
    audio = collector.results["k3"]
    assert audio.shape == (3, 40) and len(np.unique(audio, axis=0)) == 3  # three different waveforms
    assert collector.scores["k3"] is None  # no ranker: unranked, in drawn order


class FakeRanker:
    """Scores a waveform by its mean; records what it was given."""

    description = "fake"

    def __init__(self):
        self.calls = []

    def scores(self, waveforms, text_embeds, seeds):
        self.calls.append(([len(w) for w in waveforms], text_embeds.shape, list(seeds)))
        return np.array([w.mean() for w in waveforms]) + 0 * text_embeds[:, 0]


def test_candidates_come_back_best_first_with_their_scores():
    ranker, collector = FakeRanker(), Collector()
    engine = make_engine(ranker=ranker)
    engine.submit(collector.job("k3", *REQUESTS["k3"]))
    run(engine)
    unranked = alone("k3")
    audio, scores = collector.results["k3"], collector.scores["k3"]
    order = np.argsort(-unranked.mean(1))
    np.testing.assert_array_equal(audio, unranked[order])
    np.testing.assert_array_equal(scores, unranked.mean(1)[order].astype(np.float32))
    assert scores.dtype == np.float32 and list(scores) == sorted(scores, reverse=True)
    assert ranker.calls == [([40, 40, 40], (3, CONFIG.text_embed_dim), [(5, 0), (5, 1), (5, 2)])]


def test_ranked_candidates_equal_alone_in_a_batch_with_one_ranker_call_per_decode():
    ranker, collector = FakeRanker(), Collector()
    engine = make_engine(ranker=ranker)
    for name in ("a", "k3", "d", "k2"):
        engine.submit(collector.job(name, *REQUESTS[name]))
    run(engine)
    for name in ("a", "k3", "d", "k2"):
        solo = Collector()
        solo_engine = make_engine(ranker=FakeRanker())
        solo_engine.submit(solo.job(name, *REQUESTS[name]))
        run(solo_engine)
        np.testing.assert_array_equal(collector.results[name], solo.results[name])
        np.testing.assert_array_equal(collector.scores[name], solo.scores[name])
    assert collector.results["k2"].shape == (2, 80) and collector.results["a"].shape == (1, 40)
    # One ranker call per decoded batch: k2 after its 2 steps, a and d together after 3, k3 after 4.
    assert [call[2] for call in ranker.calls] == [[(3, 0), (3, 1)], [(1, 0), (4, 0)], [(5, 0), (5, 1), (5, 2)]]


def test_silence_in_one_candidate_fails_the_request_naming_how_many():
    stages, collector = FakeStages(), Collector()
    stages.silent = True
    engine = make_engine(stages)
    engine.submit(collector.job("k3", *REQUESTS["k3"]))
    run(engine)
    assert "produced silence (every sample is 0) in 3 of 3 waveforms" in str(collector.results["k3"])


def test_requests_of_one_latent_shape_and_other_lengths_are_ranked_together():
    """0.4 s and 0.35 s make the same mel frames (the latter rounds up to the VAE's multiple) but keep 40 and 35
    samples."""
    ranker, collector = FakeRanker(), Collector()
    engine = make_engine(ranker=ranker)
    shorter = AudioOptions(num_inference_steps=3, audio_length_in_s=0.35, guidance_scale=2.5, seed=6,
                           num_waveforms_per_prompt=2)
    engine.submit(collector.job("a", *REQUESTS["a"]))
    engine.submit(collector.job("shorter", "calm piano", shorter))
    run(engine)
    assert collector.results["a"].shape == (1, 40) and collector.results["shorter"].shape == (2, 35)
    assert [call[0] for call in ranker.calls] == [[40, 35, 35]]
