"""Drift statistics against the frozen reference profile: pure, vectorised, no I/O.

Per column: PSI over the frozen bins (the number the policy acts on), two-sample KS and a
reference-scaled Wasserstein distance for numerics (against the stored reference sample), chi-square
and Jensen-Shannon for categories. Missing values are a bin of their own (never silently dropped);
KS and Wasserstein see the non-missing values only, which is why the missing rate is also a quality
signal. Window level: the share of drifted columns and a drift score weighted by the model's
feature importance.

Why PSI on frozen bins and not a p-value: with thousands of rows, KS and chi-square p-values flag
trivial shifts, and rows here are not independent (every flight in one hour at one airport shares
one weather observation), so p-values are overconfident; PSI is an effect size whose thresholds we
calibrate on real no-drift windows (docs/thresholds.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from monitoring.profile import CategoryProfile, NumericProfile, ReferenceProfile, numeric_bin_index
from monitoring.sampling import Reservoir, row_hashes, row_keys

KS_MAX_ROWS = 50_000  # KS on a seeded subsample of larger windows: D's error is ~1/sqrt(n)


def _floor(shares: np.ndarray, eps: float) -> np.ndarray:
    s = np.maximum(np.asarray(shares, dtype="float64"), eps)
    return s / s.sum()


def psi(ref_shares: np.ndarray, cur_shares: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index: sum((q - p) * ln(q / p)), >= 0, 0 iff the shares are equal.

    Empty bins are floored at `eps` and both distributions renormalised (Evidently floors without
    renormalising, which biases PSI when many bins are empty).
    """
    p, q = _floor(ref_shares, eps), _floor(cur_shares, eps)
    return float(np.sum((q - p) * np.log(q / p)))


def psi_excess(psi_value: float, ref_shares: np.ndarray, n: int) -> float:
    """PSI above its no-drift sampling bias: max(0, PSI - (k - 1) / n).

    Under no drift, n * PSI is approximately chi-square with k - 1 degrees of freedom (k = bins
    with reference mass), so a window of n rows shows PSI ~ (k - 1) / n from sampling alone: 0.21
    for `dest` (105 categories) at 500 rows, 0.05 at 2,000. Subtracting it makes one threshold
    mean the same thing at every window size.
    """
    k = int(np.count_nonzero(np.asarray(ref_shares) > 0))
    return max(0.0, psi_value - (k - 1) / max(n, 1))


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits, in [0, 1], symmetric."""
    p = np.asarray(p, dtype="float64") / np.sum(p)
    q = np.asarray(q, dtype="float64") / np.sum(q)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        # b = (a + other) / 2 >= a / 2 > 0 wherever a > 0, except when a is so small (subnormal)
        # that halving it underflows to 0; such a term contributes nothing measurable.
        nz = (a > 0) & (b > 0)
        return float(np.sum(a[nz] * np.log2(a[nz] / b[nz])))

    return min(1.0, max(0.0, 0.5 * kl(p, m) + 0.5 * kl(q, m)))


def chi2_test(ref_shares: np.ndarray, cur_counts: np.ndarray, eps: float = 1e-4) -> tuple[float, float]:
    """Chi-square goodness of fit of the window's counts to the reference shares: (statistic, p-value)."""
    counts = np.asarray(cur_counts, dtype="float64")
    expected = _floor(ref_shares, eps) * counts.sum()
    stat = float(np.sum((counts - expected) ** 2 / expected))
    return stat, float(stats.chi2.sf(stat, df=max(len(counts) - 1, 1)))


def ks_statistic(ref_sample: np.ndarray, cur: np.ndarray, *, seed: int = 0) -> tuple[float, float]:
    """Two-sample KS (D, p-value) on the non-missing values; large windows are subsampled (seeded)."""
    cur = np.asarray(cur, dtype="float64")
    cur = cur[~np.isnan(cur)]
    if cur.size == 0 or len(ref_sample) == 0:
        return math.nan, math.nan
    if cur.size > KS_MAX_ROWS:
        cur = np.random.default_rng(seed).choice(cur, size=KS_MAX_ROWS, replace=False)
    res = stats.ks_2samp(np.asarray(ref_sample), cur, method="asymp")  # exact p: 90 % of a window's time
    return float(res.statistic), float(res.pvalue)


def wasserstein_scaled(ref_sample: np.ndarray, cur: np.ndarray, ref_std: float, *, seed: int = 0) -> float:
    """Wasserstein-1 distance between reference sample and window, in reference standard deviations."""
    cur = np.asarray(cur, dtype="float64")
    cur = cur[~np.isnan(cur)]
    if cur.size == 0 or len(ref_sample) == 0:
        return math.nan
    if cur.size > KS_MAX_ROWS:
        cur = np.random.default_rng(seed).choice(cur, size=KS_MAX_ROWS, replace=False)
    return float(stats.wasserstein_distance(np.asarray(ref_sample), cur) / (ref_std if ref_std > 0 else 1.0))


@dataclass(frozen=True)
class DriftThresholds:
    """Where a column counts as drifted for the window-level share (the policy has its own rules)."""

    psi: float = 0.25
    per_feature: Mapping[str, float] = field(default_factory=dict)

    def for_feature(self, name: str) -> float:
        return float(self.per_feature.get(name, self.psi))


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # numeric | categorical
    n: int
    psi: float
    psi_excess: float  # PSI minus its sampling bias (k - 1) / n: what the policy acts on
    ks_d: float | None
    ks_pvalue: float | None
    js: float
    wasserstein: float | None
    chi2_pvalue: float | None
    threshold: float
    drifted: bool
    ref_shares: tuple[float, ...]
    cur_shares: tuple[float, ...]


@dataclass(frozen=True)
class DriftResult:
    status: str  # judged | not_enough_data
    rows: int
    features: tuple[FeatureDrift, ...]
    drifted_share: float | None
    weighted_score: float | None

    def top(self, n: int = 5) -> list[FeatureDrift]:
        return sorted(self.features, key=lambda f: -f.psi_excess)[:n]


def numeric_drift(prof: NumericProfile, counts: np.ndarray, sample: np.ndarray, threshold: float) -> FeatureDrift:
    """Drift of one numeric column from its bin `counts` (frozen bins) and a sample of its values
    (all of them up to KS_MAX_ROWS, else a seeded reservoir) for KS and Wasserstein."""
    n = int(counts.sum())
    cur = counts / max(n, 1)
    ref = np.asarray(prof.shares)
    d, p = ks_statistic(np.asarray(prof.sample), sample)
    value = psi(ref, cur)
    excess = psi_excess(value, ref, n)
    return FeatureDrift(
        prof.name,
        "numeric",
        n,
        value,
        excess,
        d,
        p,
        jensen_shannon(ref, cur),
        wasserstein_scaled(np.asarray(prof.sample), sample, prof.std),
        None,
        threshold,
        excess > threshold,
        tuple(ref.tolist()),
        tuple(cur.tolist()),
    )


def categorical_drift(prof: CategoryProfile, counts: np.ndarray, threshold: float) -> FeatureDrift:
    """Drift of one categorical column from its counts (categories, __missing__, __unseen__)."""
    n = int(counts.sum())
    cur = counts / max(n, 1)
    ref = np.asarray(prof.shares)
    value = psi(ref, cur)
    excess = psi_excess(value, ref, n)
    _, p = chi2_test(ref, counts)
    return FeatureDrift(
        prof.name,
        "categorical",
        n,
        value,
        excess,
        None,
        None,
        jensen_shannon(ref, cur),
        None,
        p,
        threshold,
        excess > threshold,
        tuple(ref.tolist()),
        tuple(cur.tolist()),
    )


def _category_counts(col: pd.Series, prof: CategoryProfile) -> np.ndarray:
    """`profile.category_counts` in one hashing pass: factorize the column once (NaN/None -> -1),
    count each distinct value, then map the few distinct values onto the profile's bins. The
    per-row work is the factorize and one bincount (no isna/where/Categorical passes over the rows).
    """
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    per_value = np.bincount(codes + 1, minlength=len(uniques) + 1)  # [missing, one per distinct value]
    k = len(prof.categories)
    index = {c: i for i, c in enumerate(prof.categories)}
    where = np.fromiter((index.get(u, k + 1) for u in uniques), dtype="int64", count=len(uniques))
    out = np.zeros(k + 2)
    out[k] = per_value[0]
    np.add.at(out, where, per_value[1:])
    return out


@dataclass(frozen=True)
class Factorized:
    """One column of one chunk hashed once: its distinct values (`uniques`) and `per_value` =
    [missing count, count of each distinct value]. Not the per-row codes or values: kept until the
    next chunk, they would hold 16 bytes per row and column (+300 MB for one 1M-row chunk)."""

    numeric: bool
    uniques: Any
    per_value: np.ndarray
    rows: int

    @classmethod
    def of(cls, values: Any, rows: int, *, numeric: bool) -> Factorized:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        return cls(numeric, uniques, np.bincount(codes + 1, minlength=len(uniques) + 1), rows)


def _category_counts_of(f: Factorized, prof: CategoryProfile) -> np.ndarray:
    """`_category_counts` from a column already factorized."""
    k = len(prof.categories)
    index = {c: i for i, c in enumerate(prof.categories)}
    where = np.fromiter((index.get(u, k + 1) for u in f.uniques), dtype="int64", count=len(f.uniques))
    out = np.zeros(k + 2)
    out[k] = f.per_value[0]
    np.add.at(out, where, f.per_value[1:])
    return out


class DriftAccumulator:
    """Bin counts and value samples gathered chunk by chunk: memory is bounded by the profile's
    bins and the sample size, not by the window."""

    def __init__(self, profile: ReferenceProfile, *, sample_size: int = KS_MAX_ROWS, seed: int = 0) -> None:
        self.profile = profile
        self.rows = 0
        self.counts = {p.name: np.zeros(p.n_bins) for p in profile.numeric}
        self.counts.update({c.name: np.zeros(len(c.categories) + 2) for c in profile.categorical})
        self.seed = seed
        self.samples = {p.name: Reservoir(sample_size) for p in profile.numeric}
        self.present: set[str] = set()
        # The last chunk's one hashing pass per column, for quality to count from (same chunk):
        # name -> Factorized. Drift's own bin counts come from it too.
        self.factorized: dict[str, Factorized] = {}

    def add(self, window: pd.DataFrame, keys: np.ndarray | None = None) -> None:
        """Fold one chunk in. `keys`: the rows' sample keys (`sampling.row_keys`), when the caller
        already hashed the rows; else they are hashed here (all of the chunk's columns)."""
        self.rows += len(window)
        self.factorized = {}
        if keys is None:
            keys = row_keys(row_hashes(window), self.seed) if self.profile.numeric else np.empty(0)
        for prof in self.profile.numeric:
            if prof.name in window:
                self.present.add(prof.name)
                col = window[prof.name]
                if col.dtype == object:
                    col = pd.to_numeric(col, errors="coerce")
                vals = col.to_numpy(dtype="float64", na_value=np.nan)
                f = self.factorized[prof.name] = Factorized.of(vals, len(window), numeric=True)
                # Bins of the distinct values, weighted by their counts: numeric_counts' result,
                # with the per-row searchsorted done once per distinct value instead.
                idx = numeric_bin_index(
                    np.asarray(f.uniques, dtype="float64"), np.asarray(prof.edges, dtype="float64"), prof.ref_min, prof.ref_max
                )
                counts = np.bincount(idx, weights=f.per_value[1:], minlength=prof.n_bins)
                counts[0] += f.per_value[0]
                self.counts[prof.name] += counts
                self.samples[prof.name].add(vals, keys)
        for cprof in self.profile.categorical:
            if cprof.name in window:
                self.present.add(cprof.name)
                f = self.factorized[cprof.name] = Factorized.of(window[cprof.name], len(window), numeric=False)
                self.counts[cprof.name] += _category_counts_of(f, cprof)

    def state(self) -> dict[str, Any]:
        """The counts and samples gathered, as plain data, for `merge_state` of another accumulator
        of the same profile (a part of the window: `WindowAccumulator.state`)."""
        return {
            "rows": self.rows,
            "counts": {k: v.copy() for k, v in self.counts.items()},
            "samples": {k: r.state() for k, r in self.samples.items()},
            "present": sorted(self.present),
        }

    def merge_state(self, part: Mapping[str, Any]) -> None:
        """Fold in the `state()` of other rows: the counts and samples of both together, exactly."""
        self.rows += part["rows"]
        for name, counts in part["counts"].items():
            self.counts[name] += counts
        for name, sample in part["samples"].items():
            self.samples[name].merge_state(sample)
        self.present.update(part["present"])
        self.factorized = {}

    def result(
        self,
        thresholds: DriftThresholds | None = None,
        *,
        importance: Mapping[str, float] | None = None,
        min_rows: int = 200,
    ) -> DriftResult:
        thr = thresholds or DriftThresholds()
        if self.rows < min_rows:
            return DriftResult("not_enough_data", self.rows, (), None, None)
        feats = [
            numeric_drift(p, self.counts[p.name], self.samples[p.name].values, thr.for_feature(p.name))
            for p in self.profile.numeric
            if p.name in self.present
        ]
        feats += [
            categorical_drift(c, self.counts[c.name], thr.for_feature(c.name))
            for c in self.profile.categorical
            if c.name in self.present
        ]
        share = float(np.mean([f.drifted for f in feats])) if feats else None
        score = None
        if importance and feats:
            w = np.array([max(float(importance.get(f.feature, 0.0)), 0.0) for f in feats])
            if w.sum() > 0:
                score = float(np.sum(w * np.array([f.psi_excess for f in feats])) / w.sum())
        return DriftResult("judged", self.rows, tuple(feats), share, score)


def compute_drift(
    profile: ReferenceProfile,
    window: pd.DataFrame,
    thresholds: DriftThresholds | None = None,
    *,
    importance: Mapping[str, float] | None = None,
    min_rows: int = 200,
) -> DriftResult:
    """Drift of every profiled column present in `window` (one chunk); fewer than `min_rows`: not judged."""
    acc = DriftAccumulator(profile)
    acc.add(window)
    return acc.result(thresholds, importance=importance, min_rows=min_rows)
