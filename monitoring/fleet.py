"""A fleet judged at once (pure): mergeable counts per (model, day), p-values, a false-alarm budget.

Counting. Every row of the prediction log is counted, by the model that served it and its local
day, into that model's frozen profile bins (numeric bins, categories + missing + unseen), a
probability histogram by label and the label counts. `Counts` are plain arrays that merge by
addition, so the same counts come out of one pass over a log, of chunks, or of Spark partitions
merged on the driver (core.spark_engine): the verdicts do not depend on the engine.

Testing. Each model's window is a set of whole days. For each profiled column the window's counts
are compared with the reference shares by the chi-square distance T = X^2 / n. Rows of one day are
not independent (every flight of an hour at an airport shares one weather reading), so T is not
chi-square / n: beyond its within-sample part ((k - 1) / n) it carries a between-day part that
depends on how many days the window spans. Training measures that part per model, column and day
count by resampling runs of consecutive reference days (`estimate_null`, a moving-block bootstrap:
weather comes in spells); the p-value is a gamma tail with the total mean and variance
(`BetweenDayNull`). The label rate is tested the same way; the ROC AUC by a normal test with the
Hanley-McNeil standard errors of the window and of validation, widened by the label's between-day
factor. `NullModel` is the interface: null distributions estimated elsewhere can replace these.

The budget. One fleet run makes m = models x tests hypotheses. Benjamini-Hochberg at `fdr` over
all of them decides which tests are discoveries; under no drift anywhere this bounds the chance
of any discovery in the whole fleet by `fdr`. A model's light is then the policy's thresholds
(monitoring/policy.yaml) applied only to the signals of its discovered tests (and to deterministic
signals such as the model's age): a discovery below every threshold stays green (real, but too
small to matter), a large value that is not a discovery stays green (noise of a small window).
Red needs both a discovery and a critical threshold, on a signal that says the data is broken or
the model is hurt: drift-only signals (`yellow_only` in the fleet file) stop at yellow.

The three questions, as for the single model (monitoring/policy.py). Data broken: missing and
unseen shares (a segment's profile has a bin for every category the contract declares, seen on
that route or not: a known carrier starting on a route is a mix change, drift; only a code the
contract does not know is unseen), and `unit_change`: the single model's check (monitoring.quality.unit_change: the
reference's grid of reported values, else its quantiles, carried through every conversion the
contract's unit admits) run on the window's exact values of each numeric field with a unit. Those
values are counted per (model, day) beside the bins (`Counts.values`, merged by union like the
counts): a weather field has one reading per origin-hour, so a route's day holds at most 24
distinct readings and the check sees the whole window, not a sample. The check is deterministic
(no p-value, outside the budget), as the single model's is. World moved: values beyond the
reference's range (`beyond_reference_rate`: spring and summer beyond a Jan-Mar reference) and
drift; a critical world_moved reason counts as red only with a critical model_hurt reason in the
same window (`policy.cap_world_moved`). Model hurt: the ROC AUC test.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy import stats

from data_contracts.contract import Contract, Conversion
from monitoring.drift import psi, psi_excess
from monitoring.null import MIN_BLOCKS, effective_blocks
from monitoring.policy import PolicySettings, Reason, Signal, cap_world_moved, evaluate_signals
from monitoring.profile import CategoryProfile, NumericProfile, ReferenceProfile, numeric_bin_index
from monitoring.quality import FieldReference, field_conversions, references_from_mapping, unit_change

PROB_BINS = 200
# Exact values are counted (for the unit check) up to this many distinct values per column of one
# model's window; beyond it the column's values are dropped and its unit check says so. A weather
# field has one reading per origin-hour (at most 24 a day per route); distance, one per route.
MAX_DISTINCT = 5000
LABEL_TEST = "__label_rate__"
AUC_TEST = "__roc_auc__"
_RANK = {"red": 3, "yellow": 2, "green": 1, "not_enough_data": 0}


# -- counting ------------------------------------------------------------------------------------
@dataclass
class Counts:
    """Mergeable window statistics of one model (over one day, or merged over many)."""

    rows: int
    cols: dict[str, np.ndarray]
    hist_pos: np.ndarray  # probability histogram (PROB_BINS) of rows labelled 1
    hist_neg: np.ndarray  # ... labelled 0
    hist_all: np.ndarray  # ... of every row (the label-free estimate)
    days: frozenset[str] = frozenset()
    # Exact non-missing values of the columns the unit check reads: column -> (sorted distinct
    # values, their counts), or None once a column has more than MAX_DISTINCT distinct values.
    values: dict[str, ValueCounts | None] = field(default_factory=dict)

    @property
    def labelled(self) -> int:
        return int(self.hist_pos.sum() + self.hist_neg.sum())

    @property
    def positives(self) -> int:
        return int(self.hist_pos.sum())

    def merge(self, other: Counts) -> Counts:
        cols = {k: v.copy() for k, v in self.cols.items()}
        for k, v in other.cols.items():
            cols[k] = cols[k] + v if k in cols else v.copy()
        values = dict(self.values)
        for k, vc in other.values.items():
            values[k] = merge_values(values[k], vc) if k in values else vc
        return Counts(
            self.rows + other.rows,
            cols,
            self.hist_pos + other.hist_pos,
            self.hist_neg + other.hist_neg,
            self.hist_all + other.hist_all,
            self.days | other.days,
            values,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "cols": {k: v.tolist() for k, v in self.cols.items()},
            "hist_pos": self.hist_pos.tolist(),
            "hist_neg": self.hist_neg.tolist(),
            "hist_all": self.hist_all.tolist(),
            "days": sorted(self.days),
            "values": {k: None if v is None else [v[0].tolist(), v[1].tolist()] for k, v in self.values.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Counts:
        arr = lambda v: np.asarray(v, dtype="float64")  # noqa: E731
        return cls(
            int(d["rows"]),
            {k: arr(v) for k, v in d["cols"].items()},
            arr(d["hist_pos"]),
            arr(d["hist_neg"]),
            arr(d["hist_all"]),
            frozenset(d["days"]),
            {k: None if v is None else (arr(v[0]), arr(v[1])) for k, v in (d.get("values") or {}).items()},
        )


ValueCounts = tuple[np.ndarray, np.ndarray]  # (sorted distinct values, counts)


def merge_values(a: ValueCounts | None, b: ValueCounts | None) -> ValueCounts | None:
    """The union of two exact value counts (None: too many distinct values, and stays so)."""
    if a is None or b is None:
        return None
    vals, inv = np.unique(np.concatenate([a[0], b[0]]), return_inverse=True)
    if vals.size > MAX_DISTINCT:
        return None
    return vals, np.bincount(inv, weights=np.concatenate([a[1], b[1]]), minlength=vals.size)


def value_counts_by_day(values: np.ndarray, codes: np.ndarray, n_days: int) -> list[ValueCounts | None]:
    """Exact counts of the non-missing `values` per day code (0..n_days-1)."""
    ok = ~np.isnan(values)
    v, c = values[ok], codes[ok]
    out: list[ValueCounts | None] = []
    for i in range(n_days):
        vals, counts = np.unique(v[c == i], return_counts=True)
        out.append(None if vals.size > MAX_DISTINCT else (vals, counts.astype("float64")))
    return out


def merge_all(parts: Iterable[Counts]) -> Counts | None:
    out: Counts | None = None
    for p in parts:
        out = p if out is None else out.merge(p)
    return out


def category_index(values: pd.Series | np.ndarray, prof: CategoryProfile) -> np.ndarray:
    """Per-row bin of a categorical column: category position, then missing, then unseen."""
    s = pd.Series(values, copy=False)
    s = s.astype("object").where(s.notna(), None)
    codes = pd.Categorical(s, categories=list(prof.categories)).codes.astype("int64")
    missing = s.isna().to_numpy()
    codes[codes < 0] = len(prof.categories) + 1
    codes[missing] = len(prof.categories)
    return codes


def _bins(codes: np.ndarray, idx: np.ndarray, n_days: int, n_bins: int) -> np.ndarray:
    return np.bincount(codes * n_bins + idx, minlength=n_days * n_bins).reshape(n_days, n_bins).astype("float64")


def count_days(
    profile: ReferenceProfile, frame: pd.DataFrame, days: np.ndarray | pd.Series, exact: Sequence[str] = ()
) -> dict[str, Counts]:
    """Counts of `frame`'s rows per day label in `days` (same length): every profiled column present
    in `frame` (a `probability` column is both a profiled column and the histograms' input; a
    `label` column, 0/1 or missing, fills the by-label histograms), and the exact values of the
    numeric columns in `exact` (the unit check's input)."""
    codes, uniques = pd.factorize(pd.Series(np.asarray(days, dtype=object)), sort=True)
    codes = codes.astype("int64")
    n_days = len(uniques)
    cols: dict[str, np.ndarray] = {}
    exact_values: dict[str, list[ValueCounts | None]] = {}
    for name in exact:
        if name in frame:
            v = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            exact_values[name] = value_counts_by_day(v, codes, n_days)
    for p in profile.numeric:
        if p.name in frame:
            v = pd.to_numeric(frame[p.name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            cols[p.name] = _bins(
                codes, numeric_bin_index(v, np.asarray(p.edges, dtype="float64"), p.ref_min, p.ref_max), n_days, p.n_bins
            )
    for c in profile.categorical:
        if c.name in frame:
            cols[c.name] = _bins(codes, category_index(frame[c.name], c), n_days, len(c.categories) + 2)
    prob = (
        pd.to_numeric(frame["probability"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        if "probability" in frame
        else np.full(len(frame), np.nan)
    )
    pbin = np.clip(np.nan_to_num(prob, nan=0.0) * PROB_BINS, 0, PROB_BINS - 1).astype("int64")
    has_p = ~np.isnan(prob)
    label = (
        pd.to_numeric(frame["label"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        if "label" in frame
        else np.full(len(frame), np.nan)
    )
    h_all = _bins(codes[has_p], pbin[has_p], n_days, PROB_BINS)
    pos, neg = has_p & (label == 1), has_p & (label == 0)
    h_pos = _bins(codes[pos], pbin[pos], n_days, PROB_BINS)
    h_neg = _bins(codes[neg], pbin[neg], n_days, PROB_BINS)
    rows = np.bincount(codes, minlength=n_days)
    return {
        str(day): Counts(
            int(rows[i]),
            {k: v[i] for k, v in cols.items()},
            h_pos[i],
            h_neg[i],
            h_all[i],
            frozenset({str(day)}),
            {k: v[i] for k, v in exact_values.items()},
        )
        for i, day in enumerate(uniques)
    }


# -- statistics ---------------------------------------------------------------------------------
def ref_shares(profile: ReferenceProfile, name: str) -> np.ndarray:
    return np.asarray(profile.column(name).shares, dtype="float64")


def pearson(ref: np.ndarray, counts: np.ndarray, ref_rows: int) -> tuple[float, int]:
    """(Pearson X^2 of `counts` against shares `ref`, degrees of freedom). Bins the reference never
    saw get a half-row pseudo share (1 / (2 * ref_rows)), so one value beyond the reference is
    evidence but not infinite evidence."""
    n = counts.sum()
    if n <= 0:
        return 0.0, max(int(np.count_nonzero(ref > 0)) - 1, 1)
    floor = 0.5 / max(ref_rows, 1)
    r = np.maximum(ref, floor)
    r = r / r.sum()
    expected = n * r
    return float(np.sum((counts - expected) ** 2 / expected)), max(int(np.count_nonzero(ref > 0)) - 1, 1)


def pearson_rows(ref: np.ndarray, counts: np.ndarray, ref_rows: int) -> tuple[np.ndarray, int]:
    """`pearson` of every row of `counts` (shape (r, bins)); rows with no counts give NaN."""
    n = counts.sum(axis=1, keepdims=True)
    r = np.maximum(ref, 0.5 / max(ref_rows, 1))
    expected = n * (r / r.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        x2 = np.where(n[:, 0] > 0, np.sum((counts - expected) ** 2 / expected, axis=1), np.nan)
    return x2, max(int(np.count_nonzero(ref > 0)) - 1, 1)


def auc_from_hist(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC from score histograms (ties within a bin count one half)."""
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos <= 0 or n_neg <= 0:
        return math.nan
    below = np.cumsum(neg) - neg
    return float((np.sum(pos * below) + 0.5 * np.sum(pos * neg)) / (n_pos * n_neg))


def expected_auc_from_hist(hist: np.ndarray) -> float:
    """Label-free AUC estimate (assumes calibration): each row is positive with its probability."""
    centres = (np.arange(PROB_BINS) + 0.5) / PROB_BINS
    return auc_from_hist(hist * centres, hist * (1 - centres))


def hanley_mcneil_se(auc: float, n_pos: float, n_neg: float) -> float:
    if n_pos <= 0 or n_neg <= 0 or math.isnan(auc):
        return math.nan
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return math.sqrt(max(var, 1e-12))


def benjamini_hochberg(p_values: Sequence[float], q: float) -> np.ndarray:
    """Which of `p_values` are discoveries at false-discovery rate `q` (step-up)."""
    p = np.asarray(p_values, dtype="float64")
    m = p.size
    if m == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p, kind="mergesort")
    below = p[order] <= q * np.arange(1, m + 1) / m
    out = np.zeros(m, dtype=bool)
    if below.any():
        out[order[: int(np.nonzero(below)[0].max()) + 1]] = True
    return out


# -- nulls --------------------------------------------------------------------------------------
def estimate_null(
    profile: ReferenceProfile,
    day_counts: Mapping[str, Counts],
    label_rate: float,
    *,
    days: Sequence[int] = (1, 3, 7, 14, 28),
    resamples: int = 200,
    seed: int = 0,
    block: int = 3,
    day_values: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """The between-day null of every column: windows of d reference days drawn with replacement,
    each column's chi-square distance T = X^2 / n against the profile, minus its within-sample part
    (k - 1) / n; the mean and variance of that excess per d. Same for the label rate's squared
    deviation and the missing share. `n_days` (reference days with rows) says how much independent
    evidence is behind these moments (the judge's prediction interval widens with fewer days).

    The shares the reference defines itself (values beyond its [min, max], categories it never saw)
    are 0 on the reference by construction, so their null is estimated out of sample: every run of
    d consecutive reference days is held back and its share measured against the range (from
    `day_values`: column -> day -> that day's values) or the categories of the other days.
    JSON-safe: {"days": [...], "n_days": N, "columns": {name: {"mean": [...], "var": [...]}}, "label": {...}}."""
    keys = sorted(day_counts)
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {
        "kind": "between_day_gamma",
        "days": list(days),
        "columns": {},
        "label": {},
        "resamples": resamples,
        "n_days": len(keys),
    }
    if not keys:
        return out
    names = [c for c in profile.columns if all(c in day_counts[k].cols for k in keys)]
    mats = {c: np.stack([day_counts[k].cols[c] for k in keys]) for c in names}
    lab_n = np.array([day_counts[k].labelled for k in keys], dtype="float64")
    lab_pos = np.array([day_counts[k].positives for k in keys], dtype="float64")
    # Weather comes in spells of a few days: draw runs of `block` consecutive reference days (a
    # moving-block bootstrap), so a window of neighbouring days is compared with neighbouring days.
    draws = {d: block_draws(len(keys), d, block, resamples, rng) for d in days}
    for c in names:
        ref = ref_shares(profile, c)
        mean, var = [], []
        for d in days:
            sums = mats[c][draws[d]].sum(axis=1)
            x2, df = pearson_rows(ref, sums, profile.rows)
            n = sums.sum(axis=1)
            ok = np.isfinite(x2) & (n > 0)
            b = x2[ok] / n[ok] - df / n[ok] if ok.any() else np.zeros(1)
            mean.append(max(0.0, float(b.mean())))
            var.append(float(b.var()))
        out["columns"][c] = {"mean": mean, "var": var}
        for part, bins in share_parts(profile, c).items():
            vals = (day_values or {}).get(c)
            if part == "unseen" or (part == "beyond" and vals is not None):
                held = held_out_shares(mats[c], [vals.get(k) for k in keys] if vals is not None else None, days)
                if held is not None:
                    out["columns"][f"{c}:{part}"] = held
                    continue
            pm, pv = [], []
            for d in days:
                sums = mats[c][draws[d]].sum(axis=1)
                n = np.maximum(sums.sum(axis=1), 1)
                dev = sums[:, bins].sum(axis=1) / n - ref[bins].sum()
                pm.append(float(dev.mean()))
                pv.append(float(np.maximum(dev.var() - (ref[bins].sum() * (1 - ref[bins].sum()) / n).mean(), 0.0)))
            out["columns"][f"{c}:{part}"] = {"mean": pm, "var": pv}
    r0 = min(max(label_rate, 1e-6), 1 - 1e-6)
    lm, lv = [], []
    for d in days:
        n = lab_n[draws[d]].sum(axis=1)
        k = lab_pos[draws[d]].sum(axis=1)
        ok = n > 0
        b = (k[ok] / n[ok] - r0) ** 2 - r0 * (1 - r0) / n[ok] if ok.any() else np.zeros(1)
        lm.append(max(0.0, float(b.mean())))
        lv.append(float(b.var()))
    out["label"] = {"mean": lm, "var": lv}
    return out


def share_parts(profile: ReferenceProfile, name: str) -> dict[str, list[int]]:
    """The bins of a column whose share is a data-quality signal: missing, beyond the reference
    range (numeric), unseen (categorical)."""
    col = profile.column(name)
    if isinstance(col, NumericProfile):
        return {"missing": [0], "beyond": [1, col.n_bins - 1]}
    k = len(col.categories)
    return {"missing": [k], "unseen": [k + 1]}


def held_out_shares(
    mat: np.ndarray, values: Sequence[np.ndarray | None] | None, days: Sequence[int]
) -> dict[str, list[float]] | None:
    """Mean and variance, per span d, of a rare-event share measured out of sample: each run of d
    consecutive days (rows of `mat`, a (days, bins) count matrix in time order) held back against the
    other days. Categorical (`values` None): the held-back rows in the unseen bin (the last) or in
    categories the other days never had (the bins before the missing one). Numeric
    (`values`: each day's values): the held-back values outside the other days' [min, max]. None when
    a numeric column has no values. A span as long as the reference reuses the longest one below it."""
    n_days = mat.shape[0]
    if n_days < 2:
        return None
    numeric = values is not None
    if numeric:
        assert values is not None
        vals = [np.asarray(v, dtype="float64") for v in values]
        vals = [v[~np.isnan(v)] if v is not None else np.zeros(0) for v in vals]
        lo = np.array([v.min() if v.size else np.inf for v in vals])
        hi = np.array([v.max() if v.size else -np.inf for v in vals])
    mean: list[float] = []
    var: list[float] = []
    for d in days:
        c = min(d, n_days - 1)
        shares = []
        for s in range(0, n_days - c + 1):
            rest = np.r_[0:s, s + c : n_days]
            if numeric:
                r_lo, r_hi = lo[rest].min(), hi[rest].max()
                block = np.concatenate(vals[s : s + c])
                if block.size:
                    shares.append(float(np.mean((block < r_lo) | (block > r_hi))))
            else:
                cur, other = mat[s : s + c].sum(axis=0), mat[rest].sum(axis=0)
                k = mat.shape[1] - 2  # categories, then missing, then unseen
                new = cur[:k][other[:k] == 0].sum() + cur[-1]
                if cur.sum() > 0:
                    shares.append(float(new / cur.sum()))
        if not shares:
            return None
        a = np.asarray(shares)
        mean.append(float(a.mean()))
        var.append(float(a.var()))
    return {"mean": mean, "var": var}


def block_draws(n_days: int, d: int, block: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, d) indices into n_days time-ordered days: runs of up to `block` consecutive days."""
    b = max(1, min(block, d, n_days))
    starts = rng.integers(0, n_days - b + 1, size=(resamples, -(-d // b)))
    idx = (starts[:, :, None] + np.arange(b)[None, None, :]).reshape(resamples, -1)
    return idx[:, :d]


class NullModel(Protocol):
    """Turns a test statistic of a model's window into a p-value (the fleet budget needs p-values).
    The null distributions estimated per signal and cadence elsewhere can implement this."""

    def column_p(self, column: str, x2: float, df: int, days: int, n: int) -> float: ...

    def label_p(self, rate: float, ref_rate: float, n: int, days: int) -> float: ...

    def share_p(self, key: str, share: float, ref_share: float, n: int, days: int, ref_rows: int) -> float: ...

    def label_factor(self, days: int, n: int, ref_rate: float) -> float: ...


def null_blocks(n_days: int, days: int) -> int:
    """Independent evidence behind a null estimated from `n_days` reference days for windows of
    `days` days: monitoring.null's count of sliding blocks (overlapping blocks are worth 1.5x the
    non-overlapping ones), never below MIN_BLOCKS."""
    return max(effective_blocks(n_days, max(days, 1)), MIN_BLOCKS)


def t_tail(z: float, blocks: int) -> float:
    """P(a new no-drift value scores >= z) when the null's centre and spread were estimated from
    `blocks` independent blocks: the Student-t prediction interval, (x - mean) / (sd sqrt(1 + 1/b))
    ~ t(b - 1). Few reference days make the tail heavier instead of pretending to a precision they
    do not have (the gamma/normal tails with plugged-in moments gave p ~ 1e-10 on ordinary storms)."""
    return float(stats.t.sf(z / math.sqrt(1.0 + 1.0 / blocks), df=max(blocks - 1, 1)))


def cbrt_gamma_z(t: float, mean: float, var: float) -> float:
    """The Wilson-Hilferty z of `t` under a gamma with this mean and variance: the cube root of a
    gamma (shape k) is close to normal with mean m^(1/3) (1 - 1/(9k)) and sd m^(1/3) / (3 sqrt(k))."""
    k = mean * mean / var
    c = mean ** (1.0 / 3.0)
    return (float(np.cbrt(t)) - c * (1.0 - 1.0 / (9.0 * k))) / (c / (3.0 * math.sqrt(k)))


@dataclass(frozen=True)
class BetweenDayNull:
    """A window's chi-square distance T = X^2 / n is, under no drift, the within-sample part
    ((k - 1) / n, variance 2 (k - 1) / n^2) plus a between-day part whose mean and variance were
    measured at training on resampled whole reference days (`estimate_null`); T's null is a gamma
    with that total mean and variance, judged on the cube-root scale (Wilson-Hilferty) with a
    Student-t prediction interval: the moments come from `n_days` reference days, not from an
    infinite past. Fewer days vary more: the window uses the estimate of the largest span not
    longer than its own (never a calmer one)."""

    null: Mapping[str, Any]

    def _at(self, entry: Mapping[str, Sequence[float]] | None, days: int) -> tuple[float, float]:
        grid = list(self.null.get("days") or [])
        if not entry or not grid:
            return 0.0, 0.0
        i = max([j for j, d in enumerate(grid) if d <= max(days, 1)] or [0])
        return float(entry["mean"][i]), float(entry["var"][i])

    def _blocks(self, days: int) -> int:
        return null_blocks(int(self.null.get("n_days") or 0), days)

    def column_p(self, column: str, x2: float, df: int, days: int, n: int) -> float:
        bm, bv = self._at((self.null.get("columns") or {}).get(column), days)
        mean, var = bm + df / n, bv + 2 * df / (n * n)
        return t_tail(cbrt_gamma_z(x2 / n, mean, var), self._blocks(days))

    def share_p(self, key: str, share: float, ref_share: float, n: int, days: int, ref_rows: int) -> float:
        """One-sided: is this quality share (missing, beyond range, unseen) above the reference by
        more than days like the reference's vary? Between-day plus binomial variance (the reference
        share floored at half a row, so a never-seen share is not infinitely sure), Student-t
        prediction interval."""
        bm, bv = self._at((self.null.get("columns") or {}).get(key), days)
        p0 = max(ref_share, 0.5 / max(ref_rows, 1))
        sd = math.sqrt(bv + p0 * (1 - p0) / n)
        return t_tail((share - ref_share - max(bm, 0.0)) / sd, self._blocks(days))

    def label_p(self, rate: float, ref_rate: float, n: int, days: int) -> float:
        bm, bv = self._at(self.null.get("label"), days)
        w = ref_rate * (1 - ref_rate) / n
        return t_tail(cbrt_gamma_z((rate - ref_rate) ** 2, bm + w, bv + 2 * w * w), self._blocks(days))

    def label_factor(self, days: int, n: int, ref_rate: float) -> float:
        """How much wider than binomial the label rate varies at this span and size (>= 1)."""
        bm, _ = self._at(self.null.get("label"), days)
        w = ref_rate * (1 - ref_rate) / n
        return 1.0 + bm / w if w > 0 else 1.0


# -- one model's window -------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRef:
    """What the fleet monitor knows of one model: its profile, reference rates and null."""

    name: str
    version: str
    segment: str
    profile: ReferenceProfile
    label_rate: float
    validation_auc: float
    validation_pos: int
    validation_neg: int
    trained_through: date
    null: Mapping[str, Any] = field(default_factory=dict)
    # The single model's quality reference of the fields the unit check reads, and the conversions
    # it tries for each (monitoring.quality.field_conversions): numeric fields with a unit.
    quality: Mapping[str, FieldReference] = field(default_factory=dict)
    conversions: Mapping[str, tuple[Conversion, ...]] = field(default_factory=dict)
    threshold: float = 0.5  # the decision threshold chosen on validation (the shadow comparison's)

    @property
    def unit_columns(self) -> tuple[str, ...]:
        """Columns whose exact values the monitor counts: those with a conversion to look for."""
        return tuple(sorted(k for k, c in self.conversions.items() if c and k in self.quality))

    @classmethod
    def from_artifacts(
        cls, name: str, version: str, segment: str, metadata: Mapping[str, Any], profile: Mapping[str, Any],
        contract: Contract | None = None,
    ) -> ModelRef:  # fmt: skip
        """`contract` bounds the unit conversions tried (as for the single model); without it the
        reference's observed range does."""
        vm = metadata["validation_metrics"]
        rows, rate = int(vm["rows"]), float(vm["positive_rate"])
        quality = references_from_mapping(metadata.get("monitoring", {}).get("quality_reference") or {})
        return cls(
            name=name,
            version=version,
            segment=segment,
            profile=ReferenceProfile.from_dict(profile),
            label_rate=float(metadata["monitoring"]["label_rate"]),
            validation_auc=float(vm["roc_auc"]),
            validation_pos=round(rows * rate),
            validation_neg=rows - round(rows * rate),
            trained_through=date.fromisoformat(metadata["window"]["end"]),
            null=_with_days(metadata.get("monitoring", {})),
            quality={q.name: q for q in quality if q.kind == "numeric"},
            conversions=field_conversions(quality, contract),
            threshold=float(metadata.get("threshold", 0.5)),
        )


def _with_days(monitoring: Mapping[str, Any]) -> dict[str, Any]:
    """The fleet null, with `n_days` from the reference days when it predates that field."""
    null = dict(monitoring.get("fleet_null") or {})
    if null and "n_days" not in null:
        null["n_days"] = len(monitoring.get("reference_days") or ())
    return null


@dataclass(frozen=True)
class Test:
    """One hypothesis of one model's window (`key`: a column, LABEL_TEST or AUC_TEST)."""

    key: str
    statistic: float
    df: int
    p_value: float


@dataclass(frozen=True)
class ModelWindow:
    """One model's window measured: rows, days, signals (values) and tests (p-values)."""

    ref: ModelRef
    rows: int
    days: int
    labelled: int
    signals: tuple[Signal, ...]
    tests: tuple[Test, ...]
    signal_test: Mapping[str, str | None]  # signal id -> the test that must be a discovery (None: deterministic)
    roc_auc: float
    expected_roc_auc: float


def signal_id(s: Signal) -> str:
    return f"{s.signal}:{s.feature or ''}"


def measure(
    ref: ModelRef,
    c: Counts,
    *,
    min_labels: int = 50,
    last_day: date | None = None,
    null: NullModel | None = None,
    labels: Counts | None = None,
) -> ModelWindow:
    """Signals and tests of one model's merged window counts (pure). `labels`: the counts whose
    labelled rows the label tests (label rate, realised ROC AUC) use, e.g. a longer span than the
    window's (labels are few per model and day); default the window's own."""
    nm = null or BetweenDayNull(ref.null)
    days = max(len(c.days), 1)
    lc = labels if labels is not None else c
    label_days = max(len(lc.days), 1)
    sig: list[Signal] = []
    link: dict[str, str | None] = {}
    tests: list[Test] = []

    def add(s: Signal, test: str | None) -> None:
        sig.append(s)
        link[signal_id(s)] = test

    prof = ref.profile
    for name, counts in c.cols.items():
        n = int(counts.sum())
        if n == 0:
            continue
        col = prof.column(name)
        shares = np.asarray(col.shares, dtype="float64")
        cur = counts / n
        x2, df = pearson(shares, counts, prof.rows)
        tests.append(Test(name, x2, df, nm.column_p(name, x2, df, days, n)))
        value = psi(shares, cur)
        add(Signal("psi", name, psi_excess(value, shares, n), f"raw PSI {value:.3f}, X2 {x2:.1f} on {df} df, n={n}"), name)
        for part, bins in share_parts(prof, name).items():
            key = f"{name}:{part}"
            got, was = float(cur[bins].sum()), float(shares[bins].sum())
            tests.append(Test(key, got, 1, nm.share_p(key, got, was, n, days, prof.rows)))
            if part == "missing":
                add(Signal("missing_rate_increase", name, got - was, f"{got:.1%} vs {was:.1%}"), key)
            elif part == "beyond":
                rng = f"outside [{col.ref_min:g}, {col.ref_max:g}]" if isinstance(col, NumericProfile) else ""
                add(Signal("beyond_reference_rate", name, got, rng), key)
            else:
                add(Signal("unseen_category_rate", name, got, "values the reference never saw"), key)
    for name, vc in sorted(c.values.items()):
        qref, conv = ref.quality.get(name), ref.conversions.get(name, ())
        if qref is None or not conv:
            continue
        if vc is None:  # deterministic (no test): a signal, never a p-value in the budget
            add(Signal("unit_change", name, 0.0, f"not checked: more than {MAX_DISTINCT} distinct values"), None)
            continue
        flag, why = unit_change(qref, np.repeat(vc[0], vc[1].astype("int64")), conv)
        add(Signal("unit_change", name, flag, why), None)
    auc = math.nan
    if lc.labelled >= min_labels and lc.positives > 0 and lc.labelled - lc.positives > 0:
        n_lab, k = lc.labelled, lc.positives
        rate = k / n_lab
        r0 = min(max(ref.label_rate, 1e-6), 1 - 1e-6)
        phi = nm.label_factor(label_days, n_lab, r0)
        tests.append(Test(LABEL_TEST, (rate - r0) ** 2, 1, nm.label_p(rate, r0, n_lab, label_days)))
        add(
            Signal("label_rate_shift", None, abs(rate - ref.label_rate), f"late rate {rate:.1%} vs {ref.label_rate:.1%}"),
            LABEL_TEST,
        )
        auc = auc_from_hist(lc.hist_pos, lc.hist_neg)
        se_w = hanley_mcneil_se(auc, k, n_lab - k) * math.sqrt(phi)
        se_v = hanley_mcneil_se(ref.validation_auc, ref.validation_pos, ref.validation_neg)
        se = math.sqrt(se_w**2 + (se_v if not math.isnan(se_v) else 0.0) ** 2)
        if not math.isnan(auc) and se > 0:
            z_auc = (ref.validation_auc - auc) / se
            tests.append(Test(AUC_TEST, z_auc, 1, float(stats.norm.sf(z_auc))))
            add(
                Signal(
                    "roc_auc_drop",
                    None,
                    ref.validation_auc - auc,
                    f"AUC {auc:.3f} on {n_lab} labels vs validation {ref.validation_auc:.3f}",
                ),
                AUC_TEST,
            )
    exp_auc = expected_auc_from_hist(c.hist_all)
    if not math.isnan(exp_auc):
        add(
            Signal("expected_roc_auc_drop", None, ref.validation_auc - exp_auc, "label-free estimate, assumes calibration"),
            "probability",
        )
    if last_day is not None:
        add(
            Signal(
                "model_age_days", None, float((last_day - ref.trained_through).days), f"trained through {ref.trained_through}"
            ),
            None,
        )
    return ModelWindow(ref, c.rows, days, lc.labelled, tuple(sig), tuple(tests), link, auc, exp_auc)


# -- the fleet ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelVerdict:
    name: str
    version: str
    segment: str
    status: str  # green | yellow | red | not_enough_data
    rows: int
    days: int
    labelled: int
    reasons: tuple[Reason, ...]
    discoveries: tuple[dict[str, Any], ...]  # tests that were discoveries: key, statistic, p-value
    min_p: float | None
    auc_loss: float
    impact: float
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reasons"] = [asdict(r) for r in self.reasons]
        d["discoveries"] = list(self.discoveries)
        d["notes"] = list(self.notes)
        return d


@dataclass(frozen=True)
class FleetJudgement:
    verdicts: tuple[ModelVerdict, ...]  # worst first
    tests: int
    discoveries: int
    fdr: float

    @property
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("red", "yellow", "green", "not_enough_data"), 0)
        for v in self.verdicts:
            out[v.status] += 1
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "models": len(self.verdicts),
            "tests": self.tests,
            "discoveries": self.discoveries,
            "fdr": self.fdr,
        }


def cap(r: Reason) -> Reason:
    """A critical reason of a drift-only signal as a warning: the world moved, nothing is broken."""
    if r.severity != "critical":
        return r
    # replace() keeps the reason's question (a capped label-free AUC estimate still asks model_hurt)
    return replace(r, severity="warning", message=r.message + " [capped at yellow: drift alone]")


def _loss(w: ModelWindow) -> float:
    """Estimated ROC AUC loss: realised if the window has labels, else the label-free estimate."""
    auc = w.roc_auc if not math.isnan(w.roc_auc) else w.expected_roc_auc
    return 0.0 if math.isnan(auc) else max(0.0, w.ref.validation_auc - auc)


def judge_fleet(
    windows: Sequence[ModelWindow],
    policy: PolicySettings,
    *,
    fdr: float,
    min_rows: int,
    absent: Sequence[ModelRef] = (),
    yellow_only: Sequence[str] = (),
) -> FleetJudgement:
    """Every model's verdict under one false-discovery budget; worst first, by impact within a colour.

    Impact = window rows (traffic) x estimated ROC AUC loss. Models below `min_rows`, and `absent`
    ones (no traffic at all), are not_enough_data and contribute no tests to the budget.
    """
    judged = [w for w in windows if w.rows >= min_rows]
    flat = [(i, t) for i, w in enumerate(judged) for t in w.tests]
    found = benjamini_hochberg([t.p_value for _, t in flat], fdr)
    disc: dict[int, dict[str, Test]] = {}
    for (i, t), hit in zip(flat, found, strict=True):
        if hit:
            disc.setdefault(i, {})[t.key] = t
    out: list[ModelVerdict] = []
    for i, w in enumerate(judged):
        hits = disc.get(i, {})
        eligible = [s for s in w.signals if (w.signal_test[signal_id(s)] is None or w.signal_test[signal_id(s)] in hits)]
        reasons, capped = cap_world_moved(
            [cap(r) if r.signal in yellow_only else r for r in evaluate_signals(eligible, policy.rules)]
        )
        reasons.sort(key=lambda r: r.severity != "critical")
        status = "red" if any(r.severity == "critical" for r in reasons) else "yellow" if reasons else "green"
        ps = [t.p_value for t in w.tests]
        notes: tuple[str, ...] = (capped,) if capped else ()
        if status == "green" and hits:
            notes = (*notes, f"{len(hits)} discoveries below every threshold")
        loss = _loss(w)
        out.append(
            ModelVerdict(
                w.ref.name, w.ref.version, w.ref.segment, status, w.rows, w.days, w.labelled, tuple(reasons),
                tuple({"test": t.key, "statistic": t.statistic, "p_value": t.p_value} for t in hits.values()),
                min(ps) if ps else None, loss, w.rows * loss, notes,
            )
        )  # fmt: skip
    for w in windows:
        if w.rows < min_rows:
            out.append(
                ModelVerdict(
                    w.ref.name, w.ref.version, w.ref.segment, "not_enough_data", w.rows, w.days, w.labelled,
                    (), (), None, 0.0, 0.0, (f"{w.rows} rows < min_rows {min_rows} over {w.days} day(s)",),
                )
            )  # fmt: skip
    for ref in absent:
        out.append(
            ModelVerdict(ref.name, ref.version, ref.segment, "not_enough_data", 0, 0, 0, (), (), None, 0.0, 0.0, ("no traffic",))
        )
    out.sort(key=lambda v: (-_RANK[v.status], -v.impact, v.min_p if v.min_p is not None else 1.0, v.name))
    return FleetJudgement(tuple(out), len(flat), int(found.sum()), fdr)


def choose_window(
    per_day: Mapping[str, Counts], end_day: date, lookback_days: Sequence[int], min_rows: int
) -> tuple[Counts | None, int]:
    """The shortest trailing span (days ending at `end_day`, inclusive) with >= `min_rows` rows, or
    the longest span if none reaches it. Returns (merged counts or None, span in days)."""
    from datetime import timedelta

    merged: Counts | None = None
    span = lookback_days[-1]
    for d in lookback_days:
        wanted = {(end_day - timedelta(days=i)).isoformat() for i in range(d)}
        merged = merge_all(c for day, c in per_day.items() if day in wanted)
        if merged is not None and merged.rows >= min_rows:
            return merged, d
    return merged, span
