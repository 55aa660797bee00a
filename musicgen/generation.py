"""A framework-free decoding loop over any "step" callable: prefill, then one token per step with a KV cache.

The loop knows nothing about the model: a `FeedsBuilder` makes each step's inputs (family-specific, see
`musicgen.llm.feeds`) and `step(feeds) -> logits [batch, vocab] of the last position` runs one exported graph
(or anything else) and keeps the KV cache itself (`musicgen.llm.kv_cache.CachedStep`). Token selection reproduces
paddlenlp 2.8.1's `generate` so that greedy ids over the exported graphs equal the eager model's:

- greedy: argmax of the processed logits (first index on ties);
- sampling: softmax(logits / temperature), keep the `top_k` largest probabilities (every one >= the k-th), then
  the smallest prefix of the sorted ones whose mass exceeds `top_p` (the crossing token kept, always at least
  one), and draw from what is left, renormalised, with a seeded numpy Generator. paddlenlp draws with paddle's
  global RNG, so only the filtering maths is shared, not the random stream; with top_k=1 both are exact;
- repetition penalty (CTRL): every id already in the context (`FeedsBuilder.context_ids` + the generated
  ones) has its logit divided by the penalty if positive, multiplied if negative;
- a stop token is emitted, then ends its row; finished rows get `pad_token_id`; at most `max_new_tokens`.

`TokenPicker` is the per-sequence half (a config, its RNG, the context, what was generated, who stopped): `generate`
drives one for a lockstep batch, the in-flight engine (`musicgen.llm.engine`) one per request, so a request picks
the same tokens alone or batched. A `keep_going()` callable, asked before every step, stops the loop with a
CancelledError (a client that went away costs at most one more token).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Dict, Mapping, Optional, Protocol, Sequence, Tuple

import numpy as np

from .protocol import CancelledError

logger = logging.getLogger(__name__)

GREEDY = "greedy_search"
SAMPLING = "sampling"
DECODE_STRATEGIES = (GREEDY, SAMPLING)
MAX_NEW_TOKENS_LIMIT = 8192

Feeds = Dict[str, np.ndarray]
StepFn = Callable[[Feeds], np.ndarray]  # feeds → logits [batch, vocab]; the step keeps the KV cache
KeepGoing = Callable[[], bool]


class GenerationConfigError(ValueError):
    """A generation parameter is out of its allowed range; the message names the field and the range."""


@dataclass(frozen=True)
class GenerationConfig:
    """How to pick tokens. Validated on construction: a bad value raises GenerationConfigError."""

    max_new_tokens: int = 20
    decode_strategy: str = GREEDY
    temperature: float = 1.0  # sampling only
    top_k: int = 0  # sampling only; 0 keeps every token
    top_p: float = 1.0  # sampling only; 1.0 keeps every token
    repetition_penalty: float = 1.0  # 1.0 is off
    stop_token_ids: Tuple[int, ...] = ()
    pad_token_id: int = 0  # written into rows that already stopped
    seed: Optional[int] = None  # sampling only; None draws fresh entropy

    def __post_init__(self):
        object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))
        self._check_int("max_new_tokens", 1, MAX_NEW_TOKENS_LIMIT)
        if self.decode_strategy not in DECODE_STRATEGIES:
            raise GenerationConfigError(
                f"decode_strategy: {self.decode_strategy!r} is not allowed: choose one of {', '.join(DECODE_STRATEGIES)}")
        self._check_float("temperature", 0.0, 100.0, low_open=True)
        self._check_int("top_k", 0, 2**31 - 1)
        self._check_float("top_p", 0.0, 1.0, low_open=True)
        self._check_float("repetition_penalty", 0.0, 100.0, low_open=True)
        self._check_int("pad_token_id", 0, 2**31 - 1)
        for token in self.stop_token_ids:
            if token < 0:
                raise GenerationConfigError(f"stop_token_ids: {token} is out of range: allowed 0 to {2**31 - 1}")
        if self.seed is not None:
            self._check_int("seed", 0, 2**63 - 1)

    def _check_int(self, name: str, low: int, high: int) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
            raise GenerationConfigError(f"{name}: {value!r} is out of range: allowed integers {low} to {high}")

    def _check_float(self, name: str, low: float, high: float, low_open: bool = False) -> None:
        value = getattr(self, name)
        ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and np.isfinite(value)
        ok = ok and (low < value if low_open else low <= value) and value <= high
        if not ok:
            bracket = "(" if low_open else "["
            raise GenerationConfigError(f"{name}: {value!r} is out of range: allowed {bracket}{low}, {high}]")

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> "GenerationConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise GenerationConfigError(f"unknown generation parameters {unknown}: known are {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self) | {"stop_token_ids": list(self.stop_token_ids)}

    def updated(self, **changes) -> "GenerationConfig":
        """A validated copy with `changes` applied (unknown names raise GenerationConfigError)."""
        return self.from_dict(self.to_dict() | changes)


class FeedsBuilder(Protocol):
    """Builds one model family's step inputs; keeps whatever per-sequence state that needs (masks, positions)."""

    batch_size: int
    prompt_length: int  # positions the prefill writes (what a cache for this sequence holds before decoding)

    def prefill(self) -> Feeds:
        """Inputs of the first step: the whole prompt, its logical mask [batch, 1, length, length]."""

    def decode(self, next_tokens: np.ndarray) -> Feeds:
        """Inputs of the next step: the tokens just chosen ([batch, 1] int64), the logical mask
        [batch, 1, 1, length + 1] over what is cached and the new position."""

    def context_ids(self) -> np.ndarray:
        """[batch, n] ids the reference `generate` counts as already in the sequence (repetition penalty)."""


@dataclass
class GenerationResult:
    token_ids: np.ndarray  # [batch, generated], stop tokens included, pad after a row stopped
    finished: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # [batch]: hit a stop token

    def row(self, index: int = 0) -> list:
        return self.token_ids[index].tolist()


# ---- logits processing -------------------------------------------------------------------------------
def apply_repetition_penalty(logits: np.ndarray, context: np.ndarray, penalty: float) -> np.ndarray:
    """CTRL's penalty, as paddlenlp's RepetitionPenaltyLogitsProcessor: ids seen in `context` are made less
    likely (positive logits divided, negative multiplied)."""
    if penalty == 1.0 or context.size == 0:
        return logits
    out = logits.copy()
    for row, ids in enumerate(context):
        seen = np.unique(ids)
        score = logits[row, seen]
        out[row, seen] = np.where(score < 0, score * penalty, score / penalty)
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k_filter(probs: np.ndarray, top_k: int) -> np.ndarray:
    """Zero every probability below the k-th largest of its row (ties with it survive); 0 keeps all."""
    if top_k <= 0 or top_k >= probs.shape[-1]:
        return probs
    kth = -np.partition(-probs, top_k - 1, axis=-1)[:, top_k - 1 : top_k]
    return np.where(probs >= kth, probs, 0.0)


def top_p_filter(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Nucleus filtering: keep the most likely tokens up to and including the one whose cumulative
    probability first exceeds `top_p`; the most likely token always stays."""
    if top_p >= 1.0:
        return probs
    order = np.argsort(-probs, axis=-1, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    remove = np.cumsum(sorted_probs, axis=-1) > top_p
    remove[:, 1:] = remove[:, :-1].copy()  # shift right: the token that crosses top_p is kept
    remove[:, 0] = False
    removed = np.zeros_like(remove)
    np.put_along_axis(removed, order, remove, axis=-1)
    return np.where(removed, 0.0, probs)


def select_tokens(logits: np.ndarray, config: GenerationConfig, rng: np.random.Generator) -> np.ndarray:
    """[batch, vocab] processed logits → [batch] chosen ids."""
    if config.decode_strategy == GREEDY:
        return logits.argmax(axis=-1)
    probs = softmax(logits / config.temperature if config.temperature != 1.0 else logits)
    probs = top_p_filter(top_k_filter(probs, config.top_k), config.top_p)
    probs = probs / probs.sum(axis=-1, keepdims=True)
    # Inverse-CDF draw: one uniform per row; searchsorted over the running sum.
    draws = rng.random(probs.shape[0])
    chosen = np.array([np.searchsorted(np.cumsum(p), u, side="right") for p, u in zip(probs, draws)])
    return np.minimum(chosen, probs.shape[-1] - 1)


# ---- the loop ----------------------------------------------------------------------------------------
class TokenPicker:
    """Token choice for rows decoded with one config and one RNG: each `pick` processes a step's logits, chooses
    a token per row (pad for the rows that already stopped) and records it."""

    def __init__(self, config: GenerationConfig, context_ids: np.ndarray):
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.stops = np.array(config.stop_token_ids, dtype=np.int64)
        self.context = context_ids.astype(np.int64)  # what the repetition penalty sees, growing per token
        self.unfinished = np.ones(len(self.context), dtype=bool)
        self.generated: list = []

    def pick(self, logits: np.ndarray) -> np.ndarray:
        """[rows, vocab] logits → [rows] int64 tokens, recorded."""
        config = self.config
        scores = apply_repetition_penalty(logits.astype(np.float32), self.context, config.repetition_penalty)
        tokens = select_tokens(scores, config, self.rng).astype(np.int64)
        tokens = np.where(self.unfinished, tokens, config.pad_token_id)
        self.generated.append(tokens)
        self.context = np.concatenate([self.context, tokens[:, None]], axis=1)
        self.unfinished &= ~np.isin(tokens, self.stops)
        return tokens

    @property
    def count(self) -> int:
        return len(self.generated)

    @property
    def done(self) -> bool:
        """Every row stopped, or `max_new_tokens` were made."""
        return not self.unfinished.any() or self.count >= self.config.max_new_tokens

    def result(self) -> GenerationResult:
        return GenerationResult(np.stack(self.generated, axis=1), finished=~self.unfinished)


def generate(step: StepFn, feeds: FeedsBuilder, config: GenerationConfig,
             keep_going: Optional[KeepGoing] = None) -> GenerationResult:
    """Prefill, then one token per step until every row emitted a stop token or `max_new_tokens` were made.

    `keep_going()` is asked before each step (the prefill included); False raises CancelledError.
    """
    picker = TokenPicker(config, feeds.context_ids())
    check_cancelled(keep_going, 0, config)
    tokens = picker.pick(step(feeds.prefill()))
    while not picker.done:
        check_cancelled(keep_going, picker.count, config)
        tokens = picker.pick(step(feeds.decode(tokens[:, None])))
    logger.debug("generated %d tokens for %d rows", picker.count, feeds.batch_size)
    return picker.result()


def check_cancelled(keep_going: Optional[KeepGoing], done: int, config: GenerationConfig) -> None:
    """CancelledError when `keep_going()` says the caller went away (`done` tokens made so far)."""
    if keep_going is not None and not keep_going():
        message = f"cancelled after {done} of at most {config.max_new_tokens} new tokens"
        logger.warning("generation %s", message)  # the client is gone: the server log is the only witness
        raise CancelledError(message)


def stop_ids_from_nested(eos_token_id: Sequence) -> Tuple[int, ...]:
    """paddlenlp's `eos_token_id` (an int, a list, or a list of lists) as the flat set of ids that stop a row:
    its `get_unfinished_flag` checks every id of a nested list on its own, not as a sequence."""
    if isinstance(eos_token_id, (int, np.integer)):
        return (int(eos_token_id),)
    flat = []
    for item in eos_token_id:
        flat.extend(stop_ids_from_nested(item))
    return tuple(dict.fromkeys(flat))
