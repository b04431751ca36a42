"""The fleet's retrain queue: red models waiting for a retrain, ranked, with a budget per cycle.

After a fleet monitor run, `sync` (pure) turns its verdicts into queue changes:

- a **red** model is queued (or stays queued: one row per model, never duplicated), ranked by
  expected gain x traffic = the verdict's `impact` (window rows x estimated ROC AUC loss against
  the model's validation AUC: realised when labels have arrived, the label-free estimate otherwise);
- a **green** model leaves the queue;
- a **yellow** model notifies its owner (a log line; the policy's webhook when one is set) and never
  retrains; if it was queued it leaves the queue;
- a `not_enough_data` model keeps its place (no new evidence either way).

A cycle (training.fleet_retrain.run_cycle) takes the K highest-ranked queued models (K = the budget),
retrains each through the single model's gate and promotion, and records every decision here: the
queue row's state (queued / retraining / promoted / refused) and reason, and one `fleet_retrain_cycles`
row with all of the cycle's decisions. Models over budget stay queued with the reason and carry to
the next cycle. A model decided on one fleet run is not retried on the same run's evidence.

Two cycles may run at once (`driftlight fleet retrain` from cron while an operator runs
`fleet monitor --retrain`): each model's retrain holds a row of `fleet_retrain_locks` (primary key
fleet + model: the insert is atomic in SQLite and PostgreSQL alike) from before its fit until its
decision is recorded. A cycle that cannot take the lock leaves the model to the cycle that holds it
(decision `locked`, the queue row untouched). A lock older than `LOCK_LEASE` (a killed cycle's) is
taken over.

The tables live in the run database beside `fleet_runs` (the log store's URL).
`queue_summary(url, fleet)` is the JSON document `driftlight fleet status --json`, `GET /fleet` and
the metrics exporter read (shape documented in docs/fleet.md, "Retrain queue").
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    insert,
    inspect,
    select,
)
from sqlalchemy.exc import DatabaseError, IntegrityError

from monitoring.policy import broken_data

log = logging.getLogger("driftlight.fleet")

QUEUED, RETRAINING, PROMOTED, REFUSED = "queued", "retraining", "promoted", "refused"
LOCK_LEASE = timedelta(hours=2)  # a segment retrain takes minutes: an older lock is a killed cycle's
STATES = (QUEUED, RETRAINING, PROMOTED, REFUSED)

_meta = MetaData()
queue_table = Table(
    "fleet_retrain_queue",
    _meta,
    Column("fleet", String(128), primary_key=True),
    Column("model_name", String(256), primary_key=True),
    Column("segment", String(128), nullable=False),
    Column("colour", String(20), nullable=False),  # the colour of the latest fleet run that saw it
    Column("version", String(32)),  # the champion that run judged
    Column("auc_loss", Float, nullable=False),
    Column("traffic", Integer, nullable=False),
    Column("score", Float, nullable=False),  # expected gain x traffic (= the verdict's impact)
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("run_id", String(36)),  # the fleet run that last updated the row
    Column("window_end", String(32)),
    Column("decided_run", String(36)),  # the fleet run on whose evidence the last retrain was decided
    Column("challenger_version", String(32)),
    Column("attempts", Integer, nullable=False),
    Column("enqueued_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)
cycles_table = Table(
    "fleet_retrain_cycles",
    _meta,
    Column("cycle_id", String(36), primary_key=True),
    Column("fleet", String(128), nullable=False),
    Column("at", DateTime, nullable=False),
    Column("run_id", String(36)),
    Column("window_end", String(32)),
    Column("budget", Integer, nullable=False),
    Column("decisions", Text, nullable=False),  # JSON list
)
locks_table = Table(
    "fleet_retrain_locks",
    _meta,
    Column("fleet", String(128), primary_key=True),
    Column("model_name", String(256), primary_key=True),
    Column("holder", String(64), nullable=False),  # the cycle that holds it
    Column("acquired_at", DateTime, nullable=False),
)


@dataclass(frozen=True)
class QueueItem:
    """One model's row in the queue."""

    model_name: str
    segment: str
    colour: str
    version: str | None
    auc_loss: float
    traffic: int
    score: float
    state: str
    reason: str
    run_id: str | None = None
    window_end: str | None = None
    decided_run: str | None = None
    challenger_version: str | None = None
    attempts: int = 0

    def due(self, run_id: str | None) -> bool:
        """May a cycle retrain it now? Queued (or left `retraining` by a killed cycle), and not
        already decided on this fleet run's evidence."""
        return self.state in (QUEUED, RETRAINING) and (run_id is None or self.decided_run != run_id)


@dataclass(frozen=True)
class Decision:
    """What a cycle did with one model (the JSON of `last_cycle.decisions`)."""

    model_name: str
    segment: str
    action: str  # queued | left | notified | withheld | retraining | promoted | refused | over_budget | locked
    reason: str
    score: float = 0.0
    champion_version: str | None = None
    challenger_version: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rank(items: Iterable[QueueItem]) -> list[QueueItem]:
    """Highest expected gain x traffic first; ties by the larger AUC loss, then by name (stable)."""
    return sorted(items, key=lambda i: (-i.score, -i.auc_loss, i.model_name))


def sync(
    current: Mapping[str, QueueItem],
    verdicts: Sequence[Mapping[str, Any]],
    run_id: str | None,
    window_end: str | None,
    *,
    retrain_when_data_broken: bool = False,
) -> tuple[dict[str, QueueItem], list[Decision]]:
    """Pure: (the queue after a fleet run's verdicts, the decisions that made it).

    `current`: model name -> its queue row; `verdicts`: the fleet run's verdicts (as stored). A model
    red on broken data is not queued (it leaves the queue if it was there): its owner is paged, and
    the feed is fixed before any retrain, as for the single model (monitoring.policy.retrain_hold;
    `retrain_when_data_broken` restores queueing it).
    """
    out = dict(current)
    decisions: list[Decision] = []
    for v in verdicts:
        name, status = str(v["name"]), str(v["status"])
        old = out.get(name)
        score = float(v.get("impact") or 0.0)
        broken = broken_data(v.get("reasons") or []) if status == "red" and not retrain_when_data_broken else []
        if broken:
            if old is not None:
                del out[name]
            why = f"red on broken data ({', '.join(broken)}): the owner is paged; fix the feed, then retrain"
            decisions.append(Decision(name, str(v["segment"]), "withheld", why, score))  # paged each cycle, as yellow is notified
        elif status == "red":
            top = (v.get("reasons") or [{}])[0].get("message", "red")
            fresh = QueueItem(
                name, str(v["segment"]), "red", v.get("version"), float(v.get("auc_loss") or 0.0), int(v.get("rows") or 0),
                score, QUEUED, f"red: {top}", run_id, window_end,
            )  # fmt: skip
            if old is None:
                out[name] = fresh
                decisions.append(Decision(name, fresh.segment, "queued", fresh.reason, score))
            elif old.run_id != run_id:  # new evidence: refresh the rank; a decided model is due again
                out[name] = replace(
                    fresh, decided_run=old.decided_run, challenger_version=old.challenger_version, attempts=old.attempts
                )
                decisions.append(Decision(name, fresh.segment, "queued", fresh.reason + " (still red)", score))
        elif status in ("green", "yellow") and old is not None:
            del out[name]
            why = "turned green" if status == "green" else "now yellow: the owner is notified, yellow never retrains"
            decisions.append(Decision(name, old.segment, "left", why, old.score))
        if status == "yellow":
            top = (v.get("reasons") or [{}])[0].get("message", "yellow")
            decisions.append(Decision(name, str(v["segment"]), "notified", f"yellow: {top}", score))
    return out, decisions


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def create_table(engine: Engine, table: Table) -> None:
    """Create `table` unless it exists, when another process (a second retrain cycle starting at the
    same moment) may be creating it too: a create that loses that race is fine once the table is
    there. (Creating the three tables in one `create_all`, retried once, still failed about one
    start in three with two threads on a fresh SQLite file: "table fleet_retrain_cycles already
    exists", the retry losing the race for the next table.)"""
    try:
        table.create(engine, checkfirst=True)
    except DatabaseError:
        if not inspect(engine).has_table(table.name):
            raise


class QueueStore:
    """The queue and its cycles in the run database (the same URL as `FleetRunStore`)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        for table in (queue_table, cycles_table, locks_table):
            create_table(self.engine, table)

    def items(self, fleet: str) -> dict[str, QueueItem]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(queue_table).where(queue_table.c.fleet == fleet)).mappings().all()
        fields = QueueItem.__dataclass_fields__
        return {r["model_name"]: QueueItem(**{k: r[k] for k in fields}) for r in rows}

    def save(self, fleet: str, items: Mapping[str, QueueItem]) -> None:
        """Replace the fleet's queue by `items` (one transaction; enqueued_at kept for rows that stay)."""
        now = _now()
        with self.engine.begin() as conn:
            since = {
                r.model_name: r.enqueued_at
                for r in conn.execute(
                    select(queue_table.c.model_name, queue_table.c.enqueued_at).where(queue_table.c.fleet == fleet)
                )
            }
            conn.execute(delete(queue_table).where(queue_table.c.fleet == fleet))
            if items:
                conn.execute(
                    insert(queue_table),
                    [
                        {**asdict(i), "fleet": fleet, "enqueued_at": since.get(n, now), "updated_at": now}
                        for n, i in items.items()
                    ],
                )

    def put(self, fleet: str, item: QueueItem) -> None:
        """Update one row (a state change during a cycle), in one transaction that touches no other
        row: a concurrent cycle's changes to other models are not written over."""
        now = _now()
        key = (queue_table.c.fleet == fleet) & (queue_table.c.model_name == item.model_name)
        with self.engine.begin() as conn:
            since = conn.execute(select(queue_table.c.enqueued_at).where(key)).scalar_one_or_none()
            conn.execute(delete(queue_table).where(key))
            conn.execute(insert(queue_table).values(**asdict(item), fleet=fleet, enqueued_at=since or now, updated_at=now))

    def lock(self, fleet: str, model_name: str, holder: str, *, lease: timedelta = LOCK_LEASE) -> str | None:
        """Take the retrain lock of one model for `holder` (a cycle id). None when taken; else the
        holder of the lock it had to take over (a lease older than `lease`), or `holder` itself."""
        now = _now()
        key = (locks_table.c.fleet == fleet) & (locks_table.c.model_name == model_name)
        with self.engine.begin() as conn:  # an expired lease is removed in the same transaction as the insert
            stale = conn.execute(
                select(locks_table.c.holder).where(key & (locks_table.c.acquired_at < now - lease))
            ).scalar_one_or_none()
            if stale is not None:
                conn.execute(delete(locks_table).where(key & (locks_table.c.holder == stale)))
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(locks_table).values(fleet=fleet, model_name=model_name, holder=holder, acquired_at=now))
        except IntegrityError:
            return None
        return stale or holder

    def unlock(self, fleet: str, model_name: str, holder: str) -> None:
        """Release the lock if `holder` still holds it (never another cycle's)."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(locks_table).where(
                    (locks_table.c.fleet == fleet) & (locks_table.c.model_name == model_name) & (locks_table.c.holder == holder)
                )
            )

    def locks(self, fleet: str) -> dict[str, str]:
        """{model: holder} of the retrain locks held now."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(locks_table.c.model_name, locks_table.c.holder).where(locks_table.c.fleet == fleet))
            return {r[0]: r[1] for r in rows}

    def record_cycle(
        self, fleet: str, run_id: str | None, window_end: str | None, budget: int, decisions: Sequence[Decision],
        at: datetime | None = None,
    ) -> str:  # fmt: skip
        cycle_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(
                insert(cycles_table).values(
                    cycle_id=cycle_id, fleet=fleet, at=(at or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None),
                    run_id=run_id, window_end=window_end, budget=budget,
                    decisions=json.dumps([d.as_dict() for d in decisions], default=str),
                )
            )  # fmt: skip
        return cycle_id

    def cycles(self, fleet: str, limit: int = 1) -> list[dict[str, Any]]:
        """The latest `limit` cycles, newest first."""
        stmt = select(cycles_table).where(cycles_table.c.fleet == fleet).order_by(cycles_table.c.at.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [
            {
                "cycle_id": r["cycle_id"],
                "at": r["at"].replace(tzinfo=UTC).isoformat(timespec="seconds"),
                "run_id": r["run_id"],
                "window_end": r["window_end"],
                "budget": r["budget"],
                "decisions": json.loads(r["decisions"]),
            }
            for r in rows
        ]

    def summary(self, fleet: str) -> dict[str, Any]:
        """The queue as JSON: ranked items, counts by state, the last cycle's decisions."""
        ranked = rank(self.items(fleet).values())
        states = dict.fromkeys(STATES, 0)
        for i in ranked:
            states[i.state] = states.get(i.state, 0) + 1
        last = self.cycles(fleet, 1)
        return {
            "fleet": fleet,
            "items": [
                {
                    "rank": n,
                    "model": i.model_name,
                    "segment": i.segment,
                    "colour": i.colour,
                    "version": i.version,
                    "auc_loss": i.auc_loss,
                    "traffic": i.traffic,
                    "gain_x_traffic": i.score,
                    "state": i.state,
                    "reason": i.reason,
                    "attempts": i.attempts,
                    "challenger_version": i.challenger_version,
                    "window_end": i.window_end,
                }
                for n, i in enumerate(ranked, 1)
            ],
            "states": states,
            "last_cycle": last[0] if last else None,
        }

    def dispose(self) -> None:
        self.engine.dispose()


def queue_summary(url: str, fleet: str) -> dict[str, Any]:
    """The retrain queue of `fleet` in the run database at `url` (see `QueueStore.summary`)."""
    store = QueueStore(url)
    try:
        return store.summary(fleet)
    finally:
        store.dispose()


__all__ = [
    "LOCK_LEASE",
    "PROMOTED",
    "QUEUED",
    "REFUSED",
    "RETRAINING",
    "Decision",
    "QueueItem",
    "QueueStore",
    "queue_summary",
    "rank",
    "sync",
]
