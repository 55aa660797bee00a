"""In-flight batching for AudioLDM: every request in flight shares each component call.

One engine owns the denoising loop of all the requests it holds. Each `step()` of the engine:

1. drops the requests whose caller went away (cancelled) and admits waiting ones up to `max_active`;
2. encodes the prompts of newly admitted requests in ONE text-encoder call, on their real token lengths
   (padded only to the longest of the batch, masked), reusing an LRU cache of prompt embeddings;
3. runs ONE UNet call per latent shape with a row per request (two with guidance) and a timestep per row, so
   a request that arrives later, or asks for other steps, guidance or negative prompt, joins the running
   batch; requests of different lengths (latent heights) make progress in separate calls of the same step;
4. decodes the requests that finished denoising, batched by shape (VAE decoder, then vocoder), and, with a
   ranker, scores every candidate against its prompt and orders them best first (musicgen.audioldm.ranking).

A request of k candidates (`num_waveforms_per_prompt`) is k latent rows of the same loop (2k with guidance)
sharing its prompt's embedding, drawn from its seed as ONE noise tensor [k, C, H, W], as ppdiffusers'
AudioLDMPipeline draws them. A request's rows never mix with another's: its own seeded noise, scheduler and
guidance scale, so its waveforms are the ones it gets alone (the graphs compute rows independently). Nothing
here imports Triton: the served model drives `run_forever()` in a thread and the in-process pipeline drives
`step()` itself.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from musicgen_client import interface as api

from ..inflight import EngineObserver, InflightLoop
from ..protocol import AudioOptions, BadOutputError, CancelledError, check_finite, status_of
from .config import AudioLDMConfig

logger = logging.getLogger(__name__)

StageRunner = Callable[[str, Dict[str, np.ndarray]], List[np.ndarray]]
Progress = Callable[[int, int], None]  # (steps done, total)


@dataclass(frozen=True)
class Candidates:
    """What a request gets back: its waveforms, best first when they were ranked."""

    audio: np.ndarray  # [k, samples]
    scores: Optional[np.ndarray] = None  # [k] CLAP cosine similarities to the prompt, descending; None: not ranked


class Ranker:
    """Orders candidates (musicgen.audioldm.ranking.ClapRanker); this base, ranking off, leaves them as drawn."""

    #: What the response says about ranking: why it is off, or how candidates were ordered.
    description = "off: no CLAP audio encoder in the repository"

    def scores(self, waveforms: Sequence[np.ndarray], text_embeds: np.ndarray,
               seeds: Sequence[tuple]) -> Optional[np.ndarray]:
        """n waveforms (of any lengths), their prompts' [n, dim] normalised CLAP text embeddings and a seed per
        waveform (for any random choice, e.g. a crop: (request seed, candidate index)) → [n] scores."""
        return None


def run_component(run_stage: StageRunner, name: str, feeds: Dict[str, np.ndarray]) -> np.ndarray:
    """Call one component with its interface's input names; return its single output."""
    spec = api.COMPONENTS_BY_NAME[name]
    if {t.name for t in spec.inputs} != set(feeds):
        raise ValueError(f"{name}: feeds {sorted(feeds)} do not match {[t.name for t in spec.inputs]}")
    return run_stage(name, feeds)[0]


@dataclass(eq=False)
class Job:
    """One request in flight: what it asked for, how to report back, and where its denoising stands."""

    prompt: str
    options: AudioOptions
    finish: Callable[[Optional[Candidates], Optional[BaseException]], None]  # (result, None) or (None, error)
    keep_going: Callable[[], bool] = lambda: True
    progress: Optional[Progress] = None
    # Set by the engine.
    frames: int = 0
    samples: int = 0
    text_embeds: Optional[np.ndarray] = None  # [1, dim] the prompt's normalised CLAP embedding
    embeds: Optional[np.ndarray] = None  # [negative × k; prompt × k] rows with guidance, else [prompt × k]
    scheduler: object = None
    timesteps: Sequence = ()
    step_index: int = 0
    latents: Optional[np.ndarray] = None
    enqueued_at: float = field(default_factory=time.monotonic)

    @property
    def guided(self) -> bool:
        return self.options.guidance_scale > 1.0

    @property
    def candidates(self) -> int:
        return self.options.candidates

    @property
    def rows(self) -> int:
        """UNet rows per step: a row per candidate, twice that with guidance."""
        return self.candidates * (2 if self.guided else 1)

    @property
    def denoised(self) -> bool:
        return self.step_index >= len(self.timesteps)


class EmbeddingCache:
    """A small LRU of text embeddings keyed by (text, token limit): repeated prompts and negative prompts
    skip the text encoder. Thread-safe; size 0 disables it."""

    def __init__(self, size: int):
        self.size = size
        self._items: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple) -> Optional[np.ndarray]:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def put(self, key: tuple, value: np.ndarray) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@dataclass(frozen=True)
class EngineLimits:
    max_active: int = 8  # requests denoising together; more wait their turn
    max_waiting: int = 64  # requests waiting for a place; more are refused at once (busy, retry later)
    max_batch_requests: int = 8  # requests per UNet / VAE / vocoder call (a guided request is two UNet rows)
    prompt_cache_size: int = 256  # cached text embeddings; 0 disables the cache

    def __post_init__(self):
        for name, low in (("max_active", 1), ("max_waiting", 0), ("max_batch_requests", 1), ("prompt_cache_size", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name}: {getattr(self, name)} is out of range: allowed {low} or more")


class AudioLDMEngine(InflightLoop):
    """Holds requests in flight and advances all of them together. `submit` is thread-safe; `step` and
    `run_forever` must be driven from one thread."""

    def __init__(self, config: AudioLDMConfig, tokenizer, new_scheduler: Callable[[], object],
                 initial_noise: Callable[[Sequence[int], int], np.ndarray], run_stage: StageRunner,
                 limits: EngineLimits = EngineLimits(), observer: EngineObserver = EngineObserver(),
                 ranker: Ranker = Ranker()):
        self.config = config
        self.ranker = ranker
        self.observer = observer
        self.tokenizer = tokenizer
        self.new_scheduler = new_scheduler
        self.initial_noise = initial_noise
        self.run_stage = run_stage
        self.limits = limits
        self.cache = EmbeddingCache(limits.prompt_cache_size)
        super().__init__("audioldm", limits.max_waiting)

    # ---- the caller's side ---------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        job.frames, job.samples = self.config.frames_and_samples(job.options.audio_length_in_s)
        self._enqueue(job)

    # ---- one iteration ---------------------------------------------------------------------------
    def step(self) -> None:
        self._drop_cancelled()
        admitted = self._admit()
        if admitted:
            self._guarded(admitted, self._start)
        for group in _by_shape([j for j in self._active if not j.denoised], self.limits.max_batch_requests):
            self._guarded(group, self._denoise_step)
        for group in _by_shape([j for j in self._active if j.denoised], self.limits.max_batch_requests):
            self._guarded(group, self._decode)
        self.observer.depth(len(self._active), len(self._waiting))

    def _wanted(self, job: Job, when: str) -> bool:
        """Whether the caller still waits for `job`; if not (or asking fails), it is answered here."""
        try:
            if job.keep_going():
                return True
            error: BaseException = CancelledError(f"cancelled {when}")
        except Exception as exc:  # noqa: BLE001 - the job fails, the loop goes on
            error = exc
        self._finish(job, error=error)
        return False

    def _drop_cancelled(self) -> None:
        for job in list(self._active):
            self._wanted(job, f"after {job.step_index} of {len(job.timesteps)} steps" if job.timesteps
                         else "before it started")
        # Waiting ones too: a request past its deadline, or whose client left, must not hold a waiting place
        # (nor wait for a running one to end before it is answered).
        with self._wake:
            waiting = list(self._waiting)
        for job in waiting:
            if not self._wanted(job, "while waiting"):
                with self._wake:
                    self._waiting.remove(job)

    def _admit(self) -> List[Job]:
        admitted = []
        with self._wake:
            while self._waiting and len(self._active) < self.limits.max_active:
                job = self._waiting.popleft()
                if self._wanted(job, "while waiting"):
                    admitted.append(job)
                    self._active.append(job)
        return admitted

    def _guarded(self, jobs: List[Job], stage: Callable[[List[Job]], None]) -> None:
        """Run a batched stage; if it fails, the requests in that batch fail with its error, the rest go on."""
        try:
            stage(jobs)
        except Exception as exc:  # noqa: BLE001 - becomes those requests' error responses
            logger.exception("%s failed for %d request(s)", stage.__name__, len(jobs))
            for job in jobs:
                self._finish(job, error=exc)

    def _finish(self, job: Job, result: Optional[Candidates] = None, error: Optional[BaseException] = None) -> None:
        if job in self._active:
            self._active.remove(job)
        outcome = "success" if error is None else "bad_output" if isinstance(error, BadOutputError) else status_of(error)
        self.observer.finished(outcome, time.monotonic() - job.enqueued_at)
        job.finish(result, error)

    def _call(self, name: str, requests: int, feeds: Dict[str, np.ndarray]) -> np.ndarray:
        start = time.monotonic()
        out = run_component(self.run_stage, name, feeds)
        self.observer.batch(name, requests, time.monotonic() - start)
        return out

    def _fail_all(self, error: BaseException) -> None:
        with self._wake:
            jobs = self._active + list(self._waiting)
            self._active, self._waiting = [], deque()
        for job in jobs:
            self._finish(job, error=error)

    # ---- 1. prompts → conditioning ------------------------------------------------------------------
    def _start(self, jobs: List[Job]) -> None:
        texts = []  # (text, token limit) per embedding row the jobs need
        for job in jobs:
            texts.append((job.prompt, self.tokenizer.model_max_length))
            if job.guided:
                # ppdiffusers pads (and so truncates) the negative prompt to the embedding width, not to the
                # tokenizer's limit: the tokens must match its.
                texts.append((job.options.negative_prompt or "", self.config.text_embed_dim))
        embeddings = self.encode_texts(texts)
        for job in jobs:
            job.text_embeds = embeddings[(job.prompt, self.tokenizer.model_max_length)]
            # As ppdiffusers: each embedding repeated per candidate, the negative ones first.
            rows = [job.text_embeds]
            if job.guided:
                rows.insert(0, embeddings[(job.options.negative_prompt or "", self.config.text_embed_dim)])
            job.embeds = np.concatenate([np.repeat(row, job.candidates, axis=0) for row in rows])
            self._prepare_latents(job)

    def encode_texts(self, keys: Sequence[tuple]) -> Dict[tuple, np.ndarray]:
        """(text, max tokens) → [1, dim] embedding, through the cache, the missing ones in one call padded to
        the longest of them (the attention mask hides the padding, as the pipeline's 512-token padding)."""
        found = {key: self.cache.get(key) for key in dict.fromkeys(keys)}
        missing = [key for key, value in found.items() if value is None]
        if missing:
            ids = [self.tokenizer.encode(text, max_length=limit) for text, limit in missing]
            width = max(len(row) for row in ids)
            input_ids = np.full((len(ids), width), self.tokenizer.pad_token_id, dtype=np.int64)
            mask = np.zeros((len(ids), width), dtype=np.int64)
            for row, tokens in enumerate(ids):
                input_ids[row, :len(tokens)] = tokens
                mask[row, :len(tokens)] = 1
            embeds = self._call(api.AUDIOLDM_TEXT_ENCODER, len(missing), {"input_ids": input_ids, "attention_mask": mask})
            check_finite(api.AUDIOLDM_TEXT_ENCODER, embeds)
            for row, key in enumerate(missing):
                found[key] = embeds[row:row + 1].copy()
                self.cache.put(key, found[key])
        return found

    # ---- 2. seeded noise ----------------------------------------------------------------------------
    def _prepare_latents(self, job: Job) -> None:
        c = self.config
        job.scheduler = self.new_scheduler()
        job.scheduler.set_timesteps(job.options.num_inference_steps)
        job.timesteps = list(job.scheduler.timesteps)
        shape = [job.candidates, c.latent_channels, job.frames // c.vae_scale_factor, c.mel_bins // c.vae_scale_factor]
        job.latents = self.initial_noise(shape, job.options.seed) * np.float32(job.scheduler.init_noise_sigma)

    # ---- 3. one denoising step for a batch of requests of one shape ---------------------------------------
    def _denoise_step(self, jobs: List[Job]) -> None:
        samples, timesteps, labels = [], [], []
        for job in jobs:
            t = job.timesteps[job.step_index]
            rows = np.concatenate([job.latents] * 2) if job.guided else job.latents
            samples.append(job.scheduler.scale_model_input(rows, t))
            timesteps.append(np.full([rows.shape[0]], float(t), dtype=np.float32))
            labels.append(job.embeds)
        noise = self._call(api.AUDIOLDM_UNET, len(jobs), {
            "sample": np.concatenate(samples).astype(np.float32, copy=False),
            "timestep": np.concatenate(timesteps),
            "class_labels": np.concatenate(labels).astype(np.float32, copy=False),
        })
        start = 0
        for job in jobs:
            pred = noise[start:start + job.rows]
            start += job.rows
            try:
                check_finite(api.AUDIOLDM_UNET, pred, f" at step {job.step_index + 1} of {len(job.timesteps)}")
            except BadOutputError as exc:
                self._finish(job, error=exc)
                continue
            if job.guided:
                uncond, cond = pred[:job.candidates], pred[job.candidates:]
                pred = uncond + np.float32(job.options.guidance_scale) * (cond - uncond)
            t = job.timesteps[job.step_index]
            job.latents = job.scheduler.step(pred, t, job.latents)
            job.step_index += 1
            if job.progress is not None:
                job.progress(job.step_index, len(job.timesteps))

    # ---- 4. latents → waveform -----------------------------------------------------------------------
    def _decode(self, jobs: List[Job]) -> None:
        latents = np.concatenate([job.latents for job in jobs]).astype(np.float32, copy=False)
        mel = self._call(api.AUDIOLDM_VAE_DECODER, len(jobs), {"latents": latents})
        check_finite(api.AUDIOLDM_VAE_DECODER, mel)
        waveforms = self._call(api.AUDIOLDM_VOCODER, len(jobs), {"mel_spectrogram": mel})
        good, start = [], 0
        for job in jobs:
            audio = np.ascontiguousarray(waveforms[start:start + job.candidates, :job.samples], dtype=np.float32)
            start += job.candidates
            try:
                check_finite(api.AUDIOLDM_VOCODER, audio)
                silent = int((~audio.any(axis=1)).sum())
                if silent:
                    raise BadOutputError(api.AUDIOLDM_VOCODER,
                                         f"produced silence (every sample is 0) in {silent} of {job.candidates} waveforms")
            except BadOutputError as exc:
                self._finish(job, error=exc)
                continue
            good.append((job, audio))
        if good:
            for (job, _), result in zip(good, self._rank(good)):
                self._finish(job, result=result)

    # ---- 5. candidates → best first ------------------------------------------------------------------
    def _rank(self, decoded: List[tuple]) -> List[Candidates]:
        """(job, [k, samples] waveforms) → each job's candidates best first, every waveform scored in one ranker
        call (lengths may differ: one latent shape covers lengths up to a mel frame apart)."""
        text = np.concatenate([np.repeat(job.text_embeds, job.candidates, axis=0) for job, _ in decoded])
        seeds = [(job.options.seed, i) for job, _ in decoded for i in range(job.candidates)]
        start = time.monotonic()
        scores = self.ranker.scores([row for _, audio in decoded for row in audio], text, seeds)
        if scores is None:
            return [Candidates(audio) for _, audio in decoded]
        self.observer.batch("ranking", len(decoded), time.monotonic() - start)
        results, at = [], 0
        for _, audio in decoded:
            mine = scores[at:at + len(audio)]
            at += len(audio)
            order = np.argsort(-mine, kind="stable")  # best first; ties keep the drawn order
            results.append(Candidates(audio[order], mine[order].astype(np.float32)))
        return results


def _by_shape(jobs: List[Job], max_batch: int) -> List[List[Job]]:
    """Batches of at most `max_batch` requests whose latents have the same shape (the same length), oldest
    first within each shape."""
    groups: Dict[int, List[Job]] = {}
    for job in sorted(jobs, key=lambda j: j.enqueued_at):
        groups.setdefault(job.frames, []).append(job)
    return [group[i:i + max_batch] for group in groups.values() for i in range(0, len(group), max_batch)]
