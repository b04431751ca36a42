"""Run a drill against a live service: replay, (labels), monitor exactly that traffic, compare.

The monitor judges the drill's own rows (by their prediction ids, inside the drill's served_at
span), so other traffic hitting the same service does not blur the verdict; door violations are
counted over the same span. Runs are recorded in the run store (so `/status`, the Prometheus
light and the owner's webhook all see the drill) but never request a retrain: a drill is a test
of detection, not of the closed loop. The phases of a drill share their own hysteresis history.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from drills.catalogue import Drill, PhaseResult, check
from drills.replay import replay_frame

if TYPE_CHECKING:
    from core.logstore import LogStore
    from core.runs import RunStore
    from data_contracts.contract import Contract


@dataclass
class DrillResult:
    name: str
    question: str
    response: str
    passed: bool
    model_version: str
    phases: list[PhaseResult]
    timeline: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class OnlyIds:
    """A view of the log store restricted to a set of prediction ids."""

    def __init__(self, store: LogStore, ids: set[str]) -> None:
        self.store, self.ids = store, ids

    def iter_predictions(self, start: Any, end: Any, **kw: Any) -> Any:
        for chunk in self.store.iter_predictions(start, end, **kw):
            yield chunk[chunk["prediction_id"].isin(self.ids)]

    def shadow_frame(self, start: Any, end: Any, **kw: Any) -> pd.DataFrame:
        """A drill's rows are never shadow-scored for the verdict: no comparison."""
        return pd.DataFrame(columns=["probability", "shadow_probability", "shadow_version", "label"])


def control_traffic(contract: Contract, flights: pd.DataFrame, metadata: Any) -> pd.DataFrame:
    """The champion's held-out control days: real traffic its reference profile never saw."""
    from datetime import date

    from data_contracts.windows import on_days, select_window

    fw = metadata["fit_window"]
    fit = select_window(flights, contract, date.fromisoformat(fw["start"]), date.fromisoformat(fw["end"]))
    return on_days(contract, fit, metadata["monitoring"]["control_days"])


def wait_logged(store: LogStore, ids: set[str], labels: int, since: datetime, timeout: float = 60.0) -> tuple[int, int]:
    """Poll the log until every drill row (and label) is stored; returns (rows, labels) seen."""
    t0 = time.monotonic()
    rows = lab = 0
    while time.monotonic() - t0 < timeout:
        rows = lab = 0
        for chunk in store.iter_predictions(since - timedelta(seconds=5), None, by="served_at"):
            m = chunk["prediction_id"].isin(ids)
            rows += int(m.sum())
            lab += int(chunk.loc[m, "label"].notna().sum())
        if rows >= len(ids) and lab >= labels:
            return rows, lab
        time.sleep(0.3)
    return rows, lab


def wait_violations(runs: RunStore, start: datetime, timeout: float = 30.0) -> int:
    """The service stores door violations every few seconds: wait until this span's are in."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        n = sum(runs.violations_between(start, datetime.now(UTC), drill=True).values())
        if n:
            return n
        time.sleep(0.5)
    return 0


def run_drill(
    drill: Drill,
    *,
    monitor: Any,
    http: Any,
    flights: pd.DataFrame,
    rows: int = 2000,
    seed: int = 0,
    echo: Any = print,
) -> DrillResult:
    """Run every phase of `drill` through the API behind `http` and judge it with `monitor`."""
    t_start = time.perf_counter()
    monitor.refresh()
    ctx = monitor.ctx
    base = control_traffic(monitor.contract, flights, ctx.metadata)
    timeline: list[str] = []

    def say(msg: str) -> None:
        line = f"t+{time.perf_counter() - t_start:6.1f}s  {msg}"
        timeline.append(line)
        echo(line)

    say(f"drill {drill.name}: {drill.question}")
    say(f"injects: {drill.injects}; champion v{ctx.version}; {rows} flights per window from its held-out control days")
    history: list[str] = []
    results: list[PhaseResult] = []
    for k, phase in enumerate(drill.phases):
        rng = np.random.default_rng(seed * 7919 + k)
        window = base.sample(min(rows, len(base)), random_state=seed * 7919 + k).sort_values("time_hour").reset_index(drop=True)
        if phase.fault is not None:
            window = phase.fault(window, rng)
        # Start on a fresh second: door violations are stored per second, so this phase's window
        # cannot include the last second of whatever this service refused just before.
        time.sleep(1.02 - time.time() % 1.0)
        t0 = datetime.now(UTC)
        res = replay_frame(
            "",
            window,
            monitor.contract,
            batch_size=250,
            client=http,
            transform=phase.record_fault,
            send_labels=drill.labels,
            drill=drill.name,
        )
        t1 = datetime.now(UTC)
        say(
            f"[{phase.label}] sent {res.sent}: served {res.served}, refused at the door {res.rejected}, "
            f"labels accepted {res.labels_accepted}" + (f"; first refusal: {res.errors[0][:160]}" if res.errors else "")
        )
        ids = set(res.prediction_ids)
        if ids:
            got, lab = wait_logged(monitor.store, ids, res.labels_accepted, t0)
            say(f"[{phase.label}] in the log: {got} rows, {lab} labels")
        if res.rejected:
            n = wait_violations(monitor.runs, t0)
            say(f"[{phase.label}] door violations stored for the span: {n}")
        out = monitor.run(
            t0,
            datetime.now(UTC) + timedelta(seconds=1),
            by="served_at",
            html=False,
            store=OnlyIds(monitor.store, ids),
            history=list(history),
            request_retrain=False,
            drill=drill.name,
        )
        v = out.verdict
        history.append(v.raw_status)
        why = check(phase, v, res.sent, res.rejected, drill.top)
        top = [r.message for r in v.top_reasons(drill.top)]
        held = f" (raw {v.raw_status}, held by hysteresis)" if v.raw_status != v.status else ""
        say(
            f"[{phase.label}] monitor: {v.status.upper()}{held} on {out.rows} rows ({(t1 - t0).total_seconds():.1f} s of traffic)"
        )
        for m in top:
            say(f"[{phase.label}]   - {m}")
        verdict = "MET" if not why else "NOT MET: " + "; ".join(why)
        say(
            f"[{phase.label}] expected {' or '.join(phase.expect)}"
            + (f" with one of {list(phase.signals)}" if phase.signals else "")
            + f": {verdict}"
        )
        results.append(
            PhaseResult(
                phase.label, v.status, v.raw_status, out.rows, res.sent, res.rejected, list(phase.expect), top, not why, why
            )
        )
    passed = all(r.met for r in results)
    say(f"drill {drill.name}: {'PASSED' if passed else 'FAILED'}. Response: {drill.response}")
    return DrillResult(
        drill.name,
        drill.question,
        drill.response,
        passed,
        ctx.version,
        results,
        timeline,
        round(time.perf_counter() - t_start, 1),
    )
