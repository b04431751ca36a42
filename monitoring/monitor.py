"""The monitor job: a window of the prediction log -> signals -> verdict -> reports and actions.

This module wires the pure parts (drift, quality, skew, performance, policy) to I/O (the log store,
the run store, report files, the owner's webhook). `compute_signals` is pure given its inputs;
`run_window` does the reading and writing.

Signals of one window:
- drift of every raw numeric/categorical contract field, of the served features, and of the
  model's output, against the profile frozen at training time (monitoring.drift);
- data quality against the reference (monitoring.quality);
- row-level training-serving skew: features recomputed from the logged raw inputs (monitoring.skew);
- performance on the rows whose labels have arrived, a label-free estimate, the label-rate shift
  (monitoring.performance);
- the model's age.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_contracts.contract import Contract
from monitoring.drift import DriftResult, compute_drift
from monitoring.performance import Performance, window_performance
from monitoring.policy import PolicySettings, Signal, Verdict, decide
from monitoring.profile import ReferenceProfile
from monitoring.quality import FieldReference, quality_signals, references_from_mapping
from monitoring.skew import SkewReport, row_level_skew

log = logging.getLogger("driftlight.monitor")


@dataclass(frozen=True)
class ModelContext:
    """What the monitor needs to know of the model that served the window."""

    name: str
    version: str
    metadata: Mapping[str, Any]
    transformer: Any  # the fitted FlightFeatures
    drift_profile: ReferenceProfile | None

    @classmethod
    def from_bundle(cls, name: str, version: str, bundle: Any) -> ModelContext:
        profile = ReferenceProfile.from_dict(bundle.profile) if bundle.profile else None
        return cls(name, version, bundle.metadata, bundle.pipeline.named_steps["features"], profile)

    @property
    def quality_reference(self) -> list[FieldReference]:
        return references_from_mapping(self.metadata["monitoring"]["quality_reference"])

    @property
    def validation_auc(self) -> float:
        return float(self.metadata["validation_metrics"]["roc_auc"])

    @property
    def reference_label_rate(self) -> float:
        return float(self.metadata["monitoring"]["label_rate"])

    @property
    def trained_through(self) -> date:
        return date.fromisoformat(self.metadata["window"]["end"])


@dataclass(frozen=True)
class WindowSignals:
    rows: int
    signals: tuple[Signal, ...]
    performance: Performance
    skew: SkewReport
    drift: Any | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def compute_signals(
    ctx: ModelContext,
    contract: Contract,
    window: pd.DataFrame,
    *,
    min_labels: int = 300,
) -> WindowSignals:
    """All signals of one window (a frame from `LogStore.iter_predictions`, labels joined)."""
    sig: list[Signal] = []
    fields = [f.name for f in contract.fields]
    drift = None
    if ctx.drift_profile is not None and len(window):
        drift = compute_drift(ctx.drift_profile, window, min_rows=1)
        sig += drift_signals(drift)
    sig += quality_signals(ctx.quality_reference, window[fields] if len(window) else window)
    skew = (
        row_level_skew(ctx.transformer, window, ctx.transformer.input_columns())
        if len(window)
        else row_level_skew(ctx.transformer, window, [])
    )
    sig += [Signal("skew_mismatch_rate", f.feature, f.mismatch_rate, f"{f.mismatches} of {f.rows} rows") for f in skew.features]
    labels = window["label"].astype("float64").to_numpy() if "label" in window else np.full(len(window), np.nan)
    lag = None
    if "received_at" in window and len(window):
        lag = (window["received_at"] - window["served_at"]).dt.total_seconds().to_numpy(dtype="float64", na_value=np.nan)
    perf = window_performance(
        window["probability"].to_numpy(dtype="float64") if len(window) else np.array([]),
        labels,
        float(ctx.metadata.get("threshold", 0.5)),
        label_lag_s=lag,
    )
    if perf.labelled >= min_labels and not math.isnan(perf.roc_auc):
        sig.append(
            Signal(
                "roc_auc_drop",
                None,
                ctx.validation_auc - perf.roc_auc,
                f"AUC {perf.roc_auc:.3f} on {perf.labelled} labels vs validation {ctx.validation_auc:.3f}",
            )
        )
        sig.append(
            Signal(
                "label_rate_shift",
                None,
                abs(perf.label_rate - ctx.reference_label_rate),
                f"late rate {perf.label_rate:.1%} vs {ctx.reference_label_rate:.1%}",
            )
        )
    if not math.isnan(perf.expected_roc_auc):
        sig.append(
            Signal(
                "expected_roc_auc_drop",
                None,
                ctx.validation_auc - perf.expected_roc_auc,
                "label-free estimate, assumes calibration",
            )
        )
    if len(window):
        last_event = pd.Timestamp(window["event_time"].max()).tz_convert(contract.timezone).date()
        sig.append(
            Signal(
                "model_age_days", None, float((last_event - ctx.trained_through).days), f"trained through {ctx.trained_through}"
            )
        )
    return WindowSignals(rows=len(window), signals=tuple(sig), performance=perf, skew=skew, drift=drift)


def drift_signals(drift: DriftResult) -> list[Signal]:
    """Map a `DriftResult` to policy signals: bias-corrected PSI per column, share of drifted columns."""
    out = []
    for f in drift.features:
        ks = f" KS D {f.ks_d:.3f}," if f.ks_d is not None else ""
        out.append(Signal("psi", f.feature, float(f.psi_excess), f"raw PSI {f.psi:.3f},{ks} n={f.n}"))
    if drift.drifted_share is not None:
        out.append(Signal("drifted_feature_share", None, float(drift.drifted_share)))
    return out


@dataclass(frozen=True)
class MonitorResult:
    run_id: str | None
    window: tuple[str | None, str | None]
    by: str
    rows: int
    verdict: Verdict
    performance: Performance
    reports: Mapping[str, str]
    retrain_request: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "window": list(self.window),
            "by": self.by,
            "rows": self.rows,
            "status": self.verdict.status,
            "raw_status": self.verdict.raw_status,
            "reasons": [asdict(r) for r in self.verdict.reasons],
            "notes": list(self.verdict.notes),
            "performance": self.performance.as_dict(),
            "reports": dict(self.reports),
            "retrain_request": self.retrain_request,
        }


def read_window(store: Any, start: datetime | None, end: datetime | None, by: str, *, chunksize: int = 50_000) -> pd.DataFrame:
    """The window as one frame (read in chunks)."""
    parts = [c for c in store.iter_predictions(start, end, by=by, chunksize=chunksize) if len(c)]
    return pd.concat(parts, ignore_index=True) if parts else next(store.iter_predictions(start, end, by=by))


def notify_owner(verdict: Verdict, policy: PolicySettings, payload: Mapping[str, Any]) -> None:
    """Yellow and red notify the owner: always a log line; a webhook POST when configured."""
    top = "; ".join(r.message for r in verdict.top_reasons(3))
    log.warning("driftlight %s for %s: %s", verdict.status.upper(), policy.owner, top)
    if policy.webhook_url:
        import httpx

        try:
            httpx.post(policy.webhook_url, json={"owner": policy.owner, **payload}, timeout=5.0)
        except httpx.HTTPError as exc:  # a notification failure must not fail the monitor
            log.error("webhook to %s failed: %s", policy.webhook_url, exc)


def run_window(
    *,
    ctx: ModelContext,
    contract: Contract,
    store: Any,
    runs: Any,
    policy: PolicySettings,
    start: datetime | None,
    end: datetime | None,
    by: str = "event_time",
    reports_dir: Path | None = None,
    html: bool = False,
    reference_frame: pd.DataFrame | None = None,
    record: bool = True,
) -> MonitorResult:
    window = read_window(store, start, end, by)
    ws = compute_signals(ctx, contract, window)
    history = runs.recent_raw_statuses(policy.clear_after) if record else []
    verdict = decide(ws.signals, policy, history, rows=ws.rows)
    reports: dict[str, str] = {}
    summary = {
        "signals": [asdict(s) for s in ws.signals],
        "performance": ws.performance.as_dict(),
        "skew_worst": [asdict(f) for f in ws.skew.worst(3)],
        "notes": list(verdict.notes),
    }
    if reports_dir is not None:
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
        reports_dir.mkdir(parents=True, exist_ok=True)
        jpath = reports_dir / f"monitor-{stamp}.json"
        if html and reference_frame is not None and len(window):
            from monitoring.report import write_html_report

            num = [f.name for f in contract.numeric_fields]
            cat = [f.name for f in contract.category_fields]
            ev = write_html_report(reference_frame, window, num, cat, reports_dir / f"monitor-{stamp}.html")
            reports["html"] = ev["path"]
            summary["evidently"] = {k: v for k, v in ev.items() if k != "path"}
        reports["json"] = str(jpath)
        jpath.write_text(
            json.dumps(
                {"status": verdict.status, "reasons": [asdict(r) for r in verdict.reasons], **summary}, indent=2, default=str
            )
        )
    run_id = None
    request = None
    if record:
        run_id = runs.record_run(
            window_start=start,
            window_end=end,
            window_by=by,
            model_version=ctx.version,
            rows=ws.rows,
            labelled=ws.performance.labelled,
            status=verdict.status,
            raw_status=verdict.raw_status,
            reasons=[asdict(r) for r in verdict.reasons],
            summary={**summary, "reports": reports},
        )
        if verdict.status in ("yellow", "red"):
            notify_owner(
                verdict,
                policy,
                {"run_id": run_id, "status": verdict.status, "reasons": [asdict(r) for r in verdict.top_reasons(5)]},
            )
        # Only a window that is red on its own asks for a retrain; one held red by hysteresis
        # does not ask twice for the same trouble (the closed loop adds a cooldown on top).
        if verdict.raw_status == "red":
            request = runs.request_retrain(run_id, ctx.version, [asdict(r) for r in verdict.reasons])
    return MonitorResult(
        run_id=run_id,
        window=(start.isoformat() if start else None, end.isoformat() if end else None),
        by=by,
        rows=ws.rows,
        verdict=verdict,
        performance=ws.performance,
        reports=reports,
        retrain_request=request,
    )


def windows_between(start: date, end: date, every: timedelta) -> Sequence[tuple[date, date]]:
    out = []
    cur = start
    while cur <= end:
        nxt = min(end, cur + every - timedelta(days=1))
        out.append((cur, nxt))
        cur = nxt + timedelta(days=1)
    return out
