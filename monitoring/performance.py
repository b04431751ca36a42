"""Performance of a window: measured where labels have arrived, estimated where they have not.

Pure functions over arrays. Labels arrive late (a flight's outcome is known hours later; in a
real system, days), so a window has three kinds of rows: labelled, not yet labelled, and never
labelled (cancelled flights).

The estimate (confidence-based, in the spirit of CBPE) assumes the model is still calibrated:
if P(late) = p for a row, its label is a Bernoulli(p) draw. Under that assumption the expected
ROC AUC of the window is computed exactly from the probabilities (no labels needed). Its blind
spot is stated, not hidden: concept drift that keeps the inputs and the scores but changes what
they mean (the model is confidently wrong) is invisible to it; only real labels catch that.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


@dataclass(frozen=True)
class Performance:
    rows: int
    labelled: int
    label_coverage: float
    label_rate: float
    mean_prediction: float
    roc_auc: float
    pr_auc: float
    brier: float
    f1: float
    calibration_gap: float  # mean prediction - observed late rate, on labelled rows
    expected_roc_auc: float  # estimate from all rows' probabilities, assuming calibration
    median_label_lag_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def expected_auc(p: np.ndarray) -> float:
    """E[ROC AUC] if labels were Bernoulli(p): sum over pairs of p_i (1-p_j) [s_i > s_j] / E-normaliser.

    Computed in O(n log n) by sorting; ties count one half. This is the ratio of expectations
    (a standard, slightly biased but consistent approximation of the expectation of the ratio).
    """
    p = np.asarray(p, dtype="float64")
    p = p[np.isfinite(p)]
    if p.size < 2:
        return math.nan
    order = np.argsort(p, kind="mergesort")
    s = p[order]
    neg = 1.0 - s
    # For each row i (as a positive), the expected negatives with a strictly lower score, plus
    # half of those tied with it.
    uniq, start = np.unique(s, return_index=True)
    neg_cum = np.concatenate([[0.0], np.cumsum(neg)])
    group_end = np.append(start[1:], s.size)
    below = neg_cum[start]
    tied_neg = neg_cum[group_end] - neg_cum[start]
    idx = np.searchsorted(uniq, s)
    tied_self = neg  # a row is never its own negative
    num = np.sum(s * (below[idx] + 0.5 * (tied_neg[idx] - tied_self)))
    den = s.sum() * neg.sum() - np.sum(s * neg)
    return float(num / den) if den > 0 else math.nan


def window_performance(
    probability: np.ndarray,
    label: np.ndarray,
    threshold: float,
    *,
    label_lag_s: np.ndarray | None = None,
) -> Performance:
    """Metrics of a window: `probability` (n,), `label` (n,) with NaN where no label has arrived."""
    p = np.asarray(probability, dtype="float64")
    y = np.asarray(label, dtype="float64")
    have = ~np.isnan(y)
    yl, pl = y[have].astype(int), p[have]
    both = yl.size > 0 and len(np.unique(yl)) == 2
    pred = pl >= threshold
    tp = int((pred & (yl == 1)).sum())
    fp = int((pred & (yl == 0)).sum())
    fn = int((~pred & (yl == 1)).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    lag = np.asarray(label_lag_s, dtype="float64") if label_lag_s is not None else np.array([])
    lag = lag[np.isfinite(lag)]
    return Performance(
        rows=int(p.size),
        labelled=int(have.sum()),
        label_coverage=float(have.mean()) if p.size else math.nan,
        label_rate=float(yl.mean()) if yl.size else math.nan,
        mean_prediction=float(p.mean()) if p.size else math.nan,
        roc_auc=float(roc_auc_score(yl, pl)) if both else math.nan,
        pr_auc=float(average_precision_score(yl, pl)) if both else math.nan,
        brier=float(brier_score_loss(yl, pl)) if yl.size else math.nan,
        f1=float(f1),
        calibration_gap=float(pl.mean() - yl.mean()) if yl.size else math.nan,
        expected_roc_auc=expected_auc(p),
        median_label_lag_s=float(np.median(lag)) if lag.size else math.nan,
    )
