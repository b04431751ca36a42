"""Retraining: a challenger from the prediction log + its delayed labels, through the gate.

Windows (local days of event time), counted back from the latest labelled day `end`:

    |<------------- train_days ------------->|<-- holdout_days -->|
    |<--- fit --->|<-- validation (7 days) -->|                    |
                                                                  end

The challenger is fitted on `fit` plus, by default, the original training window (measured on the
2013 replay: challengers fitted on 21 recent days alone were worse than the old champion; see
docs/year-2013.md), its threshold
chosen on `validation`, exactly like the first training (`training.train.fit_bundle`: the same
contract check, the same shared feature code). The gate then scores champion and challenger on
the holdout, which neither has seen. The champion alias moves only at the very end, so a failed
or killed retrain leaves the serving model untouched.

`handle_pending` is the consumer of the monitor's retrain requests: cooldown first, then one
retrain for all pending requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from data_contracts.batch import ContractViolation
from data_contracts.contract import Contract
from data_contracts.windows import select_window
from training.gate import GateConfig, run_gate
from training.promote import CHALLENGER, CHAMPION, labelled_log, latest_labelled_day, record_decision, set_champion
from training.train import DEFAULT_END, DEFAULT_START, TrainConfig, check_contract, fit_bundle, labelled

if TYPE_CHECKING:
    from core.logstore import LogStore
    from core.registry import Registry
    from core.runs import RunStore
    from core.settings import Settings

log = logging.getLogger("driftlight.retrain")
VALIDATION_DAYS = 7


@dataclass(frozen=True)
class RetrainConfig:
    train_days: int = 28
    holdout_days: int = 7
    min_labels: int = 2000
    with_original: bool = True  # fit = the original training window + the recent log (docs/year-2013.md)
    seed: int = 0
    end: date | None = None  # last labelled local day to use; default: the latest in the log

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RetrainConfig:
        base = cls(
            train_days=settings.retrain_train_days,
            holdout_days=settings.retrain_holdout_days,
            min_labels=settings.retrain_min_labels,
            with_original=settings.retrain_with_original,
        )
        return cls(**{**asdict(base), **{k: v for k, v in overrides.items() if v is not None}})

    def windows(self, end: date) -> dict[str, tuple[date, date]]:
        hold_start = end - timedelta(days=self.holdout_days - 1)
        train_end = hold_start - timedelta(days=1)
        train_start = train_end - timedelta(days=self.train_days - 1)
        val_start = train_end - timedelta(days=VALIDATION_DAYS - 1)
        return {
            "train": (train_start, train_end),
            "fit": (train_start, val_start - timedelta(days=1)),
            "validation": (val_start, train_end),
            "holdout": (hold_start, end),
        }


@dataclass(frozen=True)
class RetrainOutcome:
    status: str  # promoted | refused | failed | cooldown | nothing_to_do
    reasons: list[str]
    champion_version: str | None = None
    challenger_version: str | None = None
    windows: dict[str, tuple[str, str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def holdout_auc(self, side: str) -> float:
        """ROC AUC of the `champion` or `challenger` on the gate's holdout (NaN if not judged)."""
        return float(((self.evidence.get(side) or {}).get("metrics") or {}).get("roc_auc", float("nan")))


def retrain(
    contract: Contract,
    registry: Registry,
    store: LogStore,
    runs: RunStore,
    config: RetrainConfig,
    gate: GateConfig,
    *,
    model_name: str,
    request_ids: Sequence[str] = (),
    at: datetime | None = None,
    original: pd.DataFrame | None = None,
    echo: Callable[[str], None] = lambda m: None,
) -> RetrainOutcome:
    """Train a challenger on the log's recent labelled window, gate it, promote it if it passes."""
    t0 = time.perf_counter()
    request_id = request_ids[0] if request_ids else None
    champion = registry.alias_version(model_name, CHAMPION)

    def refuse(reasons: list[str], **kw: Any) -> RetrainOutcome:
        runs.record_event(
            "refused", model_name=model_name, from_version=champion, to_version=kw.get("challenger_version"),
            reasons=reasons, evidence=kw.get("evidence"), request_id=request_id, at=at,
        )  # fmt: skip
        runs.set_retrain_state(list(request_ids), "refused")
        echo("refused: " + "; ".join(reasons))
        return RetrainOutcome("refused", reasons, champion, seconds=round(time.perf_counter() - t0, 1), **kw)

    end = config.end or latest_labelled_day(store, contract)
    if end is None:
        # Only the next step differs: a home with no champion has nothing to serve yet. (A log with
        # labels but no champion alias still retrains: the gate's sanity checks decide alone.)
        first = f"run `driftlight train` first (there is no {model_name}@{CHAMPION}), then " if champion is None else ""
        return refuse([f"no labelled predictions in the log yet: {first}{NEEDS_TRAFFIC}"])
    win = config.windows(end)
    echo(f"reading labelled traffic {win['train'][0]}..{end} from the prediction log ...")
    data = labelled_log(store, contract, win["train"][0], end)
    fit = select_window(data, contract, *win["fit"])
    val = select_window(data, contract, *win["validation"])
    holdout = select_window(data, contract, *win["holdout"])
    rows = {"fit": len(fit), "validation": len(val), "holdout": len(holdout)}
    windows = {k: (a.isoformat(), b.isoformat()) for k, (a, b) in win.items()}
    if len(fit) + len(val) < config.min_labels:
        return refuse(
            [
                f"too few labels to train on: {len(fit) + len(val)} labelled rows in {windows['train']},"
                f" minimum {config.min_labels}"
            ],
            windows=windows,
            rows=rows,
        )
    min_holdout = max(200, config.min_labels // 10)
    if len(holdout) < min_holdout or len(val) < 200:
        return refuse(
            [f"too few labels to judge on: {len(holdout)} holdout and {len(val)} validation rows (min {min_holdout} / 200)"],
            windows=windows,
            rows=rows,
        )
    if config.with_original:
        from training.data import load_flights

        orig = original if original is not None else labelled(select_window(load_flights(), contract, DEFAULT_START, DEFAULT_END))
        fit = pd.concat([orig[list(fit.columns.intersection(orig.columns))], fit], ignore_index=True)
        rows["fit_original"] = len(orig)
    try:
        check_contract(contract, pd.concat([fit, val, holdout], ignore_index=True))
    except ContractViolation as exc:
        return refuse([f"the labelled window breaks the contract: {str(exc).splitlines()[0]}"], windows=windows, rows=rows)
    echo(fit_line(rows, win["fit"]))
    tc = TrainConfig(start=win["train"][0], end=win["train"][1], validation_days=VALIDATION_DAYS, seed=config.seed)
    out = fit_bundle(contract, fit, val, tc)
    out.bundle.metadata["retrain"] = {"windows": windows, "rows": rows, "with_original": config.with_original}  # type: ignore[index]
    mv = registry.register(
        model_name,
        out.bundle,
        params={"role": "challenger", "train_days": config.train_days, "holdout_days": config.holdout_days, **rows},
        metrics={**out.model.as_dict("val_"), **out.baseline.as_dict("baseline_val_")},
        artifacts={},
        tags={"role": "challenger", "contract_version": contract.version, "retrain_request": request_id or "manual"},
    )
    registry.set_alias(model_name, CHALLENGER, mv.version)
    echo(f"challenger v{mv.version} registered; gate against champion v{champion} on {len(holdout)} holdout rows ...")
    champ = (champion, registry.load(model_name, champion)) if champion is not None else None
    decision = run_gate(contract, champ, (mv.version, out.bundle), holdout, holdout_window=win["holdout"], config=gate)
    record_decision(registry, runs, model_name, mv.version, champion, decision, request_id=request_id, at=at)
    if decision.promote:
        set_champion(registry, model_name, mv.version)
    runs.set_retrain_state(list(request_ids), "done" if decision.promote else "refused")
    status = "promoted" if decision.promote else "refused"
    echo(f"{status}: " + "; ".join(decision.reasons[:4]))
    return RetrainOutcome(
        status,
        decision.reasons,
        champion,
        mv.version,
        windows,
        rows,
        dict(decision.evidence),
        round(time.perf_counter() - t0, 1),
    )


def last_attempt(runs: RunStore, model_name: str) -> datetime | None:
    """When (by the caller's clock) the latest retrain attempt was decided."""
    events = [e for e in runs.events(("promoted", "refused", "failed")) if e["model_name"] == model_name]
    return events[-1]["at"].replace(tzinfo=UTC) if events else None


NEEDS_TRAFFIC = "serve traffic (`driftlight serve`, `driftlight replay`) and send its labels to /feedback first"


def fit_line(rows: Mapping[str, int], fit_window: tuple[date, date]) -> str:
    """The progress line for the fit: how many rows from where. With the original Jan-Mar window
    added (the default), the count says so; the log's dates alone would not explain it."""
    log, original = rows["fit"], rows.get("fit_original", 0)
    where = f"{log} from the log's {fit_window[0]}..{fit_window[1]}"
    if original:
        where += f" + {original} of the original {DEFAULT_START}..{DEFAULT_END} window"
    return f"fitting a challenger on {log + original} rows ({where}), validating on {rows['validation']} ..."


def cooldown_reason(last: datetime, now: datetime, cooldown: timedelta) -> str:
    """Why pending requests were not retrained, and when the next one may run (times in UTC)."""
    return (
        f"cooldown: the last retrain was decided at {last:%Y-%m-%d %H:%M} UTC, less than"
        f" {cooldown.total_seconds() / 3600:g} h (DRIFTLIGHT_RETRAIN_COOLDOWN_HOURS) before {now:%Y-%m-%d %H:%M} UTC;"
        f" the next may start after {last + cooldown:%Y-%m-%d %H:%M} UTC (`driftlight retrain` runs one now)"
    )


def handle_pending(
    contract: Contract,
    registry: Registry,
    store: LogStore,
    runs: RunStore,
    config: RetrainConfig,
    gate: GateConfig,
    *,
    model_name: str,
    cooldown: timedelta,
    now: datetime | None = None,
    echo: Callable[[str], None] = lambda m: None,
) -> RetrainOutcome:
    """Consume the pending retrain requests: one retrain for all of them, unless in cooldown."""
    now = now or datetime.now(UTC)
    pending = [r["request_id"] for r in runs.pending_retrains()]
    if not pending:
        return RetrainOutcome("nothing_to_do", ["no pending retrain request"])
    last = last_attempt(runs, model_name)
    if last is not None and now - last < cooldown:
        why = [cooldown_reason(last, now, cooldown)]
        runs.set_retrain_state(pending, "cooldown")
        runs.record_event(
            "cooldown", model_name=model_name, from_version=None, to_version=None, reasons=why, request_id=pending[0], at=now
        )
        echo(why[0])
        return RetrainOutcome("cooldown", why)
    runs.set_retrain_state(pending, "running")
    try:
        return retrain(
            contract, registry, store, runs, config, gate, model_name=model_name, request_ids=pending, at=now, echo=echo
        )
    except Exception as exc:  # the champion alias was not touched: record, release, re-raise
        why = [f"retrain failed: {type(exc).__name__}: {exc}"]
        runs.set_retrain_state(pending, "failed")
        runs.record_event(
            "failed", model_name=model_name, from_version=None, to_version=None, reasons=why, request_id=pending[0], at=now
        )
        log.exception("retrain failed")
        raise


def handle_pending_with_settings(
    settings: Settings,
    contract: Contract,
    registry: Registry,
    store: LogStore,
    runs: RunStore,
    *,
    now: datetime | None = None,
    echo: Callable[[str], None] = lambda m: None,
) -> RetrainOutcome:
    """`handle_pending` configured from the process's settings (windows, gate, cooldown)."""
    return handle_pending(
        contract,
        registry,
        store,
        runs,
        RetrainConfig.from_settings(settings),
        GateConfig.from_settings(settings),
        model_name=settings.model_name,
        cooldown=timedelta(hours=settings.retrain_cooldown_hours),
        now=now,
        echo=echo,
    )
