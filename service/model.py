"""The model as the service holds it: a loaded bundle plus its single-record fast path.

`LoadedModel` is immutable; a reload builds a new one and swaps one reference, so a request sees
either the old model or the new one, never half of each.

Single record: `FlightFeatures.transform_record` (the fitted transformer's own per-record path,
bit-identical to its batch path over every 2013 flight: tests/model/test_model.py) then the
booster on a 1-row array, skipping the one-row DataFrame and column dispatch that cost ~3 ms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from core.registry import ModelBundle
from data_contracts.contract import Contract


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    alias: str
    bundle: ModelBundle
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def features(self) -> Any:
        return self.bundle.pipeline.named_steps["features"]

    @property
    def estimator(self) -> Any:
        return self.bundle.pipeline.named_steps["model"]

    @property
    def threshold(self) -> float:
        return float(self.bundle.metadata.get("threshold", 0.5))

    @property
    def feature_names(self) -> list[str]:
        return [str(n) for n in self.features.get_feature_names_out()]

    def predict_record(self, record: Mapping[str, Any]) -> tuple[float, np.ndarray]:
        """(P(late), served feature vector) for one record of contract fields."""
        x = self.features.transform_record(record)
        p = float(self.estimator.predict_proba(x.reshape(1, -1))[0, 1])
        return p, x

    def predict_frame(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(P(late) per row, served feature matrix) for a batch; the same steps as the Pipeline."""
        X = self.features.transform(frame)
        return self.estimator.predict_proba(X)[:, 1], X

    def describe(self, contract: Contract) -> dict[str, Any]:
        md = self.bundle.metadata
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "loaded_at": self.loaded_at.isoformat(timespec="seconds"),
            "threshold": self.threshold,
            "training_window": md.get("window"),
            "fit_window": md.get("fit_window"),
            "validation_window": md.get("validation_window"),
            "validation_metrics": md.get("validation_metrics"),
            "baseline_metrics": md.get("baseline_metrics"),
            "trained_at": md.get("trained_at"),
            "model_contract_version": (md.get("contract") or {}).get("version"),
            "contract_version": contract.version,
            "features": self.feature_names,
        }


def frame_from_records(records: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame.from_records(list(records), columns=list(columns))
