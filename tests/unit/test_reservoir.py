"""The reservoir is its definition: the `size` values with the smallest keys of one seeded stream,
whatever the chunking and however many keys a full reservoir can skip."""

from __future__ import annotations

import numpy as np
import pytest

from monitoring.sampling import Reservoir

pytestmark = pytest.mark.unit


def _definition(chunks: list[np.ndarray], size: int, seed: int) -> np.ndarray:
    """Every non-NaN value keyed by the same stream (one draw per value, chunk by chunk), the
    `size` smallest keys kept."""
    rng = np.random.default_rng(seed)
    keys, vals = [], []
    for c in chunks:
        v = c[~np.isnan(c)]
        if v.size:
            keys.append(rng.random(v.size))
            vals.append(v)
    k, v = np.concatenate(keys), np.concatenate(vals)
    return np.sort(v[np.argsort(k, kind="stable")[:size]])


@pytest.mark.parametrize(
    ("sizes", "size"),
    [
        ([50_000] * 8, 5_000),  # full after the first chunk: later chunks mostly skipped
        ([300, 7, 4_000, 1, 0, 2_500, 9_000], 1_000),  # ragged, some smaller than the reservoir
        ([120, 80], 1_000),  # never full: the window is kept whole
        ([1_000, 1_000, 1_000], 1_000),  # exactly full after the first
    ],
)
def test_the_reservoir_keeps_the_smallest_keys_of_the_stream(sizes: list[int], size: int) -> None:
    data = np.random.default_rng(1)
    chunks = []
    for n in sizes:
        c = data.normal(size=n)
        c[data.random(n) < 0.1] = np.nan  # NaN takes no key
        chunks.append(c)
    r = Reservoir(size, seed=7)
    for c in chunks:
        r.add(c)
    np.testing.assert_array_equal(np.sort(r.values), _definition(chunks, size, seed=7))
    assert r.values.size == min(size, sum(int((~np.isnan(c)).sum()) for c in chunks))


def test_a_reservoir_of_size_zero_stays_empty() -> None:
    r = Reservoir(0)
    r.add(np.arange(10.0))
    r.add(np.arange(3.0))
    assert r.values.size == 0
