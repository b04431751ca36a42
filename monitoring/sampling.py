"""A seeded reservoir sample that is built chunk by chunk, so a window never has to sit in memory.

Every value gets a random key; the reservoir keeps the `size` values with the smallest keys seen
so far. For the same seed and the same chunks the sample is the same set of values; a window no
larger than `size` is kept whole, so statistics over it are exact. (The order of `values` is not
part of the definition: every statistic taken from it sorts or counts.)

Once the reservoir is full, a new value whose key is above the largest key kept can never enter
it: only the few below it (about size / values seen so far, of a chunk) join the partition, not
the whole chunk.
"""

from __future__ import annotations

import numpy as np


class Reservoir:
    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self._rng = np.random.default_rng(seed)
        self._keys = np.empty(0)
        self._values = np.empty(0)

    def add(self, values: np.ndarray) -> None:
        if self.size <= 0:  # an empty sample stays empty
            return
        v = np.asarray(values, dtype="float64")
        v = v[~np.isnan(v)]
        if v.size == 0:
            return
        new_keys = self._rng.random(v.size)
        if self._keys.size >= self.size:
            enter = new_keys < self._keys.max()  # above it, a key can never enter
            if not enter.any():
                return
            new_keys, v = new_keys[enter], v[enter]
        elif v.size > 2 * self.size:
            # Only the `size` smallest keys overall survive, so a new key above the (1.5x expected)
            # cut can never make it when enough keys fall below it: a cheap comparison instead of
            # a partition over the whole chunk. Exact: checked by the count before it is used.
            cut = min(1.0, 1.5 * self.size / v.size)
            below = new_keys < cut
            if int(below.sum()) >= self.size:
                new_keys, v = new_keys[below], v[below]
        keys = np.concatenate([self._keys, new_keys])
        vals = np.concatenate([self._values, v])
        if keys.size > self.size:
            keep = np.argpartition(keys, self.size - 1)[: self.size]
            keys, vals = keys[keep], vals[keep]
        self._keys, self._values = keys, vals

    @property
    def values(self) -> np.ndarray:
        return self._values
