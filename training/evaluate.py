"""Metrics that suit a ~22 %-positive problem, and the decision threshold.

Accuracy is not reported as a headline: predicting "on time" for everything scores ~78 %. The
primary metric is ROC AUC (ranking, threshold-free), with PR AUC (sensitive to the positive class),
Brier score (calibration), and F1 / precision / recall at the chosen threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, precision_recall_curve, roc_auc_score


@dataclass(frozen=True)
class Metrics:
    rows: int
    positive_rate: float
    roc_auc: float
    pr_auc: float
    brier: float
    f1: float
    precision: float
    recall: float
    threshold: float
    mean_prediction: float

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in asdict(self).items()}


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability threshold that maximises F1 on (y, p); chosen on validation, never on test."""
    prec, rec, thr = precision_recall_curve(y, p)
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)[:-1]
    return float(thr[int(np.argmax(f1))]) if len(thr) else 0.5


def evaluate(y: np.ndarray, p: np.ndarray, threshold: float) -> Metrics:
    """Metrics of probabilities `p` (shape (n,)) against 0/1 labels `y` at `threshold`."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype="float64")
    pred = p >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    both = len(np.unique(y)) == 2
    return Metrics(
        rows=len(y),
        positive_rate=float(y.mean()) if len(y) else float("nan"),
        roc_auc=float(roc_auc_score(y, p)) if both else float("nan"),
        pr_auc=float(average_precision_score(y, p)) if both else float("nan"),
        brier=float(brier_score_loss(y, p)) if len(y) else float("nan"),
        f1=f1,
        precision=precision,
        recall=recall,
        threshold=float(threshold),
        mean_prediction=float(p.mean()) if len(p) else float("nan"),
    )


def slice_metrics(y: np.ndarray, p: np.ndarray, groups: np.ndarray, threshold: float) -> Mapping[str, Metrics]:
    """`evaluate` per value of `groups` (e.g. origin airport)."""
    return {str(g): evaluate(y[groups == g], p[groups == g], threshold) for g in sorted(set(groups.tolist()))}
