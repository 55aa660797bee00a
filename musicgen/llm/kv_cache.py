"""The KV cache of a batch of sequences: preallocated per layer, written in place, one token's worth per step.

The step graphs read the cache and return only what the step adds (export/kv_cache.py traces them so):

    inputs   past_key_<i>, past_value_<i>   [rows, heads, capacity, head_dim], one pair per layer, read only
             attention_mask                 [rows, 1, new, capacity + new] (1 = attend): the cache's slots, then
                                            the step's own positions
    output   new_key_values                 [layers, 2 (key, value), rows, heads, new, head_dim]

`KVCache` owns the buffers and each row's length (positions written). After a step it writes the new keys and
values into each row's next free slots, so a decode step moves one token per layer, never the cache. Slots past
a row's length are stale or zero and masked out: capacity may exceed what a row uses, which is what lets rows of
different lengths share a step (in-flight batching) and lets the buffers grow in chunks rather than per token.
Rows are packed: a step runs over the first `rows` rows; a finished row is replaced by the last one (`move`).

Buffers are numpy arrays (batch outermost, so the first n rows are one contiguous view a runtime can bind without
a copy). `CachedStep` adapts a raw graph call to what `musicgen.generation.generate` drives.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from musicgen_client import interface as api
from musicgen_client.interface import cache_input_names  # noqa: F401 - the graph's names, defined once

from .feeds import KVShape

NEW_KEY_VALUES = api.NEW_KEY_VALUES.name
ATTENTION_MASK = "attention_mask"
DEFAULT_CHUNK = 256  # positions added per growth: one copy of the cache per 256 tokens, not per token

GraphRun = Callable[[Dict[str, Any]], Tuple[np.ndarray, np.ndarray]]  # feeds → (logits, new_key_values)


class CacheFullError(ValueError):
    """A step would write past the cache's bound (the request's prompt + max_new_tokens, or the model's context)."""


class KVCache:
    """Per-layer key and value buffers [rows, heads, capacity, head_dim] and the length of each row.

    `limit` bounds the capacity (the model's context, or the request's prompt + max_new_tokens); growing past it
    raises CacheFullError. `chunk` is the growth step.
    """

    def __init__(self, shape: KVShape, rows: int, *, chunk: int = DEFAULT_CHUNK, limit: Optional[int] = None,
                 dtype=np.float32):
        if rows < 1 or chunk < 1:
            raise ValueError(f"KVCache needs rows >= 1 and chunk >= 1 (got rows={rows}, chunk={chunk})")
        self.shape = shape
        self.chunk = chunk
        self.limit = limit
        self.dtype = np.dtype(dtype)
        self.lengths = np.zeros(rows, dtype=np.int64)
        self._buffers = [self._allocate(rows, 0) for _ in range(2 * shape.layers)]

    # ---- shape ------------------------------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        return len(self.lengths)

    @property
    def capacity(self) -> int:
        return self._buffers[0].shape[2]

    def _allocate(self, rows: int, capacity: int) -> np.ndarray:
        return np.zeros((rows, self.shape.heads, capacity, self.shape.head_dim), dtype=self.dtype)

    def reserve(self, new: int, rows: Optional[int] = None) -> None:
        """Make room for `new` more positions in each of the first `rows` rows (all by default): grows the
        capacity to the next multiple of `chunk` (capped at `limit`), copying what is written once."""
        rows = self.rows if rows is None else rows
        needed = int(self.lengths[:rows].max(initial=0)) + new
        if needed <= self.capacity:
            return
        if self.limit is not None and needed > self.limit:
            raise CacheFullError(f"the KV cache holds at most {self.limit} positions; this step needs {needed}")
        capacity = -(-needed // self.chunk) * self.chunk
        if self.limit is not None:
            capacity = min(capacity, self.limit)
        self._resize(capacity)

    def _resize(self, capacity: int) -> None:
        """New buffers of `capacity` positions holding what is written (one copy per buffer)."""
        written = int(self.lengths.max(initial=0))
        resized = []
        for buffer in self._buffers:
            fresh = self._allocate(self.rows, capacity)
            fresh[:, :, :written] = buffer[:, :, :written]
            resized.append(fresh)
        self._buffers = resized

    def buffers(self, rows: Optional[int] = None) -> List[np.ndarray]:
        """The graph's cache inputs for the first `rows` rows, in `cache_input_names` order (views, no copy)."""
        rows = self.rows if rows is None else rows
        return [buffer[:rows] for buffer in self._buffers]

    def feeds(self, rows: Optional[int] = None) -> Dict[str, np.ndarray]:
        return dict(zip(cache_input_names(self.shape.layers), self.buffers(rows)))

    # ---- the mask ---------------------------------------------------------------------------------------------
    def layout_mask(self, mask: Union[np.ndarray, Sequence[np.ndarray]]) -> np.ndarray:
        """Each row's logical mask [1, new, length + new] (its past, then the step's positions) laid over the
        buffers: [rows, 1, new, capacity + new], slots past the row's length masked out.

        `mask` is one such array per row, or a [rows, 1, new, length + new] array when every row has that length
        (a batch decoded in lockstep, as `generate` does).
        """
        rows = list(mask) if not isinstance(mask, np.ndarray) else self._split_lockstep(mask)
        new = rows[0].shape[-2]
        out = np.zeros((len(rows), 1, new, self.capacity + new), dtype=np.int64)
        for row, row_mask in enumerate(rows):
            length = int(self.lengths[row])
            if row_mask.shape != (1, new, length + new):
                raise ValueError(f"attention mask of row {row} is {list(row_mask.shape)}; expected "
                                 f"[1, {new}, {length + new}] for a row of {length} cached positions")
            out[row, :, :, :length] = row_mask[..., :length]
            out[row, :, :, self.capacity:] = row_mask[..., length:]
        return out

    def _split_lockstep(self, mask: np.ndarray) -> List[np.ndarray]:
        rows = mask.shape[0]
        lengths = self.lengths[:rows]
        if mask.ndim != 4 or not (lengths == lengths[0]).all():
            raise ValueError("a 4-D attention mask needs rows of one length; pass one mask per row otherwise")
        return list(mask)

    # ---- writes -----------------------------------------------------------------------------------------------
    def append(self, new_key_values: np.ndarray) -> None:
        """Write a step's new positions [layers, 2, rows, heads, new, head_dim] after each of the first `rows`
        rows' cached positions and advance their lengths (reserve first)."""
        layers, pair, rows, heads, new, head_dim = new_key_values.shape
        if (layers, pair, heads, head_dim) != (self.shape.layers, 2, self.shape.heads, self.shape.head_dim) \
                or rows > self.rows:
            raise ValueError(f"new_key_values {list(new_key_values.shape)} does not fit a cache of "
                             f"{self.shape} with {self.rows} rows")
        ends = self.lengths[:rows] + new
        if ends.max(initial=0) > self.capacity:
            raise CacheFullError(f"writing {new} positions needs {int(ends.max())} slots; reserve() first "
                                 f"(capacity {self.capacity})")
        starts = self.lengths[:rows]
        lockstep = (starts == starts[0]).all()
        for index, buffer in enumerate(self._buffers):
            layer, kind = divmod(index, 2)
            values = new_key_values[layer, kind]
            if lockstep:  # one strided write per buffer
                buffer[:rows, :, starts[0]:starts[0] + new] = values
            else:
                for row in range(rows):
                    buffer[row, :, starts[row]:starts[row] + new] = values[row]
        self.lengths[:rows] = ends

    def insert(self, row: int, source: "KVCache", source_row: int = 0) -> None:
        """Copy `source`'s row into this cache's `row` (a sequence joining a running batch), growing if needed."""
        length = int(source.lengths[source_row])
        self.lengths[row] = 0
        self.reserve(length, rows=self.rows)
        for mine, theirs in zip(self._buffers, source._buffers):
            mine[row, :, :length] = theirs[source_row, :, :length]
        self.lengths[row] = length

    def move(self, source_row: int, row: int) -> None:
        """Copy row `source_row` onto `row` and empty `source_row` (packing the batch when a row leaves)."""
        if source_row == row:
            return
        length = int(self.lengths[source_row])
        for buffer in self._buffers:
            buffer[row, :, :length] = buffer[source_row, :, :length]
        self.lengths[row] = length
        self.lengths[source_row] = 0

    def clear(self, row: int) -> None:
        self.lengths[row] = 0

    def fit(self) -> None:
        """Shrink the capacity to the longest row's positions, rounded up to `chunk` (0 when every row is empty),
        copying what is written once. After a long sequence leaves, the others' steps stop attending over (and
        the process stops holding) the slots only it used."""
        capacity = -(-int(self.lengths.max(initial=0)) // self.chunk) * self.chunk
        if capacity < self.capacity:
            self._resize(capacity)


class CachedStep:
    """A step graph over a `KVCache`, as `musicgen.generation.generate` calls it: the feeds of the logical mask
    ([rows, 1, new, length + new]) in, the logits out; the cache is laid out, fed and extended here.

    `run(feeds)` is the raw graph call (in process or over BLS) returning (logits, new_key_values).
    """

    def __init__(self, run: GraphRun, cache: KVCache):
        self.run = run
        self.cache = cache

    def __call__(self, feeds: Dict[str, Any]) -> np.ndarray:
        mask = feeds[ATTENTION_MASK]
        rows, new = mask.shape[0], mask.shape[2]
        self.cache.reserve(new, rows)
        graph_feeds = dict(feeds, **{ATTENTION_MASK: self.cache.layout_mask(mask)}, **self.cache.feeds(rows))
        logits, new_key_values = self.run(graph_feeds)
        self.cache.append(np.asarray(new_key_values))
        return logits
