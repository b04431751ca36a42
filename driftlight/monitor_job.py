"""`driftlight monitor`: load the champion's context, read a window of the log, judge, act, export.

The I/O shell around `monitoring.monitor.run_window`: it knows the registry, the log store, the
run store, the policy file and Prometheus; the monitoring package does not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from data_contracts.contract import load_contract
from driftlight.logstore import log_store_from_settings
from driftlight.registry import registry_from_settings
from driftlight.runs import RunStore
from monitoring.monitor import ModelContext, MonitorResult, run_window
from monitoring.policy import load_policy
from monitoring.report import reference_frame_from_profile
from training.data import window_bounds

log = logging.getLogger("driftlight.monitor")
STATUS_VALUE = {"green": 0, "yellow": 1, "red": 2, "not_enough_data": -1}


class Monitor:
    """Everything one monitor process holds between runs."""

    def __init__(self, settings: Any, policy_path: Path | None = None) -> None:
        self.settings = settings
        self.contract = load_contract()
        self.policy = load_policy(policy_path)
        registry = registry_from_settings(settings)
        version = registry.alias_version(settings.model_name, settings.model_alias)
        if version is None:
            raise LookupError(f"no {settings.model_name}@{settings.model_alias}: run `driftlight train` first")
        self.registry = registry
        self._load(version)
        self.store = log_store_from_settings(settings, self.contract)
        self.runs = RunStore(settings.resolved_log_store_url)

    def _load(self, version: str) -> None:
        bundle = self.registry.load(self.settings.model_name, version)
        self.ctx = ModelContext.from_bundle(self.settings.model_name, version, bundle)
        self.reference = reference_frame_from_profile(self.ctx.drift_profile) if self.ctx.drift_profile else None

    def refresh(self) -> bool:
        """Judge against the current champion: reload its context if the alias moved. True if it did."""
        version = self.registry.alias_version(self.settings.model_name, self.settings.model_alias)
        if version is None or version == self.ctx.version:
            return False
        log.info("monitor: champion moved v%s -> v%s; judging against the new reference", self.ctx.version, version)
        self._load(version)
        return True

    def run(
        self, start: datetime | None, end: datetime | None, *, by: str = "event_time", html: bool = True, **kw: Any
    ) -> MonitorResult:
        """Judge a window; `kw` goes to `run_window` (store=, history=, request_retrain=)."""
        kw.setdefault("store", self.store)
        return run_window(
            ctx=self.ctx,
            contract=self.contract,
            runs=self.runs,
            policy=self.policy,
            start=start,
            end=end,
            by=by,
            reports_dir=self.settings.home / "reports",
            html=html,
            reference_frame=self.reference,
            **kw,
        )

    def run_days(self, first: date, last: date, *, html: bool = True, by: str = "event_time") -> MonitorResult:
        """Judge local days `first`..`last` of event time (a replay of 2013) or of `served_at` (live traffic)."""
        lo, hi = window_bounds(first, last, self.contract.timezone)
        return self.run(lo, hi, by=by, html=html)


class MonitorGauges:
    """Prometheus gauges of the latest run, for `driftlight monitor --every`."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Gauge

        self.registry = CollectorRegistry()
        r = self.registry
        self.status = Gauge(
            "driftlight_monitor_status", "Latest verdict: 0 green, 1 yellow, 2 red, -1 not enough data", registry=r
        )
        self.psi = Gauge("driftlight_monitor_psi", "PSI excess of a column against the frozen profile", ["feature"], registry=r)
        self.missing = Gauge(
            "driftlight_monitor_missing_rate_increase", "Missing rate minus the reference's", ["feature"], registry=r
        )
        self.drifted = Gauge(
            "driftlight_monitor_drifted_share", "Share of profiled columns over their drift threshold", registry=r
        )
        self.weighted = Gauge(
            "driftlight_monitor_weighted_drift_score", "PSI excess weighted by the model's permutation importance", registry=r
        )
        self.rows = Gauge("driftlight_monitor_rows", "Rows in the latest window", registry=r)
        self.last = Gauge("driftlight_monitor_last_run_timestamp_seconds", "Unix time of the latest run", registry=r)
        self.reasons = Gauge("driftlight_monitor_reasons", "Reasons in the latest verdict, by severity", ["severity"], registry=r)

    def update(self, res: MonitorResult, signals: list[dict[str, Any]]) -> None:
        self.status.set(STATUS_VALUE[res.verdict.status])
        self.rows.set(res.rows)
        self.last.set(time.time())
        for sev in ("warning", "critical"):
            self.reasons.labels(sev).set(sum(1 for r in res.verdict.reasons if r.severity == sev))
        for s in signals:
            if s["signal"] == "psi" and s["feature"]:
                self.psi.labels(s["feature"]).set(s["value"])
            elif s["signal"] == "missing_rate_increase" and s["feature"]:
                self.missing.labels(s["feature"]).set(s["value"])
            elif s["signal"] == "drifted_feature_share":
                self.drifted.set(s["value"])
            elif s["signal"] == "weighted_drift_score":
                self.weighted.set(s["value"])


def loop(
    monitor: Monitor,
    every_s: float,
    window_s: float,
    *,
    metrics_port: int | None,
    max_runs: int | None = None,
    html: bool = False,
    on_red: Callable[[], int] | None = None,
) -> None:
    """Every `every_s` seconds, judge the last `window_s` seconds of traffic (by served_at).

    `on_red` runs when a run records a retrain request (the CLI passes a retrain in its own process).
    """
    gauges = MonitorGauges()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=gauges.registry)
    n = 0
    while max_runs is None or n < max_runs:
        t0 = time.monotonic()
        end = datetime.now(UTC)
        try:
            res = monitor.run(end - timedelta(seconds=window_s), end, by="served_at", html=html)
            latest = monitor.runs.latest() or {}
            gauges.update(res, latest.get("summary", {}).get("signals", []))
            log.info(
                "monitor: %s (%d rows) %s", res.verdict.status, res.rows, "; ".join(r.message for r in res.verdict.top_reasons(3))
            )
            if res.retrain_request and on_red is not None:
                log.info("monitor: retrain requested (%s); retrain exited with %s", res.retrain_request, on_red())
            monitor.refresh()
        except Exception as exc:  # keep the loop alive; the gauge's timestamp shows staleness
            log.error("monitor run failed: %s", exc)
        n += 1
        if max_runs is not None and n >= max_runs:
            break
        time.sleep(max(0.0, every_s - (time.monotonic() - t0)))
