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

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
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
    *,
    header: Callable[[float | None], str] | None = None,
) -> dict[str, Any]:
    """Write Evidently's drift + data summary report for `window` vs `reference` to `path`.

    `header(evidently's drifted share)` (HTML, from `verdict_header`) is put at the top of the page,
    before Evidently's own content, so the report opens with driftlight's verdict rather than
    Evidently's column tests.
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
    if header is not None:
        _insert_after_body(path, header(drifted_share))
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


# -- naming, heading and retention ---------------------------------------------------------------
REPORT_PREFIX = "monitor-"
_COLOURS = {"green": "#1a7f37", "yellow": "#b08800", "red": "#cf222e", "not_enough_data": "#57606a"}
POLICY_VS_EVIDENTLY = (
    "The column tests below are Evidently's, not driftlight's policy: Evidently re-bins every window "
    "and, with more than 1,000 reference rows, flags a column when its Wasserstein distance (numeric) "
    "or Jensen-Shannon distance (categorical) exceeds 0.1, and calls the dataset drifted when half "
    "the columns are; on real no-drift days that flags ordinary day-to-day weather. driftlight's light "
    "compares each column with the frozen training profile, with thresholds checked against no-drift "
    "windows and the drills (monitoring/policy.yaml, docs/thresholds.md), and also judges quality, skew "
    "and performance, which this report does not show."
)


def _stamp(ts: datetime | None) -> str:
    return ts.strftime("%Y%m%dT%H%M") if ts is not None else "all"


def report_stem(window: tuple[datetime | None, datetime | None], status: str, now: datetime | None = None) -> str:
    """A report's file name without extension: window, status and when it was written, e.g.
    `monitor-20130401T0400-20130408T0400-red-20261130T193000` (window bounds as given: UTC instants)."""
    now = now or datetime.now(UTC)
    return f"{REPORT_PREFIX}{_stamp(window[0])}-{_stamp(window[1])}-{status}-{now:%Y%m%dT%H%M%S}"


def unique_stem(reports_dir: Path, stem: str) -> str:
    """`stem`, or `stem-2`, `stem-3`... if a report of that name exists (two runs in one second)."""
    out, n = stem, 1
    while any(reports_dir.glob(f"{out}.*")):
        n += 1
        out = f"{stem}-{n}"
    return out


def verdict_header(
    *,
    status: str,
    window: tuple[datetime | None, datetime | None],
    by: str,
    rows: int,
    reasons: Sequence[Mapping[str, Any]],
    evidently_share: float | None = None,
    max_reasons: int = 10,
) -> str:
    """The HTML block at the top of an Evidently report: driftlight's verdict (colour and word), the
    window, the ranked reasons, and how Evidently's column tests differ from the policy."""
    colour = _COLOURS.get(status, "#57606a")
    lo, hi = (w.isoformat() if w is not None else "the whole log" for w in window)
    items = "".join(
        f"<li><b>{escape(str(r.get('severity', '')))}</b>: {escape(str(r.get('message', '')))}</li>"
        for r in reasons[:max_reasons]
    )
    more = f"<p>and {len(reasons) - max_reasons} more reasons.</p>" if len(reasons) > max_reasons else ""
    ev = ""
    if evidently_share is not None:
        ev = f" Here Evidently's tests flag {evidently_share:.0%} of the columns."
    return (
        '<div id="driftlight-verdict" style="font-family:system-ui,sans-serif;border:3px solid '
        f'{colour};border-radius:8px;margin:12px;padding:12px 16px;background:#fff;color:#1f2328">'
        f'<h1 style="margin:0 0 6px;font-size:22px">driftlight verdict: '
        f'<span style="color:{colour}">&#9679; {escape(status.upper().replace("_", " "))}</span></h1>'
        f'<p style="margin:4px 0">Window [{escape(lo)}, {escape(hi)}) by {escape(by)}, {rows} rows.</p>'
        + (f"<ol>{items}</ol>{more}" if items else "<p>No threshold breached.</p>")
        + f'<p style="margin:4px 0;color:#57606a">{escape(POLICY_VS_EVIDENTLY)}{escape(ev)}</p></div>'
    )


def _insert_after_body(path: Path, block: str) -> None:
    text = path.read_text(encoding="utf-8")
    m = re.search(r"<body[^>]*>", text, flags=re.IGNORECASE)
    pos = m.end() if m else 0
    path.write_text(text[:pos] + block + text[pos:], encoding="utf-8")


def prune_reports(reports_dir: Path, keep: int) -> list[Path]:
    """Keep the newest `keep` monitor runs' reports (every file sharing a run's stem), delete the rest.

    `keep` = 0 keeps everything. Only files named `monitor-*.json|html` are touched. Returns the
    deleted paths. Age is the file's modification time (names sort by window, not by when written).
    """
    if keep <= 0 or not reports_dir.is_dir():
        return []
    stems: dict[str, float] = {}
    for p in reports_dir.glob(f"{REPORT_PREFIX}*"):
        if p.suffix in (".json", ".html") and p.is_file():
            stems[p.stem] = max(stems.get(p.stem, 0.0), p.stat().st_mtime)
    old = sorted(stems, key=lambda s: stems[s], reverse=True)[keep:]
    deleted = []
    for stem in old:
        for suffix in (".json", ".html"):
            p = reports_dir / f"{stem}{suffix}"
            if p.exists():
                p.unlink()
                deleted.append(p)
    return deleted
