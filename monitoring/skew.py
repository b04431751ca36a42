"""Training-serving skew at the row level (Zinkevich rule #37).

The prediction log keeps, for every prediction, the raw inputs the caller sent and the features
the service actually served (`f_<name>` columns, rule #29). Here the training code path
(`FlightFeatures.transform`, the batch path used by `Pipeline.fit`) recomputes the features from
the logged raw inputs, and each feature is compared with what was served. Any mismatch means
serving computed something training would not have: a serving-side lookup, a hot patch, a
different library version, or a fast path that drifted from the batch path.

Distribution-level skew (served features against the training distribution) is drift of the
`f_` columns against the frozen profile, computed by the drift module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class FeatureSkew:
    feature: str
    rows: int
    mismatches: int
    mismatch_rate: float
    examples: tuple[dict[str, Any], ...]  # up to 3: prediction_id, served, recomputed


@dataclass(frozen=True)
class SkewReport:
    rows: int
    features: tuple[FeatureSkew, ...]

    @property
    def max_mismatch_rate(self) -> float:
        return max((f.mismatch_rate for f in self.features), default=0.0)

    def worst(self, n: int = 5) -> list[FeatureSkew]:
        return sorted((f for f in self.features if f.mismatches), key=lambda f: -f.mismatch_rate)[:n]


def row_level_skew(
    transformer: Any,
    window: pd.DataFrame,
    input_columns: Sequence[str],
    *,
    rtol: float = 1e-9,
    id_column: str = "prediction_id",
    max_examples: int = 3,
    rows: np.ndarray | None = None,
) -> SkewReport:
    """Compare served `f_*` columns of `window` with `transformer.transform(window[input_columns])`.

    Values equal within `rtol` (relative) count as matching; NaN matches NaN only. `rows`: a boolean
    mask of the rows to compare (None = all), the same report as for `window[rows]` without copying
    the window's other columns (only the inputs are taken; the monitor leaves out fallback rows).
    """
    names = [str(n) for n in transformer.get_feature_names_out()]
    n_rows = len(window) if rows is None else int(np.count_nonzero(rows))
    if n_rows == 0:
        return SkewReport(0, tuple(FeatureSkew(n, 0, 0, 0.0, ()) for n in names))
    inputs = window[list(input_columns)] if rows is None else window.loc[rows, list(input_columns)]
    recomputed = transformer.transform(inputs)
    out = []
    # Row i of the comparison is row where[i] of the window (ids are looked up for examples only).
    where = np.arange(len(window)) if rows is None else np.flatnonzero(rows)
    ids = window.get(id_column)
    for j, name in enumerate(names):
        col = f"f_{name}"
        if col not in window:
            continue
        served_col = window[col]
        served = (
            served_col.to_numpy()
            if served_col.dtype == np.float64
            else pd.to_numeric(served_col, errors="coerce").to_numpy(dtype="float64")
        )
        if rows is not None:
            served = served[rows]
        again = recomputed[:, j]
        # Equal values match; of the rest (usually only NaN against NaN, which match too) only the
        # pairs that are not both NaN go through np.isclose's slower test.
        differ = np.flatnonzero(served != again)
        a, b = served[differ], again[differ]
        keep = ~(np.isnan(a) & np.isnan(b))
        differ, a, b = differ[keep], a[keep], b[keep]
        bad = differ[~np.isclose(a, b, rtol=rtol, atol=0.0)]
        examples = tuple(
            {
                "prediction_id": str(ids.iloc[where[i]]) if ids is not None else str(where[i]),
                "served": float(served[i]),
                "recomputed": float(again[i]),
            }
            for i in bad[:max_examples]
        )
        out.append(FeatureSkew(name, n_rows, int(bad.size), bad.size / n_rows, examples))
    return SkewReport(n_rows, tuple(out))
