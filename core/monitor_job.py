"""`driftlight monitor`: load the champion's context, read a window of the log, judge, publish.

The I/O shell around the pure `monitoring.monitor` (`WindowAccumulator`, `judge`): it knows the
registry, the log store, the run store, the policy file, report files, the owner's webhook and
Prometheus; the monitoring package does not. `run_window` = read + judge + `publish`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pandas as pd

from core.archive import ArchivedDay, ArchivedLog, LogArchive
from core.day_parts import DayParts
from core.fleet_queue import Decision
from core.ids import drill_mask
from core.logstore import log_store_from_settings
from core.readahead import read_ahead
from core.registry import registry_from_settings
from core.reports import reference_frame_from_profile
from core.runs import RunStore
from data_contracts.contract import REJECTED_BY_EVENT, Contract, load_contract
from data_contracts.windows import window_bounds
from monitoring.monitor import REPORT_ROWS, Judgement, ModelContext, WindowAccumulator, judge
from monitoring.performance import Performance
from monitoring.policy import PolicySettings, Verdict, load_policy, retrain_hold

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger("driftlight.monitor")
WindowBy = Literal["event_time", "served_at"]  # which clock a window is cut by
# Log columns the window judge never reads: left out of the read (`warnings` is per-row JSON to decode).
NOT_READ_BY_MONITOR = frozenset({"warnings", "late", "model_name"})
STATUS_VALUE = {"green": 0, "yellow": 1, "red": 2, "not_enough_data": -1}


class PredictionSource(Protocol):
    """What the monitor reads a window from: the log store, or a view of it (a drill's own rows)."""

    def iter_predictions(
        self, start: datetime | None, end: datetime | None, *, by: Literal["event_time", "served_at"] = ..., chunksize: int = ...
    ) -> Iterator[pd.DataFrame]: ...

    def shadow_frame(
        self, start: datetime | None, end: datetime | None, *, by: Literal["event_time", "served_at"] = ...
    ) -> pd.DataFrame: ...


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
    retrain_withheld: str | None = None  # red on broken data: why no retrain was asked (policy.retrain_hold)

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
            "retrain_withheld": self.retrain_withheld,
        }


def notify_owner(verdict: Verdict, policy: PolicySettings, payload: Mapping[str, Any]) -> None:
    """Yellow and red notify the owner: always a log line; a webhook POST when configured."""
    top = "; ".join(r.message for r in verdict.top_reasons(3))
    log.warning("driftlight %s for %s: %s", verdict.status.upper(), policy.owner, top)
    if policy.webhook_url:
        post_webhook(policy.webhook_url, {"owner": policy.owner, **payload})


def post_webhook(url: str, payload: Mapping[str, Any]) -> None:
    """POST a notification; a failure is logged, never raised (it must not fail a monitor run or a
    retrain cycle)."""
    import httpx

    try:
        httpx.post(url, json=payload, timeout=5.0)
    except httpx.HTTPError as exc:
        log.error("webhook to %s failed: %s", url, exc)


def notify_yellow(decisions: Iterable[Decision], *, owner: str, webhook_url: str | None, fleet: str) -> int:
    """The owner hears about every yellow fleet model: a log line each; one webhook POST when
    configured. (Here, not in core.fleet_queue, which the service reads: the webhook client is not
    part of the [serve] install.)"""
    yellow = [d for d in decisions if d.action == "notified"]
    for d in yellow:
        log.warning("fleet %s: YELLOW %s for %s: %s", fleet, d.model_name, owner, d.reason)
    if yellow and webhook_url:
        post_webhook(webhook_url, {"owner": owner, "fleet": fleet, "status": "yellow", "models": [d.as_dict() for d in yellow]})
    # Red on broken data retrains nothing: the owner must hear about it (a page, not a queue entry).
    broken = [d for d in decisions if d.action == "withheld"]
    for d in broken:
        log.error("fleet %s: RED %s for %s: %s", fleet, d.model_name, owner, d.reason)
    if broken and webhook_url:
        post_webhook(webhook_url, {"owner": owner, "fleet": fleet, "status": "red", "models": [d.as_dict() for d in broken]})
    return len(yellow) + len(broken)


def write_reports(
    j: Judgement,
    acc: WindowAccumulator,
    contract: Contract,
    reports_dir: Path,
    *,
    html: bool,
    reference_frame: pd.DataFrame | None,
    window: tuple[datetime | None, datetime | None] = (None, None),
    by: str = "event_time",
    keep: int = 0,
) -> tuple[dict[str, str], dict[str, Any]]:
    """The run's JSON summary and (optionally) Evidently's HTML report, headed by the verdict and
    named by window and status; then only the newest `keep` runs' reports stay (0 = all).
    Returns (paths, extra summary)."""
    from core.reports import prune_reports, report_stem, unique_stem

    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = unique_stem(reports_dir, report_stem(window, j.verdict.status))
    reports: dict[str, str] = {}
    extra: dict[str, Any] = {}
    reasons = [asdict(r) for r in j.verdict.reasons]
    jpath = reports_dir / f"{stem}.json"
    if html and reference_frame is not None and j.rows:
        from core.reports import verdict_header, write_html_report

        num = [f.name for f in contract.numeric_fields]
        cat = [f.name for f in contract.category_fields]

        def head(share: float | None) -> str:
            return verdict_header(
                status=j.verdict.status, window=window, by=by, rows=j.rows, reasons=reasons, evidently_share=share
            )

        # The HTML is for people; the verdict is already made. A report step that fails (Evidently
        # on a window it cannot render) is a warning in the run, never a failed run.
        try:
            ev = write_html_report(reference_frame, acc.report_sample, num, cat, reports_dir / f"{stem}.html", header=head)
            reports["html"] = ev["path"]
            extra["evidently"] = {k: v for k, v in ev.items() if k not in ("path", "warnings")}
            warnings = list(ev.get("warnings", []))
        except Exception as exc:
            log.warning("monitor: the HTML report failed (%s: %s); the verdict is recorded without it", type(exc).__name__, exc)
            warnings = [f"HTML report failed: {type(exc).__name__}: {exc}"]
        if warnings:
            extra["report_warnings"] = warnings
    reports["json"] = str(jpath)
    body = {"status": j.verdict.status, "reasons": reasons, **j.summary, **extra}
    jpath.write_text(json.dumps(body, indent=2, default=str))
    prune_reports(reports_dir, keep)
    return reports, extra


def publish(
    j: Judgement,
    *,
    ctx: ModelContext,
    runs: RunStore,
    policy: PolicySettings,
    window: tuple[datetime | None, datetime | None],
    by: str,
    reports: Mapping[str, str],
    extra: Mapping[str, Any],
    request_retrain: bool,
    drill: str | None = None,
) -> tuple[str, str | None, str | None]:
    """Record the run, notify the owner on yellow/red, ask for a retrain on a window red on its own
    unless its data is broken. A drill's run is recorded as the drill's (never the real light), pages
    nobody, asks for nothing. Returns (run id, retrain request id or None, why the retrain was
    withheld or None)."""
    verdict = j.verdict
    hold = retrain_hold(verdict.reasons, policy) if verdict.raw_status == "red" and drill is None else None
    if hold:
        extra = {**extra, "retrain_withheld": hold}
    run_id = runs.record_run(
        window_start=window[0],
        window_end=window[1],
        window_by=by,
        model_version=ctx.version,
        rows=j.rows,
        labelled=j.performance.labelled,
        status=verdict.status,
        raw_status=verdict.raw_status,
        reasons=[asdict(r) for r in verdict.reasons],
        summary={**j.summary, **extra, "reports": dict(reports)},
        drill=drill,
    )
    if drill is not None:
        log.info("drill %s: %s", drill, verdict.status.upper())
        return run_id, None, None
    if verdict.status in ("yellow", "red"):
        payload = {"run_id": run_id, "status": verdict.status, "reasons": [asdict(r) for r in verdict.top_reasons(5)]}
        notify_owner(verdict, policy, {**payload, "retrain_withheld": hold} if hold else payload)
    # Only a window that is red on its own asks for a retrain; one held red by hysteresis
    # does not ask twice for the same trouble (the closed loop adds a cooldown on top). Broken
    # data asks for none: it is fixed at the source, not learned (monitoring.policy.retrain_hold).
    request = None
    if hold:
        log.warning("monitor: %s", hold)
    elif verdict.raw_status == "red" and request_retrain:
        request = runs.request_retrain(run_id, ctx.version, [asdict(r) for r in verdict.reasons])
    return run_id, request, hold


def door_violations(
    runs: RunStore,
    start: datetime | None,
    end: datetime | None,
    *,
    by: str,
    served_range: tuple[datetime, datetime] | None,
    drill: bool = False,
) -> dict[tuple[str, str], int]:
    """Requests refused at the door never reach the log: the counts the service kept for this window.

    By served_at: the window itself. By event time: the per-field counts over the serving span of
    the window's logged rows, plus the refused records whose own timestamp falls in the window
    (the door books them by event hour), so a window whose every record was refused is judged.
    `drill`: a drill's refusals (stored apart), else the real traffic's."""
    if by == "served_at":
        if start is None or end is None:
            return {}
        v = runs.violations_between(start, end, drill=drill)
        v.pop(REJECTED_BY_EVENT, None)  # booked at event hours: not this clock
        return v
    v = runs.violations_between(*served_range, drill=drill) if served_range is not None else {}
    v.pop(REJECTED_BY_EVENT, None)
    if start is not None and end is not None:
        n = runs.violations_between(start, end - timedelta(microseconds=1), drill=drill).get(REJECTED_BY_EVENT, 0)
        if n:
            v[REJECTED_BY_EVENT] = n
    return v


def window_volume(
    ctx: ModelContext,
    store: PredictionSource,
    ws: Any,
    violations: Mapping[tuple[str, str], int],
    start: datetime | None,
    end: datetime | None,
    *,
    by: str,
) -> tuple[list[Any], dict[str, Any]]:
    """The volume signals of an event-time window with both ends (monitoring.volume): arrived
    (served + refused by event hour) against the reference's hours of the week, judged through the
    watermark (the latest event the log holds, and now). A served_at window is not judged for volume:
    a replay or a backfill posts old traffic at any wall-clock speed."""
    from monitoring.volume import volume_signals

    ref = ctx.volume_reference
    if ref is None or by != "event_time" or start is None or end is None:
        return [], {}
    span = getattr(store, "event_time_range", None)
    lo_hi = span() if callable(span) else None
    mark = None if lo_hi is None else lo_hi[1]
    now = datetime.now(UTC)
    watermark = now if mark is None else min(mark, now)
    # the refused records whose own event time falls in the window (booked by event hour at the door)
    return volume_signals(ref, ws.arrivals, violations.get(REJECTED_BY_EVENT, 0), start, end, watermark=watermark)


def fold_window(
    acc: WindowAccumulator,
    store: PredictionSource,
    start: datetime | None,
    end: datetime | None,
    *,
    by: WindowBy = "event_time",
    drill: str | None = None,
    chunksize: int = 50_000,
    read_ahead_chunks: int = 1,
    day_parts: bool = True,
) -> None:
    """Fold a window of `store` into `acc`, chunk by chunk (the window is never held whole). Without
    `drill`, drill traffic is left out. From an archive (`ArchivedLog`) with `day_parts`, windows by
    event time merge each whole archived day's kept state (`core.day_parts`, built on first use)
    and fold only the rest of the window row by row: the same signals as folding every row."""
    names = getattr(store, "column_names", None)  # the log store or its archive; a drill's view reads all
    columns = [c for c in names if c not in NOT_READ_BY_MONITOR] if isinstance(names, list) else None

    def rows(chunks: Iterable[pd.DataFrame]) -> None:
        if drill is None:
            chunks = (c[~drill_mask(c["prediction_id"]).to_numpy()] for c in chunks)
        # The next chunk is read (and its drill rows dropped) in a thread while this one is judged.
        for chunk in read_ahead(chunks, read_ahead_chunks):
            acc.add(chunk)  # each chunk is folded in and dropped

    if not (day_parts and drill is None and by == "event_time" and isinstance(store, ArchivedLog) and columns):
        cols = {"columns": columns} if columns is not None else {}
        rows(store.iter_predictions(start, end, by=by, chunksize=chunksize, **cols))
        return
    parts = DayParts(store.archive, acc.ctx, acc.contract, sample_size=acc.sample_size, seed=acc.seed)
    for kind, a, b in store.segments(start, end):
        if kind == "db":
            rows(store.store.iter_predictions(a, b, by="event_time", chunksize=chunksize, reader=store.reader, columns=columns))
        else:
            parts.fold(acc, store, a, columns, chunksize)
    if parts.built:
        log.info("monitor: kept the state of %d archived day(s) for model v%s", parts.built, acc.ctx.version)


def run_window(
    *,
    ctx: ModelContext,
    contract: Contract,
    store: PredictionSource,
    runs: RunStore,
    policy: PolicySettings,
    start: datetime | None,
    end: datetime | None,
    by: WindowBy = "event_time",
    reports_dir: Path | None = None,
    html: bool = False,
    reference_frame: pd.DataFrame | None = None,
    record: bool = True,
    chunksize: int = 50_000,
    history: list[str] | None = None,
    request_retrain: bool = True,
    drill: str | None = None,
    keep_reports: int = 0,
    read_ahead_chunks: int = 1,
    day_parts: bool = True,
) -> MonitorResult:
    """Judge one window. `history` (raw statuses, oldest first) replaces the stored history for the
    hysteresis (a drill's own sequence); `request_retrain=False` records a red run without asking for
    a retrain. Without `drill`, drill traffic (drill ids) is left out: the real light; with it, the
    run is the named drill's, judged on the traffic `store` yields and the drill's door refusals.
    `read_ahead_chunks`: chunks read ahead of the judge in a thread (`core.readahead`; 0: none).
    `day_parts`: with an archive, merge each archived day's kept state instead of folding its rows
    again (`core.day_parts`; the same signals)."""
    # The report sample is only drawn for the HTML report.
    report = html and reports_dir is not None and reference_frame is not None
    acc = WindowAccumulator(ctx, contract, report_rows=REPORT_ROWS if report else 0)
    fold_window(
        acc, store, start, end, by=by, drill=drill, chunksize=chunksize, read_ahead_chunks=read_ahead_chunks,
        day_parts=day_parts,
    )  # fmt: skip
    # The label-free estimate's past errors on this model's earlier windows of the same span (labels
    # in by now): they widen its interval. Only windows that ended before this one starts.
    past = runs.estimate_errors(ctx.version, len(acc.local_days), start) if start is not None else []
    ws = acc.finish(past_errors=past)
    span = (start, end) if by == "served_at" and start is not None and end is not None else acc.served_range
    violations = door_violations(runs, start, end, by=by, served_range=acc.served_range, drill=drill is not None)
    if history is None:
        history = runs.recent_raw_statuses(policy.clear_after, model_version=ctx.version) if record else []
    from monitoring.shadow import compare

    shadow = compare(store.shadow_frame(start, end, by=by), float(ctx.metadata.get("threshold", 0.5)))
    volume, expected = window_volume(ctx, store, ws, violations, start, end, by=by)
    due = expected.get("expected") if expected.get("level_judged") else None  # a lost window is judged, a sample is not
    j = judge(ws, violations, policy, history, shadow=shadow, volume=tuple(volume), expected_rows=due)
    reports: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if reports_dir is not None:
        reports, extra = write_reports(
            j, acc, contract, reports_dir, html=html, reference_frame=reference_frame, window=(start, end), by=by,
            keep=keep_reports,
        )  # fmt: skip
    if expected:
        extra["volume"] = expected
    # Served rows the log store could not hold (service.predlog quarantines them): counted per run,
    # so a poison row is visible next to the verdict instead of vanishing.
    count_quarantined = getattr(store, "count_quarantined", None)
    if callable(count_quarantined) and span is not None:
        extra["log_quarantined"] = count_quarantined(*span)
    run_id = request = hold = None
    if record:
        run_id, request, hold = publish(
            j, ctx=ctx, runs=runs, policy=policy, window=(start, end), by=by, reports=reports, extra=extra,
            request_retrain=request_retrain, drill=drill,
        )  # fmt: skip
    return MonitorResult(
        run_id=run_id,
        window=(start.isoformat() if start else None, end.isoformat() if end else None),
        by=by,
        rows=ws.rows,
        verdict=j.verdict,
        performance=ws.performance,
        reports=reports,
        retrain_request=request,
        retrain_withheld=hold,
    )


class Monitor:
    """Everything one monitor process holds between runs."""

    def __init__(self, settings: Settings, policy_path: Path | None = None) -> None:
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
        self.archive = LogArchive(settings.resolved_archive_dir, self.store)
        # Windows read archived closed days from Parquet and the rest from the log (identical frames).
        self.source = ArchivedLog(self.archive)
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
        self, start: datetime | None, end: datetime | None, *, by: WindowBy = "event_time", html: bool = True, **kw: Any
    ) -> MonitorResult:
        """Judge a window; `kw` goes to `run_window` (store=, history=, request_retrain=)."""
        kw.setdefault("store", self.source)
        kw.setdefault("day_parts", self.settings.archive_day_parts)
        if self.settings.archive_closed_days and kw["store"] is self.source and by == "event_time":
            self.archive_closed_days(start, end)
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
            keep_reports=self.settings.reports_keep,
            **kw,
        )

    def archive_closed_days(self, start: datetime | None = None, end: datetime | None = None) -> list[ArchivedDay]:
        """Archive the closed local event days inside [start, end) that are new or changed: only the
        days this window reads anyway, so a first run over one day of a year-long log writes one day,
        not the year (`driftlight archive` writes them all). A failure is logged: the window is then
        read from the log, as before the archive existed."""
        try:
            inside = [
                d
                for d in self.archive.closed_days()
                if (start is None or self.archive.bounds(d)[0] >= start) and (end is None or self.archive.bounds(d)[1] <= end)
            ]
            days = self.archive.archive(inside)
        except OSError as exc:
            log.error("monitor: archiving closed days to %s failed: %s", self.archive.root, exc)
            return []
        if days:
            log.info("monitor: archived %d closed day(s) to %s", len(days), self.archive.root)
        return days

    def run_days(self, first: date, last: date, *, html: bool = True, by: WindowBy = "event_time") -> MonitorResult:
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
        self.drift_z = Gauge(
            "driftlight_monitor_drift_z",
            "PSI of a column as a z-score against its no-drift null at the window's cadence (3 = warning)",
            ["feature"],
            registry=r,
        )
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
            elif s["signal"] == "psi_vs_null" and s["feature"]:
                self.drift_z.labels(s["feature"]).set(s["value"])
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
