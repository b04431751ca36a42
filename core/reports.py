"""Evidently reports: the human-readable view of a window, beside our own numbers.

The policy acts on numbers computed against the frozen reference profile (monitoring.drift);
Evidently renders a self-contained HTML report (~4 MB, works offline) that a person opens to look
at the distributions. Why the numbers differ is documented and tested
(tests/integration/test_evidently_relation.py): Evidently's PSI re-bins every window with equal-width
bins over reference + current, floors empty bins without renormalising, and drops NaN, so one
outlier can stretch the bins and hide a real shift; its default per-column tests count rows and so
flag ordinary day-to-day weather as drift (TARGETS.md: 100 % of real no-drift windows).

evidently costs ~3.3 s to import: it is imported inside these functions only, never by the service.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd


def _datasets(
    reference: pd.DataFrame, window: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> tuple[Any, Any]:
    from evidently import DataDefinition, Dataset

    definition = DataDefinition(numerical_columns=list(numeric), categorical_columns=list(categorical))
    cols = [*numeric, *categorical]
    cur = Dataset.from_pandas(window[cols].reset_index(drop=True), data_definition=definition)
    ref = Dataset.from_pandas(reference[cols].reset_index(drop=True), data_definition=definition)
    return cur, ref


def write_html_report(
    reference: pd.DataFrame,
    window: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    path: Path,
) -> dict[str, Any]:
    """Write Evidently's drift + data summary report for `window` vs `reference` to `path`.

    Returns Evidently's own drift verdicts (for the JSON summary, clearly labelled as Evidently's)
    and `warnings`: columns left out because Evidently cannot take them (it raises "An empty
    column ... was provided" on a column with no value, e.g. a dead sensor -- which our own
    signals report as `missing_rate_increase`).
    """
    from evidently import Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    empty = [c for c in [*numeric, *categorical] if c not in window or window[c].isna().all() or reference[c].isna().all()]
    warnings = [f"{c}: no value in the window or the reference, left out of the HTML report" for c in empty]
    numeric = [c for c in numeric if c not in empty]
    categorical = [c for c in categorical if c not in empty]
    cur, ref = _datasets(reference, window, numeric, categorical)
    snapshot = Report([DataDriftPreset(), DataSummaryPreset()], include_tests=True).run(cur, ref)
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    per_column: dict[str, float] = {}
    drifted_share = None
    for m in snapshot.dict()["metrics"]:
        name = str(m.get("metric_name", ""))
        if name.startswith("ValueDrift(column="):
            col = name[len("ValueDrift(column=") :].split(",", 1)[0]
            per_column[col] = float(m["value"])
        elif name.startswith("DriftedColumnsCount") and isinstance(m.get("value"), dict):
            drifted_share = float(m["value"]["share"])
    return {
        "path": str(path),
        "evidently_drifted_share": drifted_share,
        "evidently_per_column": per_column,
        "warnings": warnings,
    }


def evidently_value_drift(
    reference: pd.DataFrame, window: pd.DataFrame, column: str, method: str, *, numeric: bool = True
) -> float:
    """Evidently's `ValueDrift(column, method)` score for one column (e.g. method="psi")."""
    from evidently import Report
    from evidently.metrics import ValueDrift

    cur, ref = _datasets(reference, window, [column] if numeric else [], [] if numeric else [column])
    snapshot = Report([ValueDrift(column=column, method=method)]).run(cur, ref)
    return float(snapshot.dict()["metrics"][0]["value"])


def reference_frame_from_profile(profile: Any, n: int = 5000, seed: int = 0) -> pd.DataFrame:
    """A reference frame for the HTML report, rebuilt from the frozen profile (no training data needed).

    Numeric columns resample the stored reference sample (missing values re-inserted at the
    reference missing rate); categorical columns draw from the reference shares. Columns are
    independent draws, which is all a per-column drift report needs.
    """
    import numpy as np

    from monitoring.profile import MISSING, UNSEEN

    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for p in profile.numeric:
        vals = rng.choice(np.asarray(p.sample), size=n, replace=True)
        vals[rng.random(n) < p.missing_rate] = np.nan
        out[p.name] = vals
    for c in profile.categorical:
        labels = [*c.categories, MISSING, UNSEEN]
        shares = np.asarray(c.shares)
        draw = rng.choice(len(labels), size=n, p=shares / shares.sum())
        out[c.name] = [None if labels[i] == MISSING else labels[i] for i in draw]
    return pd.DataFrame(out)
