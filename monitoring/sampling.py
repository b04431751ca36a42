"""Seeded samples that are built chunk by chunk, so a window never has to sit in memory, and that
do not depend on how the window was cut into chunks or parts.

Every row gets a key derived from a hash of its own contents (`row_keys`: the very hash the
duplicate check counts, mixed with the seed) instead of from a random stream. A reservoir keeps the
`size` values with the smallest keys seen so far; since a row's key is its own, the sample of a
window is the same set of values whatever the chunking, the reader, or the order in which parts of
the window are merged (`Reservoir.merge`): a window folded one day at a time and the days merged
has exactly the sample of the window read in one go. A window no larger than `size` is kept whole,
so statistics over it are exact. (The order of `values` is not part of the definition: every
statistic taken from it sorts or counts.) Rows that repeat exactly share one key, so they enter or
leave a sample together; keys of distinct rows collide with probability ~n^2 / 2^54.

Once the reservoir is full, a new value whose key is above the largest key kept can never enter
it: only the few below it (about size / values seen so far, of a chunk) join the partition, not
the whole chunk.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row's values (columns in name order, the index left out)."""
    return pd.util.hash_pandas_object(frame[sorted(frame.columns)], index=False).to_numpy()


def row_keys(hashes: np.ndarray, seed: int = 0) -> np.ndarray:
    """Uniform keys in [0, 1) from row hashes: splitmix64's finaliser over hash + seed, top 53 bits."""
    with np.errstate(over="ignore"):
        x = np.asarray(hashes, dtype=np.uint64) + np.uint64(seed + 1) * _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class Reservoir:
    def __init__(self, size: int) -> None:
        self.size = size
        self._keys = np.empty(0)
        self._values = np.empty(0)
        # Once full: values that passed the bound wait here and are partitioned in with the kept
        # ones only when as many as `size` have gathered (one partition per `size` entries, not one
        # per chunk or merged part). Exact: the bound only falls, so a key above it never enters.
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._n_pending = 0
        self._bound = np.inf

    def add(self, values: np.ndarray, keys: np.ndarray) -> None:
        """Offer `values` with their rows' `keys` (same length); NaN values take no place."""
        if self.size <= 0:  # an empty sample stays empty
            return
        v = np.asarray(values, dtype="float64")
        new_keys = np.asarray(keys, dtype="float64")
        if v.shape != new_keys.shape:
            raise ValueError(f"values and keys differ in length: {v.shape} vs {new_keys.shape}")
        present = ~np.isnan(v)
        if not present.all():
            v, new_keys = v[present], new_keys[present]
        if v.size == 0:
            return
        if self._keys.size >= self.size:
            enter = new_keys < self._bound  # the largest key kept: above it, a key can never enter
            if not enter.any():
                return
            self._pending.append((new_keys[enter], v[enter]))
            self._n_pending += int(enter.sum())
            if self._n_pending >= self.size:
                self._compact()
            return
        if v.size > 2 * self.size:
            # Only the `size` smallest keys overall survive, so a new key above the (1.5x expected)
            # cut can never make it when enough keys fall below it: a cheap comparison instead of
            # a partition over the whole chunk. Exact: checked by the count before it is used.
            cut = min(1.0, 1.5 * self.size / v.size)
            below = new_keys < cut
            if int(below.sum()) >= self.size:
                new_keys, v = new_keys[below], v[below]
        self._pending.append((new_keys, v))
        self._compact()

    def _compact(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys, *(k for k, _ in self._pending)])
        vals = np.concatenate([self._values, *(v for _, v in self._pending)])
        self._pending, self._n_pending = [], 0
        if keys.size > self.size:
            keep = np.argpartition(keys, self.size - 1)[: self.size]
            keys, vals = keys[keep], vals[keep]
        self._keys, self._values = keys, vals
        if keys.size >= self.size:
            self._bound = float(keys.max())

    @property
    def bound(self) -> float:
        """No key at or above this can enter any more (inf until the reservoir is full)."""
        return self._bound

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, values) kept, sorted by key, for `merge_state` of a reservoir of the same size."""
        self._compact()
        order = np.argsort(self._keys, kind="stable")
        return self._keys[order], self._values[order]

    def merge_state(self, state: tuple[np.ndarray, np.ndarray]) -> None:
        """Fold in another reservoir's `state()` (or any (keys, values) sorted by key): the sample
        of both parts' values together. Only the prefix below the bound is read, so a memory-mapped
        part costs the pages of that prefix, not of all its values."""
        keys, values = state
        n = len(keys) if self._bound == np.inf else int(np.searchsorted(keys, self._bound, side="left"))
        if n:
            self.add(np.asarray(values[:n]), np.asarray(keys[:n]))

    @property
    def values(self) -> np.ndarray:
        self._compact()
        return self._values
