"""In-flight (token-level) batching for the LLM stages: concurrent sequences share each decode step.

One engine owns ONE step graph (`run(feeds) -> (logits, new_key_values)`, musicgen.llm.kv_cache) and ONE KV cache
of `max_active` rows. Each iteration of the engine:

1. answers the requests whose caller went away (cancelled) with CancelledError, waiting or active;
2. runs ONE decode step for every active row: each row's feeds (its FeedsBuilder's `decode`) concatenated on the
   batch axis, each row's logical mask laid over the buffers at its own length (`KVCache.layout_mask`);
3. picks each row's token with the row's own `TokenPicker` (its config, its seeded RNG, its stop ids and token
   budget: musicgen.generation, shared with `generate`), and retires the rows that finished, were cancelled or got
   non-finite logits, packing the cache (`KVCache.move`) and completing each request's future;
4. admits waiting requests while a row is free: each is prefilled ALONE into a one-row cache (prompts differ in
   length; a prefill is one graph call over the whole prompt), picks its first token, and is inserted into a free
   row of the batch cache (`KVCache.insert`, one copy of its prompt's positions); it decodes from the next
   iteration on.

A row's logits depend only on its own positions (masked slots weigh exactly zero), so a request gets the tokens
it gets alone, whoever shares its steps. A failure is confined to the requests it hit: a graph call that raises
fails the rows of that call, non-finite logits fail their row; the engine goes on. Nothing here imports Triton:
a stage model drives `run_forever()` in a thread, tests and benchmarks drive `step()` or the thread themselves.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from ..generation import FeedsBuilder, GenerationConfig, GenerationResult, KeepGoing, TokenPicker, check_cancelled
from ..inflight import EngineObserver, InflightLoop
from ..protocol import BadOutputError, check_finite, status_of
from .feeds import KVShape
from .kv_cache import ATTENTION_MASK, DEFAULT_CHUNK, CachedStep, CacheFullError, GraphRun, KVCache

logger = logging.getLogger(__name__)

PREFILL = "prefill"  # the observer's stage name for a joining request's prefill (decode steps: the graph's name)


@dataclass(frozen=True)
class LLMEngineLimits:
    max_active: int = 8  # sequences decoding together (rows of the cache); 1 decodes one request at a time
    max_waiting: int = 64  # requests waiting for a row; more are refused at once (busy, retry later)

    def __post_init__(self):
        for name, low in (("max_active", 1), ("max_waiting", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name}: {getattr(self, name)} is out of range: allowed {low} or more")


@dataclass(eq=False)
class Sequence:
    """One request in the engine: its inputs, how it decodes, and where it stands."""

    feeds: FeedsBuilder  # batch_size 1
    config: GenerationConfig
    keep_going: KeepGoing
    observer: EngineObserver
    future: Future = field(default_factory=Future)
    enqueued_at: float = field(default_factory=time.monotonic)
    picker: Optional[TokenPicker] = None  # set at admission
    last_token: Optional[np.ndarray] = None  # [1] the token the next decode step feeds

    def wanted(self) -> bool:
        """Whether the caller still waits; if not (CancelledError), or asking fails, the future is answered here."""
        try:
            check_cancelled(self.keep_going, self.picker.count if self.picker else 0, self.config)
            return True
        except Exception as exc:  # noqa: BLE001 - this request fails, the engine goes on
            self.fail(exc)
            return False

    def fail(self, error: BaseException) -> None:
        self._end(error=error)

    def succeed(self) -> None:
        self._end(result=self.picker.result())

    def _end(self, result: Optional[GenerationResult] = None, error: Optional[BaseException] = None) -> None:
        if self.future.done():
            return
        outcome = ("success" if error is None else "bad_output" if isinstance(error, BadOutputError)
                   else status_of(error))
        self.observer.finished(outcome, time.monotonic() - self.enqueued_at)  # counted before the answer leaves
        if error is None:
            self.future.set_result(result)
        else:
            self.future.set_exception(error)


class LLMEngine(InflightLoop):
    """Decodes the sequences in flight together. `submit` is thread-safe; `step` and `run_forever` must be
    driven from one thread. `context_limit` bounds a row's positions (the model's context; 0: none)."""

    def __init__(self, run: GraphRun, shape: KVShape, limits: LLMEngineLimits = LLMEngineLimits(), *,
                 name: str = "llm", context_limit: int = 0, chunk: int = DEFAULT_CHUNK, dtype=np.float32,
                 observer: EngineObserver = EngineObserver()):
        self.run = run
        self.observer = observer  # metrics: rows per decode step, requests ended, engine depth
        self.limits = limits
        self.cache = KVCache(shape, rows=limits.max_active, chunk=chunk, limit=context_limit or None, dtype=dtype)
        super().__init__(name, limits.max_waiting, busy_verb="decoding")  # _active[i] decodes in row i of the cache

    # ---- the caller's side ---------------------------------------------------------------------
    def submit(self, feeds: FeedsBuilder, config: GenerationConfig,
               keep_going: Optional[KeepGoing] = None) -> Future:
        """Queue one sequence; its future gets the GenerationResult ([1, generated] tokens) or the error.
        UnavailableError at once when the waiting queue is full or the engine stopped."""
        if feeds.batch_size != 1:
            raise ValueError(f"the engine decodes one sequence per request; got a batch of {feeds.batch_size}")
        sequence = Sequence(feeds, config, keep_going or (lambda: True), self.observer)
        self._enqueue(sequence)
        return sequence.future

    def generate(self, feeds: FeedsBuilder, config: GenerationConfig,
                 keep_going: Optional[KeepGoing] = None) -> GenerationResult:
        """`submit`, then wait for the result (raises the request's error); the engine must be running."""
        return self.submit(feeds, config, keep_going).result()

    @property
    def active(self) -> int:
        return len(self._active)

    # ---- one iteration ---------------------------------------------------------------------------
    def step(self) -> None:
        """One graph call per sequence: a decode step for the rows already in, then the joining ones' prefills
        (they decode from the next iteration), so each request is asked `keep_going` before each of its steps."""
        self._drop_cancelled()
        if self._active:
            self._decode_step()
        for sequence in self._admit():
            self._prefill(sequence)
        self.observer.depth(len(self._active), len(self._waiting))

    def _drop_cancelled(self) -> None:
        self._retire([row for row, sequence in enumerate(self._active) if not sequence.wanted()])
        with self._wake:  # a waiting request whose caller left must not hold a waiting place
            self._waiting = deque(s for s in self._waiting if s.wanted())

    def _admit(self) -> List[Sequence]:
        admitted = []
        with self._wake:
            while self._waiting and len(self._active) + len(admitted) < self.limits.max_active:
                admitted.append(self._waiting.popleft())
        return admitted

    def _prefill(self, sequence: Sequence) -> None:
        """The prompt alone through the graph into a one-row cache, the first token, then a row of the batch."""
        try:
            sequence.picker = TokenPicker(sequence.config, sequence.feeds.context_ids())
            alone = KVCache(self.cache.shape, rows=1, chunk=self.cache.chunk, limit=self.cache.limit,
                            dtype=self.cache.dtype)
            start = time.monotonic()
            logits = CachedStep(self.run, alone)(sequence.feeds.prefill())
            self.observer.batch(PREFILL, 1, time.monotonic() - start)
            check_finite(self.name, logits, " in its logits")
            sequence.last_token = sequence.picker.pick(logits)
            if sequence.picker.done:  # a stop token first, or max_new_tokens 1: it never joins the batch
                sequence.succeed()
                return
            self.cache.insert(len(self._active), alone)
        except Exception as exc:  # noqa: BLE001 - this request fails, the others go on
            logger.warning("%s prefill failed: %s", self.name, exc)
            sequence.fail(exc)
            return
        self._active.append(sequence)

    def _decode_step(self) -> None:
        """One graph call for every active row; each row picks its token; finished and failed rows leave."""
        self._retire(self._rows_without_room())
        feeds_of = {}
        for sequence in self._active:
            try:
                feeds_of[sequence] = sequence.feeds.decode(sequence.last_token[:, None])
            except Exception as exc:  # noqa: BLE001 - this row fails, the others go on
                sequence.fail(exc)
        self._retire([row for row, sequence in enumerate(self._active) if sequence not in feeds_of])
        rows = len(self._active)
        if not rows:
            return
        per_row = [feeds_of[sequence] for sequence in self._active]
        try:
            batched = {name: np.concatenate([feeds[name] for feeds in per_row])
                       for name in per_row[0] if name != ATTENTION_MASK}
            self.cache.reserve(1, rows)
            mask = self.cache.layout_mask([feeds[ATTENTION_MASK][0] for feeds in per_row])
            start = time.monotonic()
            logits, new_key_values = self.run(batched | {ATTENTION_MASK: mask} | self.cache.feeds(rows))
            self.observer.batch(self.name, rows, time.monotonic() - start)
            self.cache.append(np.asarray(new_key_values))
        except Exception as exc:  # noqa: BLE001 - the rows of this call fail, the engine goes on
            logger.exception("%s decode step failed for %d row(s)", self.name, rows)
            for sequence in self._active:
                sequence.fail(exc)
            self._retire(list(range(rows)))
            return
        finished = []
        for row, sequence in enumerate(self._active):
            try:
                check_finite(self.name, logits[row:row + 1], f" in its logits at token {sequence.picker.count + 1}")
            except Exception as exc:  # noqa: BLE001 - BadOutputError: this row only
                sequence.fail(exc)
                finished.append(row)
                continue
            sequence.last_token = sequence.picker.pick(logits[row:row + 1])
            if sequence.picker.done:
                sequence.succeed()
                finished.append(row)
        self._retire(finished)

    def _rows_without_room(self) -> List[int]:
        """Rows whose next position would pass the context limit fail (the recipes' budget check keeps them out;
        this keeps one such row from stopping the others)."""
        limit = self.cache.limit
        if not limit:
            return []
        full = [row for row in range(len(self._active)) if self.cache.lengths[row] + 1 > limit]
        for row in full:
            self._active[row].fail(CacheFullError(f"{self.name}: the KV cache holds at most {limit} positions"))
        return full

    def _retire(self, rows: List[int]) -> None:
        """Remove these rows, the last row moving into each freed one (the cache stays packed)."""
        for row in sorted(rows, reverse=True):
            last = len(self._active) - 1
            if row == last:
                self.cache.clear(row)
            else:
                self.cache.move(last, row)
                self._active[row] = self._active[last]
            self._active.pop()
        if rows:  # the longest row may have left: its slots are no longer attended over nor held
            self.cache.fit()

    def _fail_all(self, error: BaseException) -> None:
        with self._wake:
            sequences = self._active + list(self._waiting)
            self._waiting = deque()
        self._retire(list(range(len(self._active))))
        for sequence in sequences:
            sequence.fail(error)
