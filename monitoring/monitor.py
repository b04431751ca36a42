"""Judging a window (pure): chunks of the prediction log -> signals -> verdict.

This module combines the pure parts (drift, quality, skew, performance, policy). It does no I/O:
`core.monitor_job` reads the window from the log store, calls `WindowAccumulator` and `judge`,
and publishes the result (run record, report files, the owner's webhook, the retrain request).

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

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from data_contracts.contract import REJECTED_BY_EVENT, Contract
from data_contracts.contract import REJECTED_RECORDS as REJECTED
from monitoring.drift import DriftAccumulator, DriftResult
from monitoring.performance import Performance, window_performance
from monitoring.policy import PolicySettings, Signal, Verdict, decide
from monitoring.profile import ReferenceProfile
from monitoring.quality import FieldReference, QualityAccumulator, references_from_mapping
from monitoring.skew import FeatureSkew, SkewReport, row_level_skew

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
    def importance(self) -> Mapping[str, float]:
        """Permutation importance of the raw fields, from training (empty for older models)."""
        return self.metadata.get("monitoring", {}).get("importance", {})

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


class WindowAccumulator:
    """All window statistics, gathered chunk by chunk from the log.

    Memory is bounded by the profile's bins, the per-column value samples (50,000), the distinct
    values per field, a row sample for the HTML report, and 24 bytes per row for performance
    (probability, label, label lag), not by the width of the window's rows.
    """

    def __init__(
        self, ctx: ModelContext, contract: Contract, *, sample_size: int = 50_000, report_rows: int = 20_000, seed: int = 0
    ) -> None:
        self.ctx = ctx
        self.contract = contract
        self.fields = [f.name for f in contract.fields]
        self.drift = DriftAccumulator(ctx.drift_profile, sample_size=sample_size, seed=seed) if ctx.drift_profile else None
        # One sample per numeric field: quality reads the drift pass's reservoirs (same size, seed, chunks).
        shared = self.drift.samples if self.drift is not None else None
        self.quality = QualityAccumulator(
            ctx.quality_reference, contract=contract, sample_size=sample_size, seed=seed, shared_samples=shared
        )
        self.names = [str(n) for n in ctx.transformer.get_feature_names_out()]
        self.skew_bad = dict.fromkeys(self.names, 0)
        self.skew_examples: dict[str, list[dict[str, Any]]] = {n: [] for n in self.names}
        self.rows = 0
        self.last_event: pd.Timestamp | None = None
        self.served_range: tuple[datetime, datetime] | None = None
        self._perf: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._report_rows = report_rows
        self._sample: pd.DataFrame | None = None
        self._rng = np.random.default_rng(seed)

    def add(self, chunk: pd.DataFrame) -> None:
        if chunk.empty:
            return
        self.rows += len(chunk)
        if self.drift is not None:
            self.drift.add(chunk)
        self.quality.add(chunk[[c for c in self.fields if c in chunk]])
        # Rows the fallback served carry no features (NULL): there is nothing to compare for them.
        served_by_model = chunk if "model_version" not in chunk else chunk[chunk["model_version"] != "fallback"]
        skew = row_level_skew(self.ctx.transformer, served_by_model, self.ctx.transformer.input_columns())
        for f in skew.features:
            self.skew_bad[f.feature] += f.mismatches
            self.skew_examples[f.feature] = (self.skew_examples[f.feature] + list(f.examples))[:3]
        labels = chunk["label"].astype("float64").to_numpy() if "label" in chunk else np.full(len(chunk), np.nan)
        lag = np.full(len(chunk), np.nan)
        if "received_at" in chunk:
            lag = (chunk["received_at"] - chunk["served_at"]).dt.total_seconds().to_numpy(dtype="float64", na_value=np.nan)
        self._perf.append((chunk["probability"].to_numpy(dtype="float64"), labels, lag))
        lo, hi = chunk["served_at"].min().to_pydatetime(), chunk["served_at"].max().to_pydatetime()
        self.served_range = (
            (lo, hi) if self.served_range is None else (min(self.served_range[0], lo), max(self.served_range[1], hi))
        )
        last = pd.Timestamp(chunk["event_time"].max())
        self.last_event = last if self.last_event is None else max(self.last_event, last)
        keyed = chunk[self.fields].assign(_key=self._rng.random(len(chunk)))
        self._sample = keyed if self._sample is None else pd.concat([self._sample, keyed], ignore_index=True)
        if len(self._sample) > self._report_rows:
            self._sample = self._sample.nsmallest(self._report_rows, "_key")

    @property
    def report_sample(self) -> pd.DataFrame:
        """A seeded random sample of the window's raw fields (for Evidently's HTML report)."""
        if self._sample is None:
            return pd.DataFrame(columns=self.fields)
        return self._sample.drop(columns="_key")

    def finish(self, *, min_labels: int = 300) -> WindowSignals:
        ctx = self.ctx
        sig: list[Signal] = []
        drift = self.drift.result(min_rows=1, importance=ctx.importance) if self.drift is not None and self.rows else None
        if drift is not None:
            sig += drift_signals(drift)
            if drift.weighted_score is not None:  # informational: no policy rule acts on it
                sig.append(
                    Signal("weighted_drift_score", None, drift.weighted_score, "PSI excess weighted by permutation importance")
                )
        sig += self.quality.signals()
        skew = SkewReport(
            self.rows,
            tuple(
                FeatureSkew(
                    n,
                    self.rows,
                    self.skew_bad[n],
                    self.skew_bad[n] / self.rows if self.rows else 0.0,
                    tuple(self.skew_examples[n]),
                )
                for n in self.names
            ),
        )
        if self.rows:
            sig += [
                Signal("skew_mismatch_rate", f.feature, f.mismatch_rate, f"{f.mismatches} of {f.rows} rows")
                for f in skew.features
            ]
        p = np.concatenate([x[0] for x in self._perf]) if self._perf else np.array([])
        y = np.concatenate([x[1] for x in self._perf]) if self._perf else np.array([])
        lag = np.concatenate([x[2] for x in self._perf]) if self._perf else np.array([])
        perf = window_performance(p, y, float(ctx.metadata.get("threshold", 0.5)), label_lag_s=lag)
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
        if self.last_event is not None:
            last_day = self.last_event.tz_convert(self.contract.timezone).date()
            sig.append(
                Signal(
                    "model_age_days", None, float((last_day - ctx.trained_through).days), f"trained through {ctx.trained_through}"
                )
            )
        return WindowSignals(rows=self.rows, signals=tuple(sig), performance=perf, skew=skew, drift=drift)


def compute_signals(ctx: ModelContext, contract: Contract, window: pd.DataFrame, *, min_labels: int = 300) -> WindowSignals:
    """All signals of one in-memory window (a frame shaped like `LogStore.iter_predictions` output)."""
    acc = WindowAccumulator(ctx, contract)
    acc.add(window)
    return acc.finish(min_labels=min_labels)


def rejected_records(violations: Mapping[tuple[str, str], int]) -> int:
    """Records refused at the door. The service counts them (a refused batch counts all its records);
    by event time, the count of refused records whose own timestamp falls in the window is used when
    larger; older stores without either count fall back to the violations, which count a record once
    per bad field."""
    if REJECTED in violations or REJECTED_BY_EVENT in violations:
        return max(violations.get(REJECTED, 0), violations.get(REJECTED_BY_EVENT, 0))
    return sum(violations.values())


def violation_signals(violations: Mapping[tuple[str, str], int], served_rows: int) -> list[Signal]:
    """Per contract field: records rejected for it / all records that arrived (served + rejected).

    Refused records known only by their event hour (the fields are not kept per event hour) are
    one more row, `_rejected`, so a window whose every record was refused is red by event time too."""
    arrived = served_rows + rejected_records(violations)
    by_field: dict[str, int] = {}
    for (name, kind), n in violations.items():
        if (name, kind) in (REJECTED, REJECTED_BY_EVENT):
            continue
        by_field[name] = by_field.get(name, 0) + n
    unexplained = violations.get(REJECTED_BY_EVENT, 0) - violations.get(REJECTED, 0)
    if unexplained > 0:
        by_field[REJECTED[0]] = unexplained
    return [
        Signal(
            "contract_violation_rate", name, n / arrived, ", ".join(f"{k}: {c}" for (f, k), c in violations.items() if f == name)
        )
        for name, n in sorted(by_field.items())
        if arrived
    ]


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
class Judgement:
    """One window judged: every signal (the window's and the door's), the verdict, and a summary
    for the run record (no report paths: publishing adds those)."""

    rows: int
    signals: tuple[Signal, ...]
    verdict: Verdict
    performance: Performance
    summary: Mapping[str, Any]


def judge(
    ws: WindowSignals,
    violations: Mapping[tuple[str, str], int],
    policy: PolicySettings,
    history: list[str],
    *,
    shadow: Mapping[str, Any] | None = None,
) -> Judgement:
    """Pure: the window's signals plus the door's refusals -> a verdict under `policy`, with the
    raw statuses of earlier windows (`history`, oldest first) for the hysteresis."""
    door = violation_signals(violations, ws.rows)
    signals = (*ws.signals, *door)
    rejected = rejected_records(violations)
    if ws.rows < policy.min_rows <= ws.rows + rejected:
        # Refused records are not judged rows: too few reached the log to read the window's own
        # statistics, but enough traffic arrived for the door's refusal rate to speak.
        verdict = decide(door, policy, history, rows=ws.rows + rejected)
        note = f"only {ws.rows} of {ws.rows + rejected} records were served: judged on the door's refusals alone"
        verdict = replace(verdict, notes=(*verdict.notes, note))
    else:
        verdict = decide(signals, policy, history, rows=ws.rows)
    summary = {
        "shadow": shadow,
        "signals": [asdict(s) for s in signals],
        "violations": {f"{f}:{k}": n for (f, k), n in violations.items()},
        "performance": ws.performance.as_dict(),
        "skew_worst": [asdict(f) for f in ws.skew.worst(3)],
        "notes": list(verdict.notes),
    }
    return Judgement(ws.rows, signals, verdict, ws.performance, summary)
