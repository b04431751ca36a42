"""One fleet retrain cycle: the queue's K best red models, each through the single model's gate.

Per model (`retrain_segment`), the single model's path (training.retrain) on the segment's rows:

    |<------------- train_days ------------->|<-- holdout_days -->|
    |<--- fit --->|<-- validation (7 days) -->|                    |
                                                                  end (latest labelled day)

- windows: 28 + 7 days by default; a segment whose held-back days hold fewer than `min_holdout`
  labelled rows, or whose training days fewer than `min_labels`, widens them (doubling, up to 28
  and 84 days: `widen_windows`), so a small route retrains on a longer span instead of never;
- rows: the prediction log's labelled rows of the segment (the route's traffic, whichever model
  served it; for the global model every route without its own champion), drill rows excluded
  (`training.promote.labelled_log`, the same reader the single model uses);
- fit: the segment's original training rows (Jan-Mar, `with_original`, as the single model) plus
  `fit`; validation: the last 7 days before the holdout; fitted by the fleet's own
  `training.fleet.fit_segment` (the same shared feature code with the segment's tree size, the
  frozen profile and the fleet null the fleet monitor needs);
- gate: `training.gate.run_gate` on the held-back days, challenger vs champion, unchanged;
- promotion: `training.promote.record_decision` + `set_champion` (the segment's alias moves last;
  the decision and its evidence go to MLflow and to `model_events`, as for the single model).

Refusals, each with its reason: over budget (stays queued), not enough labelled rows (to fit or to
judge), drill rows only, a fit the fleet would not train (one class in validation...), the contract
broken, the challenger lost the gate. A crash leaves the champion alias untouched and the model
refused with the error.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.fleet import champion_versions, segment_of_model
from core.fleet_queue import PROMOTED, QUEUED, REFUSED, RETRAINING, Decision, QueueStore, rank, sync
from core.ids import drill_mask
from core.monitor_job import notify_yellow
from data_contracts.batch import ContractViolation
from data_contracts.contract import Contract
from data_contracts.fleet import GLOBAL, FleetSpec
from data_contracts.windows import local_dates, select_window, window_bounds
from training.fleet import fit_segment, segments_of
from training.gate import GateConfig, run_gate
from training.promote import CHALLENGER, labelled_log, latest_labelled_day, record_decision, set_champion
from training.retrain import RetrainConfig
from training.train import check_contract, labelled

if TYPE_CHECKING:
    from core.logstore import LogStore
    from core.registry import Registry
    from core.runs import RunStore
    from core.settings import Settings

log = logging.getLogger("driftlight.fleet")


@dataclass(frozen=True)
class FleetRetrainConfig:
    budget: int = 3
    train_days: int = 28
    holdout_days: int = 7
    min_labels: int = 300  # labelled fit + validation rows of the segment
    min_holdout: int = 100  # labelled rows of the held-back days
    # A small route's 28 + 7 days rarely hold those rows: its windows widen (doubling) up to these
    # spans until they do, as the fleet monitor judges a small route on a longer span.
    max_train_days: int = 84
    max_holdout_days: int = 28
    with_original: bool = True
    seed: int = 0
    end: date | None = None  # last labelled local day; default the latest in the log

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> FleetRetrainConfig:
        base = cls(
            budget=settings.fleet_retrain_budget,
            train_days=settings.retrain_train_days,
            holdout_days=settings.retrain_holdout_days,
            min_labels=settings.fleet_retrain_min_labels,
            min_holdout=settings.fleet_retrain_min_holdout,
            with_original=settings.retrain_with_original,
        )
        return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def spans(base: int, most: int) -> list[int]:
    """`base`, doubling, up to `most` (inclusive): the window lengths a small segment tries."""
    out = [base]
    while out[-1] < most:
        out.append(min(out[-1] * 2, most))
    return out


def widen_windows(config: FleetRetrainConfig, end: date, per_day: Mapping[date, int]) -> tuple[int, int]:
    """(holdout_days, train_days): the shortest held-back span holding `min_holdout` labelled rows,
    then the shortest training span before it holding `min_labels` (each the longest tried when
    none does; the refusal then names it). `per_day`: the segment's labelled rows per local day."""

    def rows(lo: date, hi: date) -> int:
        return sum(n for d, n in per_day.items() if lo <= d <= hi)

    def window(train_days: int, holdout_days: int, part: str) -> tuple[date, date]:
        return RetrainConfig(train_days=train_days, holdout_days=holdout_days).windows(end)[part]

    hold = spans(config.holdout_days, max(config.max_holdout_days, config.holdout_days))
    holdout_days = next((h for h in hold if rows(*window(config.train_days, h, "holdout")) >= config.min_holdout), hold[-1])
    train = spans(config.train_days, max(config.max_train_days, config.train_days))
    train_days = next((t for t in train if rows(*window(t, holdout_days, "train")) >= config.min_labels), train[-1])
    return holdout_days, train_days


@dataclass(frozen=True)
class SegmentRetrain:
    model_name: str
    status: str  # promoted | refused
    reasons: list[str]
    champion_version: str | None = None
    challenger_version: str | None = None
    rows: dict[str, int] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    failed: bool = False  # refused because the retrain crashed (not the gate's or the data's verdict)

    def holdout_auc(self, side: str) -> float:
        return float(((self.evidence.get(side) or {}).get("metrics") or {}).get("roc_auc", float("nan")))


def _segment_mask(spec: FleetSpec, frame: pd.DataFrame, segment: str, own: set[str]) -> pd.Series:
    seg = segments_of(spec, frame)
    return ~seg.isin(own) if segment == GLOBAL else seg == segment


def _drill_labelled(
    store: LogStore, contract: Contract, spec: FleetSpec, segment: str, own: set[str], first: date, last: date
) -> int:
    """Labelled drill rows of the segment in the window (why a segment with traffic has no labels)."""
    lo, hi = window_bounds(first, last, contract.timezone)
    n = 0
    for chunk in store.iter_predictions(lo, hi, by="event_time"):
        chunk = chunk[chunk["label"].notna().to_numpy() & drill_mask(chunk["prediction_id"]).to_numpy()]
        if len(chunk):
            n += int(_segment_mask(spec, chunk, segment, own).sum())
    return n


def retrain_segment(
    contract: Contract,
    registry: Registry,
    store: LogStore,
    runs: RunStore,
    spec: FleetSpec,
    config: FleetRetrainConfig,
    gate: GateConfig,
    *,
    model_name: str,
    original: pd.DataFrame | None = None,
    at: datetime | None = None,
    echo: Callable[[str], None] = lambda m: None,
) -> SegmentRetrain:
    """Fit a challenger for one fleet model on its segment's recent labelled rows, gate it against
    the champion on the held-back days, promote it if it passes. `original`: labelled Jan-Mar
    flights (all routes; loaded when None and `with_original`)."""
    t0 = time.perf_counter()
    segment = segment_of_model(spec, model_name)
    champion = registry.alias_version(model_name, spec.alias)
    own = {segment_of_model(spec, n) for n in champion_versions(registry, spec) if n != spec.global_model}

    def refuse(reasons: list[str], **kw: Any) -> SegmentRetrain:
        runs.record_event(
            "refused", model_name=model_name, from_version=champion, to_version=kw.get("challenger_version"),
            reasons=reasons, evidence=kw.get("evidence"), at=at,
        )  # fmt: skip
        echo(f"{model_name}: refused: " + "; ".join(reasons))
        return SegmentRetrain(model_name, REFUSED, reasons, champion, seconds=round(time.perf_counter() - t0, 1), **kw)

    if champion is None:
        return refuse([f"no {spec.alias} alias on {model_name}: nothing to retrain"])
    end = config.end or latest_labelled_day(store, contract)
    if end is None:
        return refuse(["no labelled predictions in the log yet"])
    widest = RetrainConfig(
        train_days=max(config.max_train_days, config.train_days), holdout_days=max(config.max_holdout_days, config.holdout_days)
    ).windows(end)
    data = labelled_log(store, contract, widest["train"][0], end)
    data = data[_segment_mask(spec, data, segment, own).to_numpy()] if len(data) else data
    per_day = local_dates(data, contract).value_counts().to_dict() if len(data) else {}
    holdout_days, train_days = widen_windows(config, end, per_day)
    win = RetrainConfig(train_days=train_days, holdout_days=holdout_days).windows(end)
    data = select_window(data, contract, win["train"][0], end) if len(data) else data
    fit = select_window(data, contract, *win["fit"])
    val = select_window(data, contract, *win["validation"])
    holdout = select_window(data, contract, *win["holdout"])
    rows = {"fit": len(fit), "validation": len(val), "holdout": len(holdout)}
    if len(data) == 0 and _drill_labelled(store, contract, spec, segment, own, win["train"][0], end):
        return refuse(
            [f"drill rows only: the segment's labelled rows in {win['train'][0]}..{end} are all drill traffic"], rows=rows
        )
    if len(fit) + len(val) < config.min_labels:
        return refuse(
            [
                f"not enough labelled rows to train on: {len(fit) + len(val)} in {win['train'][0]}..{win['train'][1]},"
                f" minimum {config.min_labels}"
            ],
            rows=rows,
        )  # fmt: skip
    if len(holdout) < config.min_holdout:
        return refuse(
            [
                f"not enough labelled rows to judge on: {len(holdout)} in {win['holdout'][0]}..{win['holdout'][1]},"
                f" minimum {config.min_holdout}"
            ],
            rows=rows,
        )  # fmt: skip
    try:
        check_contract(contract, pd.concat([fit, val, holdout], ignore_index=True))
    except ContractViolation as exc:
        return refuse([f"the labelled window breaks the contract: {str(exc).splitlines()[0]}"], rows=rows)
    start = win["fit"][0]
    if config.with_original:
        from training.data import load_flights

        t = spec.train
        orig = original if original is not None else labelled(select_window(load_flights(), contract, t.start, t.end))
        orig = orig[_segment_mask(spec, orig, segment, own).to_numpy()]
        fit = pd.concat([orig[list(fit.columns.intersection(orig.columns))], fit], ignore_index=True)
        rows["fit_original"] = len(orig)
        start = min(start, t.start)
    # The challenger's windows: fitted through the last validation day (the gate's hygiene check).
    spec_c = dataclasses.replace(
        spec,
        train=dataclasses.replace(
            spec.train, start=start, end=win["train"][1], validation_days=len(pd.date_range(*win["validation"]))
        ),
    )
    ref_days = sorted({d.isoformat() for d in local_dates(fit, contract)})
    params = {} if segment == GLOBAL else spec.train.segment_params
    echo(f"{model_name}: fitting a challenger on {len(fit)} rows, validating on {len(val)} ...")
    out = fit_segment(contract, spec_c, segment, fit, val, ref_days, [], params)
    if out.bundle is None:
        return refuse([f"the fleet would not train this segment: {out.reason}"], rows=rows)
    md = out.bundle.metadata
    windows = {k: (a.isoformat(), b.isoformat()) for k, (a, b) in win.items()}
    md["retrain"] = {"windows": windows, "rows": rows, "with_original": config.with_original, "fleet_queue": True}  # type: ignore[index]
    if segment == GLOBAL:
        md["fleet"]["serves_except"] = sorted(own)  # type: ignore[index]
    mv = registry.register(
        model_name,
        out.bundle,
        params={"role": "challenger", "fleet": spec.name, "segment": segment, **rows},
        metrics={f"val_{k}": v for k, v in md["validation_metrics"].items()},
        artifacts={},
        tags={"role": "challenger", "fleet": spec.name, "segment": segment, "contract_version": contract.version,
              "retrain_request": "fleet-queue"},
    )  # fmt: skip
    registry.set_alias(model_name, CHALLENGER, mv.version)
    champ = (champion, registry.load(model_name, champion))
    decision = run_gate(contract, champ, (mv.version, out.bundle), holdout, holdout_window=win["holdout"], config=gate)
    record_decision(registry, runs, model_name, mv.version, champion, decision, at=at)
    if decision.promote:
        set_champion(registry, model_name, mv.version)
    status = PROMOTED if decision.promote else REFUSED
    reasons = decision.reasons if decision.promote else ["challenger lost the gate: " + "; ".join(decision.reasons)]
    echo(f"{model_name}: {status}: " + "; ".join(reasons)[:300])
    return SegmentRetrain(
        model_name, status, reasons, champion, mv.version, rows, dict(decision.evidence), round(time.perf_counter() - t0, 1)
    )


@dataclass(frozen=True)
class CycleResult:
    fleet: str
    run_id: str | None
    window_end: str | None
    budget: int
    dry_run: bool
    decisions: list[Decision]
    retrains: list[SegmentRetrain]
    cycle_id: str | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "fleet": self.fleet,
            "run_id": self.run_id,
            "window_end": self.window_end,
            "budget": self.budget,
            "dry_run": self.dry_run,
            "cycle_id": self.cycle_id,
            "seconds": self.seconds,
            "decisions": [d.as_dict() for d in self.decisions],
            "promoted": sum(r.status == PROMOTED for r in self.retrains),
            "refused": sum(r.status == REFUSED for r in self.retrains),
            "failed": sum(r.failed for r in self.retrains),  # of the refused: crashed
        }


def run_cycle(
    contract: Contract,
    registry: Registry,
    store: LogStore,
    runs: RunStore,
    queue: QueueStore,
    spec: FleetSpec,
    fleet_run: Mapping[str, Any] | None,
    config: FleetRetrainConfig,
    gate: GateConfig,
    *,
    dry_run: bool = False,
    owner: str = "ml-oncall",
    webhook_url: str | None = None,
    retrain_when_data_broken: bool = False,
    original: pd.DataFrame | None = None,
    at: datetime | None = None,
    echo: Callable[[str], None] = lambda m: None,
) -> CycleResult:
    """Sync the queue with `fleet_run` (a `FleetRunStore.latest()` document), notify yellow owners,
    retrain the `config.budget` highest-ranked due models, record every decision (a model red on
    broken data is paged, never queued, unless `retrain_when_data_broken`). `dry_run`: plan
    only, nothing written, nothing retrained, nobody notified."""
    t0 = time.perf_counter()
    run_id = fleet_run["run_id"] if fleet_run else None
    window_end = fleet_run.get("window_end") if fleet_run else None
    items, decisions = sync(
        queue.items(spec.name),
        fleet_run["verdicts"] if fleet_run else [],
        run_id,
        window_end,
        retrain_when_data_broken=retrain_when_data_broken,
    )
    if not dry_run:
        queue.save(spec.name, items)
        notify_yellow(decisions, owner=owner, webhook_url=webhook_url, fleet=spec.name)
    due = [i for i in rank(items.values()) if i.due(run_id)]
    picks, over = due[: config.budget], due[config.budget :]
    waiting = []  # listed after the retrains (best first), recorded in the queue before they start
    for n, i in enumerate(over, config.budget + 1):
        why = f"over budget: rank {n} of {len(due)} due, budget {config.budget} per cycle; stays queued"
        waiting.append(Decision(i.model_name, i.segment, "over_budget", why, i.score, i.version))
        if not dry_run:
            queue.put(spec.name, dataclasses.replace(i, state=QUEUED, reason=why))
    retrains: list[SegmentRetrain] = []
    holder = str(uuid.uuid4())  # this cycle, as the holder of its models' retrain locks
    for i in picks:
        if dry_run:
            decisions.append(Decision(i.model_name, i.segment, "retraining", "would retrain (dry run)", i.score, i.version))
            continue
        # Another cycle (cron's `fleet retrain` beside an operator's `fleet monitor --retrain`) may
        # be fitting this very model: one retrain per model at a time, the other cycle decides it.
        got = queue.lock(spec.name, i.model_name, holder)
        if got is None:
            why = "locked: another retrain cycle is retraining this model; it records the decision"
            decisions.append(Decision(i.model_name, i.segment, "locked", why, i.score, i.version))
            continue
        if got != holder:
            log.warning("fleet retrain of %s: took over the expired lock of cycle %s", i.model_name, got)
        # This cycle read the queue before it held the lock: another cycle may have decided the model
        # on this same run since (and released its lock). Re-read the row under the lock.
        fresh = queue.items(spec.name).get(i.model_name)
        if fresh is None or not fresh.due(run_id):
            queue.unlock(spec.name, i.model_name, holder)
            why = "locked: another retrain cycle already decided this model on this fleet run"
            decisions.append(Decision(i.model_name, i.segment, "locked", why, i.score, i.version))
            continue
        try:
            queue.put(spec.name, dataclasses.replace(i, state=RETRAINING, reason="retraining"))
            try:
                r = retrain_segment(
                    contract, registry, store, runs, spec, config, gate, model_name=i.model_name, original=original, at=at,
                    echo=echo,
                )  # fmt: skip
            except Exception as exc:  # the alias moves last: a crash leaves the champion serving
                log.exception("fleet retrain of %s failed", i.model_name)
                crash = [f"retrain failed: {type(exc).__name__}: {exc}"]
                r = SegmentRetrain(i.model_name, REFUSED, crash, i.version, failed=True)
                runs.record_event(
                    "failed", model_name=i.model_name, from_version=i.version, to_version=None, reasons=r.reasons, at=at
                )
            retrains.append(r)
            reason = "; ".join(r.reasons)
            queue.put(
                spec.name,
                dataclasses.replace(
                    i, state=r.status, reason=reason, decided_run=run_id, challenger_version=r.challenger_version,
                    attempts=i.attempts + 1,
                ),
            )  # fmt: skip
        finally:
            queue.unlock(spec.name, i.model_name, holder)
        decisions.append(
            Decision(i.model_name, i.segment, r.status, reason, i.score, r.champion_version, r.challenger_version, r.seconds)
        )
    decisions += waiting
    cycle_id = None if dry_run else queue.record_cycle(spec.name, run_id, window_end, config.budget, decisions, at=at)
    return CycleResult(
        spec.name, run_id, window_end, config.budget, dry_run, decisions, retrains, cycle_id, round(time.perf_counter() - t0, 2)
    )
