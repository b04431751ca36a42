"""The reservoir is its definition: the `size` values with the smallest keys, whatever the chunking,
however many keys a full reservoir can skip, and however the rows were split into parts and merged.
Keys come from the rows' own contents (`row_keys`), so a sample does not depend on the read order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.sampling import Reservoir, row_hashes, row_keys

pytestmark = pytest.mark.unit


def _definition(chunks: list[np.ndarray], keys: list[np.ndarray], size: int) -> np.ndarray:
    """Every non-NaN value with its key, the `size` smallest keys kept."""
    k, v = np.concatenate(keys), np.concatenate(chunks)
    k, v = k[~np.isnan(v)], v[~np.isnan(v)]
    return np.sort(v[np.argsort(k, kind="stable")[:size]])


def _data(sizes: list[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    data = np.random.default_rng(1)
    chunks, keys = [], []
    for n in sizes:
        c = data.normal(size=n)
        c[data.random(n) < 0.1] = np.nan  # NaN takes no place
        chunks.append(c)
        keys.append(row_keys(data.integers(0, 2**63, n, dtype=np.uint64), seed=7))
    return chunks, keys


CASES = [
    ([50_000] * 8, 5_000),  # full after the first chunk: later chunks mostly skipped
    ([300, 7, 4_000, 1, 0, 2_500, 9_000], 1_000),  # ragged, some smaller than the reservoir
    ([120, 80], 1_000),  # never full: the window is kept whole
    ([1_000, 1_000, 1_000], 1_000),  # exactly full after the first
]


@pytest.mark.parametrize(("sizes", "size"), CASES)
def test_the_reservoir_keeps_the_values_with_the_smallest_keys(sizes: list[int], size: int) -> None:
    chunks, keys = _data(sizes)
    r = Reservoir(size)
    for c, k in zip(chunks, keys, strict=True):
        r.add(c, k)
    np.testing.assert_array_equal(np.sort(r.values), _definition(chunks, keys, size))
    assert r.values.size == min(size, sum(int((~np.isnan(c)).sum()) for c in chunks))


@pytest.mark.parametrize(("sizes", "size"), CASES)
def test_parts_merged_in_any_order_give_the_same_sample(sizes: list[int], size: int) -> None:
    """A window folded in parts (one reservoir per part, e.g. per archived day) and merged keeps
    exactly the sample of the window folded in one go, in either order."""
    chunks, keys = _data(sizes)
    parts = []
    for c, k in zip(chunks, keys, strict=True):
        p = Reservoir(size)
        p.add(c, k)
        parts.append(p.state())
    for order in (parts, parts[::-1]):
        merged = Reservoir(size)
        for state in order:
            merged.merge_state(state)
        np.testing.assert_array_equal(np.sort(merged.values), _definition(chunks, keys, size))


def test_a_reservoir_of_size_zero_stays_empty() -> None:
    r = Reservoir(0)
    r.add(np.arange(10.0), np.linspace(0, 0.9, 10))
    assert r.values.size == 0


def test_values_and_keys_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        Reservoir(5).add(np.arange(3.0), np.zeros(2))


def test_row_keys_are_the_rows_own_uniform_and_seeded() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=20_000), "b": rng.choice(["x", "y", None], 20_000)})
    keys = row_keys(row_hashes(frame), seed=3)
    # the same rows in another order, with the columns reordered: the same key for each row
    shuffled = frame.iloc[::-1][["b", "a"]]
    np.testing.assert_array_equal(row_keys(row_hashes(shuffled), seed=3), keys[::-1])
    # identical rows share a key; another seed draws other keys
    twice = pd.concat([frame.iloc[:5], frame.iloc[:5]], ignore_index=True)
    k2 = row_keys(row_hashes(twice), seed=3)
    np.testing.assert_array_equal(k2[:5], k2[5:])
    assert not np.array_equal(row_keys(row_hashes(frame), seed=4), keys)
    # uniform on [0, 1): deciles within 5 standard errors of 10 %
    assert keys.min() >= 0.0 and keys.max() < 1.0
    share = np.histogram(keys, bins=10, range=(0, 1))[0] / keys.size
    assert np.all(np.abs(share - 0.1) < 5 * np.sqrt(0.1 * 0.9 / keys.size))
