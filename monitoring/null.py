"""What a signal looks like when nothing has drifted, at the cadence a window is judged at (pure).

Rows are not independent: every flight in one airport-hour shares one weather reading and a day is
one weather regime, so how far a window's PSI may stray from the reference under "no drift"
depends on how many *days* the window spans, not on how many rows it has. This module estimates
that spread from the training period itself and judges a window against it.

Estimation (at training time, `estimate_nulls`, `estimate_value_nulls`): the reference days are
sorted and, for each cadence c in `CADENCES`, every run of c consecutive reference days is held
back in turn and its statistic computed against the rest of the reference (the profile built
without it: the same frozen bins, shares recounted without the block's rows). Statistics: the
bias-corrected PSI excess of every profiled column (raw fields, derived features, the model's
output), the missing-rate rise, the rise of the most common value's share (stuck values), the
share outside the rest's [min, max], the label-rate shift |late rate of the block - rest|, and the
calibration gap |late rate of the block - mean probability| from *out-of-fold* probabilities (each
reference day scored by a model that did not see it: `training.reference.out_of_fold_probabilities`).
With ~51 reference days, 1-day and 7-day nulls are estimated; a 28-day block would leave too
few independent blocks (MIN_BLOCKS), so a 28-day window is judged against the 7-day null (the
nearest available; looser than a true 28-day null, so fewer false alarms and less power).

Summary (what is stored with the model, `NullSummary`): a near-normal transform of the value,
its centre and scale, the number of independent blocks behind them, and empirical quantiles for
the reader. PSI-like statistics (sums of chi-square-like terms) are taken to the cube root
(Wilson-Hilferty) and summarised by mean and sd; an absolute rate difference is taken as
|N(0, scale)| with scale = the root mean square of the block values. Sliding blocks overlap, so
n blocks = min(values, 1.5 x days // c) (overlapping batch means are worth ~1.5x the
non-overlapping count). Why this and not a quantile or a plain z-score:
- ~35 columns are judged per window, so the per-column false-alarm rate must be ~0.1 %, far
  beyond what 51 days' empirical quantiles can resolve: a parametric tail is needed.
- With n blocks, a new no-drift value falls in a Student-t *prediction* interval:
  (x - mean) / (sd * sqrt(1 + 1/n)) ~ t(n - 1). popmon's "pull" (value - mean) / sd over the
  reference time slices ignores that the mean and sd are themselves estimated from few slices,
  and includes the judged slice in its own reference; NannyML's chunk thresholds (mean +- 3 sd of
  reference chunks) compare each chunk with a reference that contains it, which makes the no-drift
  spread too narrow, and count overlapping or row-sampled chunks as independent. Here the
  held-back block is never part of what it is compared with, and few blocks widen the interval
  instead of pretending to a precision they do not have.
- The score is reported as an equivalent normal z (`z = Phi^-1(1 - p)`, p the t tail
  probability), so one policy threshold (warning at z >= 3.0, p ~ 0.13 %) means the same at every
  cadence, for every column, whatever the number of blocks.
- A floor (`MIN_EFFECT`) keeps a statistic whose null is ~0 (the PSI of a destination mix on a
  normal day) from flagging noise-level values as infinitely unlikely.

Judging (`nearest_cadence`, `NullSummary.score`): a window's span is the number of local days its
event times cover; it is judged against the null of the cadence nearest to that span on the log
scale (a 3-day window against the 1-day null would be too loose, against the 7-day too tight:
nearest in ratio, ties to the shorter, more tolerant cadence).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

CADENCES: tuple[int, ...] = (1, 7, 28)
MIN_BLOCKS = 3  # fewer independent blocks than this: no null for that cadence
OVERLAP_GAIN = 1.5  # overlapping blocks are worth 1.5x the non-overlapping count (overlapping batch means)
Z_CAP = 8.0
QUANTILES = (0.5, 0.9, 0.95, 0.99)
# 2: the calibration-gap null comes from out-of-fold probabilities. Version 1 books are read, but
# their calibration-gap null is dropped: it came from in-sample probabilities and is too tight.
NULL_VERSION = 2
# Per signal: how its no-drift values are made near-normal, and the smallest value worth a flag
# (a statistic whose null is ~0, e.g. the PSI of a category mix, would otherwise flag noise).
TRANSFORM = {"psi": "cbrt", "label_rate_shift": "halfnormal", "calibration_gap": "halfnormal"}
MIN_EFFECT = {
    "psi": 0.05,
    "label_rate_shift": 0.02,
    "calibration_gap": 0.02,
    "missing_rate_increase": 0.05,
    "stuck_value_share": 0.05,
    # a rare-event statistic (0 on almost every held-back day): its null says little about the
    # tail, so only a large share outside everything the reference saw counts (July: 0.999)
    "beyond_reference_rate": 0.25,
}


def _t(transform: str, v: float) -> float:
    return float(np.cbrt(v)) if transform == "cbrt" else float(v)


@dataclass(frozen=True)
class NullSummary:
    """The no-drift distribution of one (signal, feature) at one cadence.

    `transform` "cbrt": the cube root of the value is taken as normal (Wilson-Hilferty: a PSI is a
    scaled chi-square-like sum, whose cube root is close to normal), `center`/`scale` its mean and
    standard deviation. "halfnormal": the value is |N(0, scale)| (an absolute difference of rates),
    `center` 0 and `scale` the root mean square of the block values.
    """

    signal: str
    feature: str | None
    cadence_days: int
    n_blocks: int  # effective independent blocks: the t's degrees of freedom + 1
    n_values: int  # values computed (sliding blocks)
    transform: str
    center: float
    scale: float
    quantiles: tuple[float, ...]  # empirical, at QUANTILES, on the value scale (for the reader)
    min_effect: float = 0.0

    def _df(self) -> int:
        return max(self.n_blocks - 1, 1)

    def score(self, value: float) -> float:
        """Equivalent normal z of `value` under this null (0 = typical; 3 = p ~ 0.13 %), capped at +-Z_CAP;
        a value below the signal's smallest meaningful effect scores at most 0."""
        if value is None or math.isnan(value):
            return math.nan
        v = max(float(value), 0.0)
        scale = max(self.scale, 1e-9)
        if self.transform == "halfnormal":
            t = v / (scale * math.sqrt(1.0 + 1.0 / self.n_blocks))
            p = 2.0 * float(stats.t.sf(t, df=self._df()))
        else:
            t = (_t(self.transform, v) - self.center) / (scale * math.sqrt(1.0 + 1.0 / self.n_blocks))
            p = float(stats.t.sf(t, df=self._df()))
        z = Z_CAP if p <= 0.0 else float(np.clip(stats.norm.isf(min(p, 1.0)), -Z_CAP, Z_CAP))
        return min(z, 0.0) if v < self.min_effect else z

    def value_at(self, z: float) -> float:
        """The value whose score is `z` (where a policy threshold in z sits on the value scale)."""
        p = float(stats.norm.sf(z))
        infl = max(self.scale, 1e-9) * math.sqrt(1.0 + 1.0 / self.n_blocks)
        if self.transform == "halfnormal":
            return max(self.min_effect, float(stats.t.isf(p / 2.0, df=self._df())) * infl)
        x = self.center + float(stats.t.isf(p, df=self._df())) * infl
        return max(self.min_effect, x**3 if self.transform == "cbrt" else x)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def effective_blocks(n_days: int, cadence: int) -> int:
    """Independent blocks worth of `cadence`-day sliding blocks over `n_days` days."""
    n = n_days // cadence
    return int(min(n_days - cadence + 1, math.floor(OVERLAP_GAIN * n_days / cadence))) if n >= 1 else 0


def summarise(signal: str, feature: str | None, cadence: int, values: Sequence[float], n_blocks: int) -> NullSummary | None:
    """The summary of `values` (one per held-back block) or None when there are too few blocks."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype="float64")
    if n_blocks < MIN_BLOCKS or v.size < MIN_BLOCKS:
        return None
    v = np.maximum(v, 0.0)
    transform = TRANSFORM.get(signal, "cbrt")
    if transform == "halfnormal":
        center, scale = 0.0, float(np.sqrt(np.mean(v**2)))
    else:
        x = np.cbrt(v)
        center, scale = float(x.mean()), float(x.std(ddof=1))
    return NullSummary(
        signal,
        feature,
        cadence,
        int(n_blocks),
        int(v.size),
        transform,
        center,
        scale,
        tuple(float(q) for q in np.quantile(v, QUANTILES)),
        MIN_EFFECT.get(signal, 0.0),
    )


def _psi_excess(rest: np.ndarray, cur: np.ndarray, eps: float = 1e-4) -> float:
    """PSI excess of counts `cur` against counts `rest` (same bins): see monitoring.drift.psi_excess."""
    n = float(cur.sum())
    p = np.maximum(rest / max(rest.sum(), 1.0), eps)
    q = np.maximum(cur / max(n, 1.0), eps)
    p, q = p / p.sum(), q / q.sum()
    k = int(np.count_nonzero(rest > 0))
    return max(0.0, float(np.sum((q - p) * np.log(q / p))) - (k - 1) / max(n, 1.0))


def blocks(n_days: int, cadence: int) -> list[tuple[int, int]]:
    """Every run of `cadence` consecutive days [start, stop) of `n_days` sorted days (sliding by one)."""
    return [(s, s + cadence) for s in range(0, n_days - cadence + 1)]


def estimate_nulls(
    day_counts: Mapping[str, np.ndarray],
    day_labels: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    cadences: Iterable[int] = CADENCES,
    missing_bin: Mapping[str, int] | None = None,
    day_predicted: np.ndarray | None = None,
) -> list[NullSummary]:
    """Null summaries from per-day statistics of the reference (days in time order).

    `day_counts[column]` is a (days, bins) array of that column's counts in its frozen profile
    bins, one row per reference day (the missing-value bin at index `missing_bin[column]`, default
    0); `day_predicted` the sum of the model's probabilities over the labelled flights of each
    day, each day scored by a model that never saw it (in-sample probabilities fit the reference's
    own labels and make this null too tight); `day_labels` is (late flights per day, labelled
    flights per day).
    Each block of `cadence` consecutive days is held back and compared with the other days.
    """
    out: list[NullSummary] = []
    n_days = next(iter(day_counts.values())).shape[0] if day_counts else (len(day_labels[0]) if day_labels else 0)
    for c in cadences:
        if c >= n_days:
            continue
        bl = blocks(n_days, c)
        n_blocks = effective_blocks(n_days, c)
        for col, counts in day_counts.items():
            total = counts.sum(axis=0)
            vals = []
            for s, e in bl:
                cur = counts[s:e].sum(axis=0)
                vals.append(_psi_excess(total - cur, cur))
            summ = summarise("psi", col, c, vals, n_blocks)
            if summ is not None:
                out.append(summ)
            # the missing bin: first for numeric columns, second to last for categorical ones
            # (which the caller marks by passing them in `missing_bin`)
            mb = missing_bin.get(col, 0) if missing_bin is not None else 0
            miss = []
            for s, e in bl:
                cur = counts[s:e].sum(axis=0)
                rest = total - cur
                if cur.sum() > 0 and rest.sum() > 0:
                    miss.append(max(0.0, cur[mb] / cur.sum() - rest[mb] / rest.sum()))
            summ = summarise("missing_rate_increase", col, c, miss, n_blocks)
            if summ is not None:
                out.append(summ)
        if day_labels is not None:
            late, n = (np.asarray(a, dtype="float64") for a in day_labels)
            vals = []
            for s, e in bl:
                bl_late, bl_n = late[s:e].sum(), n[s:e].sum()
                rest_late, rest_n = late.sum() - bl_late, n.sum() - bl_n
                if bl_n > 0 and rest_n > 0:
                    vals.append(abs(bl_late / bl_n - rest_late / rest_n))
            summ = summarise("label_rate_shift", None, c, vals, n_blocks)
            if summ is not None:
                out.append(summ)
            if day_predicted is not None:
                # |late rate - mean probability| of the block: the weather that moves the late
                # rate also moves the model's probabilities, so this null is tighter than the
                # label-rate one and a shift the inputs do not explain stands out. The block's own
                # gap, not the gap against the rest: a window's gap is judged the same way
                pred = np.asarray(day_predicted, dtype="float64")
                gaps = [abs((late[s:e].sum() - pred[s:e].sum()) / n[s:e].sum()) for s, e in bl if n[s:e].sum() > 0]
                summ = summarise("calibration_gap", None, c, gaps, n_blocks)
                if summ is not None:
                    out.append(summ)
    return out


def held_back_scores(
    day_counts: Mapping[str, np.ndarray],
    day_labels: tuple[np.ndarray, np.ndarray] | None,
    cadence: int,
    day_predicted: np.ndarray | None = None,
    day_values: Mapping[str, tuple[np.ndarray, bool]] | None = None,
) -> list[dict[str, float]]:
    """The nulls checked on the reference itself, nested: each run of `cadence` consecutive days
    is held back in turn, the nulls are estimated from the *other* days alone (`estimate_nulls`;
    the days either side of the hole are treated as consecutive) and the held-back block's PSI
    excess of every column (against the other days, in the same bins), its label-rate shift and,
    with `day_predicted` (out-of-fold probability sums per day), its calibration gap and, with
    `day_values` (`estimate_value_nulls`' input), the stuck-value share and beyond-reference rate
    of every numeric column are scored under them. One mapping ("psi:<column>" /
    "label_rate_shift" / "calibration_gap" / "stuck_value_share:<column>" /
    "beyond_reference_rate:<column>" -> z) per block.

    The monitor judges a window the same way (its days are never part of its null), so the share
    of blocks with some z at or above a threshold estimates, from reference days only, the
    per-window false-alarm rate of those signals at that threshold: a check of the parametric tail
    that the null's own fit cannot give (it is fitted to the very values it would be judged on)."""
    n_days = next(iter(day_counts.values())).shape[0] if day_counts else (len(day_labels[0]) if day_labels else 0)
    out: list[dict[str, float]] = []
    for s, e in blocks(n_days, cadence):
        hold = np.zeros(n_days, dtype=bool)
        hold[s:e] = True
        rest_counts = {k: v[~hold] for k, v in day_counts.items()}
        rest_labels = (day_labels[0][~hold], day_labels[1][~hold]) if day_labels is not None else None
        rest_pred = day_predicted[~hold] if day_predicted is not None else None
        book = NullBook(tuple(estimate_nulls(rest_counts, rest_labels, cadences=(cadence,), day_predicted=rest_pred)))
        row: dict[str, float] = {}
        for col, counts in day_counts.items():
            null = book.find("psi", col, cadence)
            if null is not None:
                row[f"psi:{col}"] = null.score(_psi_excess(counts[~hold].sum(axis=0), counts[hold].sum(axis=0)))
        if day_labels is not None:
            late, n = (np.asarray(a, dtype="float64") for a in day_labels)
            null = book.find("label_rate_shift", None, cadence)
            if null is not None and n[hold].sum() > 0 and n[~hold].sum() > 0:
                shift = abs(late[hold].sum() / n[hold].sum() - late[~hold].sum() / n[~hold].sum())
                row["label_rate_shift"] = null.score(shift)
            gap_null = book.find("calibration_gap", None, cadence)
            if day_predicted is not None and gap_null is not None and n[hold].sum() > 0:
                row["calibration_gap"] = gap_null.score(abs((late[hold].sum() - day_predicted[hold].sum()) / n[hold].sum()))
        for col, (counts, numeric) in (day_values or {}).items():
            cur, rest = counts[hold].sum(axis=0), counts[~hold].sum(axis=0)
            if not numeric or cur.sum() <= 0 or rest.sum() <= 0:
                continue
            value_nulls = {x.signal: x for x in estimate_value_nulls({col: (counts[~hold], True)}, cadences=(cadence,))}
            for signal, value in value_statistics(cur, rest).items():
                if signal in value_nulls:
                    row[f"{signal}:{col}"] = value_nulls[signal].score(value)
        out.append(row)
    return out


def alarm_share(scores: Sequence[Mapping[str, float]], z: float) -> float:
    """Share of held-back blocks (`held_back_scores`) with at least one statistic scoring >= `z`."""
    if not scores:
        return math.nan
    return float(np.mean([any(v >= z for v in row.values() if not math.isnan(v)) for row in scores]))


def value_statistics(cur: np.ndarray, rest: np.ndarray) -> dict[str, float]:
    """The value statistics of a block against the rest (counts per distinct value, ascending; both
    non-empty): the rise of its most common value's share, and its share outside the rest's
    [min, max]."""
    present = np.flatnonzero(rest > 0)
    return {
        "stuck_value_share": float(cur.max() / cur.sum() - rest.max() / rest.sum()),
        "beyond_reference_rate": float((cur[: present[0]].sum() + cur[present[-1] + 1 :].sum()) / cur.sum()),
    }


def estimate_value_nulls(
    day_values: Mapping[str, tuple[np.ndarray, bool]], *, cadences: Iterable[int] = CADENCES
) -> list[NullSummary]:
    """Nulls of the quality statistics that need the values themselves, from per-day counts of
    every distinct non-missing value: `day_values[column]` = ((days, distinct values) counts, with
    the distinct values in ascending order, whether the column is numeric). For each block held
    back, for numerics: `stuck_value_share` = the block's most common value share - the rest's,
    and `beyond_reference_rate` = the block's share outside the rest's [min, max]."""
    out: list[NullSummary] = []
    for col, (counts, numeric) in day_values.items():
        n_days = counts.shape[0]
        total = counts.sum(axis=0)
        for c in cadences:
            if c >= n_days:
                continue
            n_blocks = effective_blocks(n_days, c)
            stuck, beyond = [], []
            for s, e in blocks(n_days, c):
                cur = counts[s:e].sum(axis=0)
                rest = total - cur
                if cur.sum() <= 0 or rest.sum() <= 0:
                    continue
                if numeric:  # a category mix moving is the world, not a stuck sensor
                    v = value_statistics(cur, rest)
                    stuck.append(v["stuck_value_share"])
                    beyond.append(v["beyond_reference_rate"])
            for signal, vals in (("stuck_value_share", stuck), ("beyond_reference_rate", beyond)):
                summ = summarise(signal, col, c, vals, n_blocks) if vals else None
                if summ is not None:
                    out.append(summ)
    return out


def nearest_cadence(span_days: float, available: Iterable[int]) -> int | None:
    """The available cadence nearest to `span_days` in ratio (log scale); ties go to the shorter one."""
    av = sorted(set(available))
    if not av or not span_days or span_days <= 0:
        return None
    return min(av, key=lambda c: (abs(math.log(span_days / c)), c))


@dataclass(frozen=True)
class NullBook:
    """Every stored null of one model, looked up by (signal, feature, cadence)."""

    summaries: tuple[NullSummary, ...]

    def cadences(self) -> list[int]:
        return sorted({s.cadence_days for s in self.summaries})

    def find(self, signal: str, feature: str | None, cadence: int) -> NullSummary | None:
        for s in self.summaries:
            if s.signal == signal and s.feature == feature and s.cadence_days == cadence:
                return s
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"null_version": NULL_VERSION, "summaries": [s.as_dict() for s in self.summaries]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> NullBook | None:
        version = d.get("null_version") if d else None
        if not d or version not in (1, NULL_VERSION):
            return None
        rows = d.get("summaries", ())
        if version == 1:  # in-sample calibration-gap null: too tight to judge a window by
            rows = [s for s in rows if s["signal"] != "calibration_gap"]
        return cls(tuple(NullSummary(**{**s, "quantiles": tuple(s["quantiles"])}) for s in rows))


class BlockConsistency:
    """Fields that are constant within an airport-hour (every flight of one hour at one airport
    shares one weather reading: the very dependence the nulls account for) must stay constant
    there. A window where they do not (some flights of a block with a value and some without, or
    two different values) has a broken feed: a missing-value spike sprinkled over rows, a mixed
    unit, a second source. Natural traffic scores 0, whatever the weather, at every cadence.

    Gathered chunk by chunk: per block the min, max, non-missing count and row count of each
    field; memory is bounded by the number of airport-hours, not rows."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = list(fields)
        self._parts: list[Any] = []

    def add(self, frame: Any, groups: np.ndarray) -> None:
        import pandas as pd

        cols = [f for f in self.fields if f in frame]
        if not cols or len(frame) == 0:
            return
        df = frame[cols].apply(pd.to_numeric, errors="coerce").reset_index(drop=True)
        g = df.groupby(np.asarray(groups))
        mn, mx, cnt, size = g.min(), g.max(), g.count(), g.size()
        # plain arrays (block, then one column per field): cheap to keep and to merge
        self._parts.append(
            (cols, size.index.to_numpy(), mn.to_numpy("float64"), mx.to_numpy("float64"), cnt.to_numpy(), size.to_numpy())
        )

    def state(self) -> list[Any]:
        """The per-block summaries gathered, for `merge_state` of another instance (same fields)."""
        return list(self._parts)

    def merge_state(self, parts: Sequence[Any]) -> None:
        """Fold in another instance's `state()` (blocks split between the two are combined)."""
        self._parts += parts

    def shares(self) -> dict[str, tuple[float, int]]:
        """Per field: (share of multi-row blocks whose field is not constant, multi-row blocks)."""
        import pandas as pd

        if not self._parts:
            return {}

        def frame(i: int) -> pd.DataFrame:
            if all(p[0] == self._parts[0][0] for p in self._parts):  # the usual case: one frame of all parts
                index = np.concatenate([p[1] for p in self._parts])
                return pd.DataFrame(np.concatenate([p[i] for p in self._parts]), index=index, columns=self._parts[0][0])
            return pd.concat([pd.DataFrame(p[i], index=p[1], columns=p[0]) for p in self._parts])

        mn = frame(2).groupby(level=0).min()
        mx = frame(3).groupby(level=0).max()
        cnt = frame(4).groupby(level=0).sum()
        size = pd.Series(np.concatenate([p[5] for p in self._parts]), index=np.concatenate([p[1] for p in self._parts]))
        size = size.groupby(level=0).sum()
        multi = (size >= 2).to_numpy()
        n_multi = int(multi.sum())
        out: dict[str, tuple[float, int]] = {}
        if n_multi == 0:
            return out
        for f in mn.columns:
            lo, hi = mn[f].to_numpy(dtype="float64"), mx[f].to_numpy(dtype="float64")
            spread = np.nan_to_num(hi - lo, nan=0.0) > 1e-9 * np.maximum(1.0, np.nan_to_num(np.abs(hi), nan=0.0))
            c, n = cnt[f].to_numpy(), size.to_numpy()
            bad = (spread | ((c > 0) & (c < n))) & multi
            out[str(f)] = (float(bad.sum() / n_multi), n_multi)
        return out


def block_constant_fields(frame: Any, groups: np.ndarray, fields: Sequence[str], tolerance: float = 0.001) -> list[str]:
    """The `fields` that are constant within airport-hours in `frame` (the reference), i.e. whose
    share of inconsistent multi-row blocks is at most `tolerance`."""
    acc = BlockConsistency(fields)
    acc.add(frame, groups)
    return [f for f, (share, n) in acc.shares().items() if n > 0 and share <= tolerance]
