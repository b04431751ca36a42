"""The non-ML baseline: the historical late rate by carrier and scheduled departure hour.

It is what a team would ship without machine learning (a lookup table), the bar the model must
clear to be promoted, and the documented fallback the service serves when the model cannot be
loaded or fails. Rates are smoothed towards the carrier's rate and then the global rate
(empirical-Bayes style shrinkage, `smoothing` pseudo-rows), so rare cells do not swing to 0 or 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted


class HistoricalRateBaseline(ClassifierMixin, BaseEstimator):
    """P(late) = smoothed late rate of (carrier, local scheduled departure hour) in training."""

    def __init__(self, carrier: str = "carrier", dep_hhmm: str = "sched_dep_time", smoothing: float = 20.0) -> None:
        self.carrier = carrier
        self.dep_hhmm = dep_hhmm
        self.smoothing = smoothing

    def fit(self, X: pd.DataFrame, y: Any) -> HistoricalRateBaseline:
        y = np.asarray(y, dtype="float64")
        frame = pd.DataFrame({"c": X[self.carrier].astype(str).to_numpy(), "h": (X[self.dep_hhmm].to_numpy() // 100), "y": y})
        self.classes_ = np.array([0, 1])
        self.global_rate_ = float(y.mean())
        m = self.smoothing
        by_c = frame.groupby("c")["y"].agg(["sum", "count"])
        carrier_rate = (by_c["sum"] + m * self.global_rate_) / (by_c["count"] + m)
        self.carrier_rate_ = {str(k): float(v) for k, v in carrier_rate.items()}
        by_ch = frame.groupby(["c", "h"])["y"].agg(["sum", "count"])
        prior = np.array([self.carrier_rate_[c] for c, _ in by_ch.index])
        rate = (by_ch["sum"].to_numpy() + m * prior) / (by_ch["count"].to_numpy() + m)
        self.cell_rate_ = {f"{c}|{int(h)}": float(r) for (c, h), r in zip(by_ch.index, rate, strict=True)}
        return self

    def _rate(self, carrier: Any, hhmm: Any) -> float:
        key = f"{carrier}|{int(hhmm) // 100}"
        if key in self.cell_rate_:
            return self.cell_rate_[key]
        return self.carrier_rate_.get(str(carrier), self.global_rate_)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "cell_rate_")
        p = np.fromiter(
            (self._rate(c, h) for c, h in zip(X[self.carrier].to_numpy(), X[self.dep_hhmm].to_numpy(), strict=True)),
            dtype="float64",
            count=len(X),
        )
        return np.column_stack([1.0 - p, p])

    def predict_record(self, record: Mapping[str, Any]) -> float:
        """P(late) for one record: the fallback's hot path."""
        return self._rate(record[self.carrier], record[self.dep_hhmm])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    # -- as a plain JSON table: the fallback survives when the registry or the model does not --
    def to_dict(self) -> dict[str, Any]:
        check_is_fitted(self, "cell_rate_")
        return {
            "kind": "HistoricalRateBaseline",
            "params": self.get_params(),
            "global_rate": self.global_rate_,
            "carrier_rate": self.carrier_rate_,
            "cell_rate": self.cell_rate_,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistoricalRateBaseline:
        if data.get("kind") != "HistoricalRateBaseline":
            raise ValueError(f"not a HistoricalRateBaseline table: kind={data.get('kind')!r}")
        out = cls(**data["params"])
        out.classes_ = np.array([0, 1])
        out.global_rate_ = float(data["global_rate"])
        out.carrier_rate_ = {str(k): float(v) for k, v in data["carrier_rate"].items()}
        out.cell_rate_ = {str(k): float(v) for k, v in data["cell_rate"].items()}
        return out


# Shipped with the package: the baseline fitted on the default training window (`make snapshots`
# regenerates it; tests/unit/test_snapshots.py checks it matches). The fallback of last resort.
PACKAGED_FALLBACK = Path(__file__).with_name("fallback_baseline.json")
