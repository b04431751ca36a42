"""Quality's counting folded into one hashing pass per column, sharing the drift pass's samples:
the same numbers as the straightforward per-row computation it replaced (the oracle below)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import DriftAccumulator, _category_counts
from monitoring.profile import build_profile, category_counts
from monitoring.quality import QualityAccumulator, reference_for
from monitoring.sampling import Reservoir

pytestmark = pytest.mark.unit


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    temp = rng.normal(40, 10, n).round(0)
    temp[rng.random(n) < 0.1] = np.nan
    gust = np.where(rng.random(n) < 0.8, np.nan, rng.gamma(4, 5, n).round(1))
    carrier = rng.choice(np.array(["UA", "DL", "AA", "B6", "ZZ"], dtype=object), n, p=[0.4, 0.3, 0.2, 0.09, 0.01])
    carrier[rng.random(n) < 0.05] = None
    carrier[rng.random(n) < 0.02] = np.nan
    return pd.DataFrame({"temp": temp, "wind_gust": gust, "carrier": carrier})


def _oracle(refs, chunks):
    """The per-row computation the single pass replaced (isna, dropna, value_counts, isin)."""
    n = sum(len(c) for c in chunks)
    out = {}
    for ref in refs:
        col = pd.concat([c[ref.name] for c in chunks], ignore_index=True)
        present = col.dropna()
        vc = present.value_counts()
        row = {"missing": int(col.isna().sum()), "top": float(vc.max()) / len(present)}
        if ref.kind == "numeric":
            v = pd.to_numeric(present).to_numpy("float64")
            row["beyond"] = int(np.sum((v < ref.min) | (v > ref.max)))
        else:
            row["unseen"] = int((~present.astype(str).isin(ref.categories)).sum())
        out[ref.name] = row
    return n, out


def test_quality_single_pass_counts_equal_the_per_row_oracle():
    reference = _frame(20_000, 0)
    refs = [
        reference_for(reference.assign(carrier=reference["carrier"].replace("ZZ", None)), "carrier", "categorical"),
        reference_for(reference.assign(temp=reference["temp"].clip(lower=30.0)), "temp", "numeric", "degF"),
        reference_for(reference, "wind_gust", "numeric", "mph"),
    ]
    chunks = [_frame(7_000, s) for s in (1, 2, 3)]
    acc = QualityAccumulator(refs, sample_size=5_000, seed=3)
    for c in chunks:
        acc.add(c)
    n, want = _oracle(refs, chunks)
    assert acc.n == n
    for ref in refs:
        name = ref.name
        assert acc.missing[name] == want[name]["missing"], name
        present = n - acc.missing[name]
        assert float(acc.counts[name].max()) / present == want[name]["top"], name
        if ref.kind == "numeric":
            assert acc.beyond[name] == want[name]["beyond"] > 0
        else:
            assert acc.unseen[name] == want[name]["unseen"] > 0


def test_drift_category_counts_equal_the_profile_function():
    prof = build_profile(_frame(5_000, 0).assign(carrier=lambda f: f["carrier"].replace("ZZ", "UA")), [], ["carrier"])
    cprof = prof.categorical[0]
    for seed in range(4):
        col = _frame(3_000, seed)["carrier"]
        want = category_counts(col.astype("object").where(col.notna(), None), cprof)
        np.testing.assert_array_equal(_category_counts(col, cprof), want)
    np.testing.assert_array_equal(_category_counts(pd.Series([], dtype=object), cprof), np.zeros(len(cprof.categories) + 2))


def test_quality_reading_the_drift_samples_gives_the_same_signals():
    reference = _frame(20_000, 0)
    prof = build_profile(reference, ["temp", "wind_gust"], ["carrier"])
    refs = [reference_for(reference, "temp", "numeric", "degF"), reference_for(reference, "wind_gust", "numeric", "mph")]
    drift = DriftAccumulator(prof, sample_size=4_000, seed=5)
    shared = QualityAccumulator(refs, sample_size=4_000, seed=5, shared_samples=drift.samples)
    own = QualityAccumulator(refs, sample_size=4_000, seed=5)
    assert isinstance(shared.samples["temp"], Reservoir) and shared.samples["temp"] is drift.samples["temp"]
    for s in (1, 2, 3):
        chunk = _frame(6_000, s)
        drift.add(chunk)
        shared.add(chunk)
        own.add(chunk)
    np.testing.assert_array_equal(shared.samples["temp"].values, own.samples["temp"].values)
    assert shared.signals() == own.signals()


def test_one_hashing_pass_shared_by_drift_and_quality_gives_the_same_counts_and_signals():
    """Drift bins the distinct values of its hashing pass and quality counts from the same pass:
    the counts and signals of the per-row binning and of quality hashing on its own, exactly."""
    from monitoring.profile import numeric_counts

    reference = _frame(20_000, 0)
    prof = build_profile(reference.assign(carrier=reference["carrier"].replace("ZZ", "UA")), ["temp", "wind_gust"], ["carrier"])
    refs = [
        reference_for(reference, "temp", "numeric", "degF"),
        reference_for(reference, "wind_gust", "numeric", "mph"),
        reference_for(reference.assign(carrier=reference["carrier"].replace("ZZ", None)), "carrier", "categorical"),
    ]
    drift = DriftAccumulator(prof, sample_size=4_000, seed=5)
    shared = QualityAccumulator(refs, sample_size=4_000, seed=5, shared_samples=drift.samples)
    own = QualityAccumulator(
        refs, sample_size=4_000, seed=5, shared_samples=DriftAccumulator(prof, sample_size=4_000, seed=5).samples
    )
    other = DriftAccumulator(prof, sample_size=4_000, seed=5)  # feeds `own`'s reservoirs the same values
    per_row = {p.name: np.zeros(p.n_bins) for p in prof.numeric}
    for s in (1, 2, 3):
        chunk = _frame(6_000, s).assign(temp=lambda f: f["temp"].where(f.index % 97 > 0, -0.0))
        drift.add(chunk)
        assert set(drift.factorized) == {"temp", "wind_gust", "carrier"}
        shared.add(chunk, drift.factorized)
        own.samples = other.samples
        other.add(chunk)
        own.add(chunk)
        for p in prof.numeric:
            per_row[p.name] += numeric_counts(chunk[p.name].to_numpy("float64"), p)
    for p in prof.numeric:
        np.testing.assert_array_equal(drift.counts[p.name], per_row[p.name])
    assert sum(drift.counts["temp"]) == 18_000 and drift.counts["temp"][0] > 0  # NaN counted in bin 0
    assert shared.signals() == own.signals()
    for name in ("temp", "wind_gust", "carrier"):
        assert shared.missing[name] == own.missing[name]
        pd.testing.assert_series_equal(shared.counts[name], own.counts[name])
