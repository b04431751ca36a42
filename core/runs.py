"""Where monitor runs and retrain requests are kept: two small tables beside the prediction log.

Each monitor run stores its window, row counts, every signal, the verdict and its reasons, and the
paths of its reports, so `GET /status` on the service (any worker) and the next run's hysteresis
read the same history. A red verdict records a retrain request that the closed-loop job consumes.
Same SQLAlchemy URL as the log (SQLite by default, PostgreSQL in compose).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

monitor_runs = sa.Table(
    "monitor_runs",
    metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("finished_at", sa.DateTime, nullable=False, index=True),
    sa.Column("window_start", sa.DateTime),
    sa.Column("window_end", sa.DateTime),
    sa.Column("window_by", sa.String(16)),
    sa.Column("model_version", sa.String(32)),
    sa.Column("rows", sa.Integer),
    sa.Column("labelled", sa.Integer),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("raw_status", sa.String(20), nullable=False),
    sa.Column("reasons", sa.Text),  # JSON list
    sa.Column("summary", sa.Text),  # JSON object: signals, performance, report paths
    sa.Column("drill", sa.String(64)),  # the drill's name for a drill's run; NULL for the real light
)

retrain_requests = sa.Table(
    "retrain_requests",
    metadata,
    sa.Column("request_id", sa.String(32), primary_key=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("run_id", sa.String(32)),
    sa.Column("model_version", sa.String(32)),
    sa.Column("reasons", sa.Text),
    sa.Column("state", sa.String(16), nullable=False),  # pending | running | done | refused | failed | cooldown
)


# Every change (or refused change) of the served model, with its evidence: promotions by the gate,
# refusals and their reasons, forced promotions, rollbacks, failed retrains. MLflow holds the same
# evidence on the challenger's run; this table is what /status and the year replay read.
model_events = sa.Table(
    "model_events",
    metadata,
    sa.Column("event_id", sa.String(32), primary_key=True),
    sa.Column("at", sa.DateTime, nullable=False, index=True),  # the caller's clock (event time in a replay)
    sa.Column("recorded_at", sa.DateTime, nullable=False),  # wall clock
    sa.Column("action", sa.String(24), nullable=False),  # promoted | refused | forced | rollback | failed | cooldown
    sa.Column("model_name", sa.String(128)),
    sa.Column("from_version", sa.String(32)),
    sa.Column("to_version", sa.String(32)),
    sa.Column("request_id", sa.String(32)),
    sa.Column("reasons", sa.Text),  # JSON list of strings
    sa.Column("evidence", sa.Text),  # JSON object: metrics of both models, windows, checks
)

# Shadow scores: the `shadow_alias` model's probability for a served prediction (never returned).
shadow_predictions = sa.Table(
    "shadow_predictions",
    metadata,
    sa.Column("prediction_id", sa.String(64), primary_key=True),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("scored_at", sa.DateTime, nullable=False),
)


def _violations_table(name: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("bucket_start", sa.DateTime, primary_key=True),  # the second (UTC) they were seen in
        sa.Column("field", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )


# Refusals at the door of real traffic, and of drill traffic (X-Driftlight-Drill), kept apart.
contract_violations = _violations_table("contract_violations")
drill_violations = _violations_table("drill_violations")


def to_utc_naive_second(ts: datetime) -> datetime:
    """`ts` as naive UTC, cut to the second (the violation buckets are per second)."""
    return (ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts).replace(microsecond=0)


def is_drill(run: Mapping[str, Any]) -> bool:
    """True when a monitor run judged a drill's traffic (a `drill` column or summary field, if set)."""
    return bool(run.get("drill") or (run.get("summary") or {}).get("drill"))


def _decoded_run(row: sa.RowMapping) -> dict[str, Any]:
    """A `monitor_runs` row with its JSON columns (reasons, summary) decoded."""
    d = dict(row)
    d["reasons"] = json.loads(d["reasons"] or "[]")
    d["summary"] = json.loads(d["summary"] or "{}")
    return d


def _naive_utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


class RunStore:
    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        self._ready = False

    def _ensure(self) -> None:
        if not self._ready:
            metadata.create_all(self.engine, checkfirst=True)
            self._migrate()
            self._ready = True

    def _migrate(self) -> None:
        """Columns added since a store was created (additive, nullable): added in place."""
        have = {c["name"] for c in sa.inspect(self.engine).get_columns(monitor_runs.name)}
        if "drill" not in have:
            with self.engine.begin() as c:
                c.execute(sa.text(f"ALTER TABLE {monitor_runs.name} ADD COLUMN drill VARCHAR(64)"))

    def record_run(
        self,
        *,
        window_start: datetime | None,
        window_end: datetime | None,
        window_by: str,
        model_version: str | None,
        rows: int,
        labelled: int,
        status: str,
        raw_status: str,
        reasons: list[Mapping[str, Any]],
        summary: Mapping[str, Any],
        drill: str | None = None,
    ) -> str:
        """Store one monitor run; `drill` names the drill whose traffic it judged (None: the real light)."""
        self._ensure()
        run_id = uuid.uuid4().hex
        with self.engine.begin() as c:
            c.execute(
                monitor_runs.insert().values(
                    run_id=run_id,
                    finished_at=_naive_utc(datetime.now(UTC)),
                    window_start=_naive_utc(window_start),
                    window_end=_naive_utc(window_end),
                    window_by=window_by,
                    model_version=model_version,
                    rows=rows,
                    labelled=labelled,
                    status=status,
                    raw_status=raw_status,
                    reasons=json.dumps(list(reasons), default=str),
                    summary=json.dumps(summary, default=str),
                    drill=drill,
                )
            )
        return run_id

    def recent_raw_statuses(self, n: int = 10, model_version: str | None = None) -> list[str]:
        """Raw statuses of the last `n` runs, oldest first (the policy's hysteresis history).

        With `model_version`, only that model's runs: a newly promoted model is not held red by the
        windows that condemned its predecessor. Drill runs never count: a red drill must not hold
        the next real window red.
        """
        self._ensure()
        q = (
            sa.select(monitor_runs.c.raw_status)
            .where(monitor_runs.c.drill.is_(None))
            .order_by(monitor_runs.c.finished_at.desc())
            .limit(n)
        )
        if model_version is not None:
            q = q.where(monitor_runs.c.model_version == model_version)
        with self.engine.connect() as c:
            rows = c.execute(q).all()
        return [r[0] for r in reversed(rows)]

    def estimate_errors(
        self,
        model_version: str | None,
        span_days: int,
        before: datetime,
        *,
        min_label_coverage: float = 0.9,
        limit: int = 52,
    ) -> list[float]:
        """The label-free estimate's errors (uncorrected estimate - realised ROC AUC) on earlier
        windows of `model_version` spanning `span_days` local days, oldest first: the evidence the
        monitor corrects the estimate and widens its interval with (monitoring.performance:
        estimate_correction, corrected_errors, online_estimate_interval). Runs recorded before the
        correction existed have only `error`, which was the uncorrected estimate's.

        Only windows that ended at or before `before` (the start of the window about to be judged:
        never the window itself, never a later one), judged for the real light (no drill), whose
        labels were in (`min_label_coverage` of the rows); a window judged several times counts once,
        by its latest run with labels in. The newest `limit` are kept."""
        self._ensure()
        q = (
            sa.select(monitor_runs.c.window_start, monitor_runs.c.window_end, monitor_runs.c.summary)
            .where(monitor_runs.c.drill.is_(None))
            .where(monitor_runs.c.window_end.is_not(None))
            .where(monitor_runs.c.window_end <= _naive_utc(before))
            .order_by(monitor_runs.c.finished_at)
        )
        if model_version is not None:
            q = q.where(monitor_runs.c.model_version == model_version)
        with self.engine.connect() as c:
            rows = c.execute(q).all()
        by_window: dict[tuple[datetime | None, datetime], float] = {}
        for start, end, summary in rows:  # oldest run first: a later run of a window replaces it
            est = (json.loads(summary or "{}").get("estimate")) or {}
            err = est.get("uncorrected_error", est.get("error"))  # runs before the correction: the same
            if (
                isinstance(err, int | float)
                and err == err  # not NaN: the window's labels were in when it was judged
                and est.get("span_days") == span_days
                and float(est.get("label_coverage") or 0.0) >= min_label_coverage
            ):
                by_window[(start, end)] = float(err)
        ordered = sorted(by_window.items(), key=lambda kv: kv[0][1])
        return [e for _, e in ordered][-limit:]

    def latest(self, *, drill: bool = False) -> dict[str, Any] | None:
        """The newest run of the real light (or, with `drill=True`, the newest drill run)."""
        self._ensure()
        which = monitor_runs.c.drill.is_not(None) if drill else monitor_runs.c.drill.is_(None)
        q = sa.select(monitor_runs).where(which).order_by(monitor_runs.c.finished_at.desc()).limit(1)
        with self.engine.connect() as c:
            row = c.execute(q).mappings().first()
        if row is None:
            return None
        return _decoded_run(row)

    def history(self, limit: int = 50, *, newest_first: bool = True) -> list[dict[str, Any]]:
        """The last `limit` monitor runs (newest first unless `newest_first=False`), JSON columns
        decoded: what the page and `driftlight runs` show. A run may carry a `drill` flag (in its
        summary or a column): read it with `is_drill(run)`."""
        self._ensure()
        q = sa.select(monitor_runs).order_by(monitor_runs.c.finished_at.desc()).limit(max(1, int(limit)))
        with self.engine.connect() as c:
            rows = c.execute(q).mappings().all()
        out = [_decoded_run(r) for r in rows]
        return out if newest_first else out[::-1]

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One monitor run by id, JSON columns decoded (None if there is no such run)."""
        self._ensure()
        with self.engine.connect() as c:
            row = c.execute(sa.select(monitor_runs).where(monitor_runs.c.run_id == run_id)).mappings().first()
        if row is None:
            return None
        return _decoded_run(row)

    def fallback_spans(self, gap_s: float = 300.0, max_rows: int = 50_000, since: datetime | None = None) -> list[dict[str, Any]]:
        """When the fallback served: spans of `served_at` whose logged rows carry model_version
        "fallback" (rows closer than `gap_s` seconds join one span), oldest first, each with
        `start`, `end` and `rows`, over the newest `max_rows` such rows served since `since`
        (bounds on the cost: model_version has no index, served_at has). Read from the prediction
        log, which shares this store's URL; an empty list when there is no log table yet."""
        insp = sa.inspect(self.engine)
        if not insp.has_table("predictions"):
            return []
        t = sa.table("predictions", sa.column("served_at", sa.DateTime), sa.column("model_version", sa.String))
        q = sa.select(t.c.served_at).where(t.c.model_version == "fallback").order_by(t.c.served_at.desc()).limit(max_rows)
        if since is not None:
            q = q.where(t.c.served_at >= _naive_utc(since))
        spans: list[dict[str, Any]] = []
        with self.engine.connect() as c:
            stamps = [ts for (ts,) in c.execute(q)]
            for ts in reversed(stamps):
                if spans and (ts - spans[-1]["end"]).total_seconds() <= gap_s:
                    spans[-1]["end"] = ts
                    spans[-1]["rows"] += 1
                else:
                    spans.append({"start": ts, "end": ts, "rows": 1})
        return spans

    def request_retrain(self, run_id: str, model_version: str | None, reasons: list[Mapping[str, Any]]) -> str:
        self._ensure()
        rid = uuid.uuid4().hex
        with self.engine.begin() as c:
            c.execute(
                retrain_requests.insert().values(
                    request_id=rid,
                    created_at=_naive_utc(datetime.now(UTC)),
                    run_id=run_id,
                    model_version=model_version,
                    reasons=json.dumps(list(reasons), default=str),
                    state="pending",
                )
            )
        return rid

    def pending_retrains(self) -> list[dict[str, Any]]:
        self._ensure()
        with self.engine.connect() as c:
            rows = (
                c.execute(
                    sa.select(retrain_requests)
                    .where(retrain_requests.c.state == "pending")
                    .order_by(retrain_requests.c.created_at)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    def set_retrain_state(self, request_ids: list[str], state: str) -> None:
        """pending -> running -> done | refused | failed | cooldown."""
        if not request_ids:
            return
        self._ensure()
        with self.engine.begin() as c:
            c.execute(retrain_requests.update().where(retrain_requests.c.request_id.in_(request_ids)).values(state=state))

    def retrain_requests(self) -> list[dict[str, Any]]:
        self._ensure()
        with self.engine.connect() as c:
            rows = c.execute(sa.select(retrain_requests).order_by(retrain_requests.c.created_at)).mappings().all()
        return [dict(r) for r in rows]

    def record_event(
        self,
        action: str,
        *,
        model_name: str,
        from_version: str | None,
        to_version: str | None,
        reasons: list[str],
        evidence: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        at: datetime | None = None,
    ) -> str:
        self._ensure()
        eid = uuid.uuid4().hex
        now = _naive_utc(datetime.now(UTC))
        with self.engine.begin() as c:
            c.execute(
                model_events.insert().values(
                    event_id=eid,
                    at=_naive_utc(at) or now,
                    recorded_at=now,
                    action=action,
                    model_name=model_name,
                    from_version=from_version,
                    to_version=to_version,
                    request_id=request_id,
                    reasons=json.dumps(list(reasons)),
                    evidence=json.dumps(dict(evidence or {}), default=str),
                )
            )
        return eid

    def events(self, actions: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """Model events, oldest first (by the caller's clock), JSON columns decoded."""
        self._ensure()
        q = sa.select(model_events).order_by(model_events.c.at, model_events.c.recorded_at)
        if actions:
            q = q.where(model_events.c.action.in_(actions))
        with self.engine.connect() as c:
            rows = c.execute(q).mappings().all()
        out = []
        for r in rows:
            d = dict(r)
            d["reasons"] = json.loads(d["reasons"] or "[]")
            d["evidence"] = json.loads(d["evidence"] or "{}")
            out.append(d)
        return out

    def add_shadow_scores(self, rows: list[Mapping[str, Any]]) -> None:
        """Store shadow scores (idempotent: a retried batch does not duplicate)."""
        if not rows:
            return
        self._ensure()
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        now = _naive_utc(datetime.now(UTC))
        values = [{**r, "scored_at": now} for r in rows]
        with self.engine.begin() as c:
            c.execute(insert(shadow_predictions).on_conflict_do_nothing(index_elements=["prediction_id"]), values)

    def shadow_scores(self, prediction_ids: list[str]) -> dict[str, tuple[str, float]]:
        """prediction_id -> (shadow model version, probability) for the ids that have one."""
        if not prediction_ids:
            return {}
        self._ensure()
        t = shadow_predictions
        out: dict[str, tuple[str, float]] = {}
        with self.engine.connect() as c:
            for i in range(0, len(prediction_ids), 5000):
                part = prediction_ids[i : i + 5000]
                for pid, ver, p in c.execute(
                    sa.select(t.c.prediction_id, t.c.model_version, t.c.probability).where(t.c.prediction_id.in_(part))
                ):
                    out[pid] = (ver, float(p))
        return out

    def add_violations(self, counts: Mapping[tuple[datetime, str, str], int], *, drill: bool = False) -> None:
        """Add per-second violation counts (upsert: count = count + new); drill traffic's apart."""
        if not counts:
            return
        self._ensure()
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        rows = [{"bucket_start": _naive_utc(b), "field": f, "kind": k, "count": n} for (b, f, k), n in counts.items()]
        table = drill_violations if drill else contract_violations
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=["bucket_start", "field", "kind"],
            set_={"count": table.c["count"] + stmt.excluded["count"]},
        )
        with self.engine.begin() as c:
            c.execute(stmt, rows)

    def violations_between(self, start: datetime, end: datetime, *, drill: bool = False) -> dict[tuple[str, str], int]:
        """Violations seen at the door in [start, end], by (field, kind), of real (or drill) traffic."""
        self._ensure()
        t = drill_violations if drill else contract_violations
        start_s = to_utc_naive_second(start)
        q = (
            sa.select(t.c.field, t.c.kind, sa.func.sum(t.c["count"]))
            .where(t.c.bucket_start >= start_s, t.c.bucket_start <= _naive_utc(end))
            .group_by(t.c.field, t.c.kind)
        )
        with self.engine.connect() as c:
            return {(f, k): int(n) for f, k, n in c.execute(q).all()}

    def dispose(self) -> None:
        self.engine.dispose()
