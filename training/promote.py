"""Moving the `champion` alias: promotion through the gate, forced promotion, rollback.

Aliases are the whole deployment state: `champion` is served, `challenger` is under evaluation
(and can be shadow-scored), `previous_champion` is what `driftlight rollback` restores. The alias
move is the last step of every path, so a failure or a kill before it changes nothing that serves.
Every move and every refusal is recorded in the run store (`model_events`) and, for gate
decisions, in MLflow on the challenger's version (tags + a JSON artifact + metrics).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.ids import drill_mask
from data_contracts.contract import Contract
from data_contracts.windows import window_bounds
from training.gate import GateConfig, GateDecision, run_gate

if TYPE_CHECKING:
    from core.logstore import LogStore
    from core.registry import Registry
    from core.runs import RunStore

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous_champion"


class LifecycleError(RuntimeError):
    """A promotion or rollback that cannot be done as asked (the message says why)."""


def labelled_log(store: LogStore, contract: Contract, first: date, last: date) -> pd.DataFrame:
    """Labelled rows of the prediction log with event time on local days `first..last`.

    Columns: the contract fields, `late` (the delayed label, 0/1 as float), `model_version`. The
    same shape as `training.data.load_flights()` for what training needs.
    """
    lo, hi = window_bounds(first, last, contract.timezone)
    parts = []
    for chunk in store.iter_predictions(lo, hi, by="event_time"):
        # drill traffic (drill ids: shuffled labels, made-up carriers) never trains a model
        chunk = chunk[chunk["label"].notna().to_numpy() & ~drill_mask(chunk["prediction_id"]).to_numpy()]
        if len(chunk):
            out = chunk[[*contract.field_names, "model_version"]].copy()
            out["late"] = chunk["label"].astype("float64").to_numpy()
            parts.append(out)
    if not parts:
        return pd.DataFrame(columns=[*contract.field_names, "model_version", "late"])
    frame = pd.concat(parts, ignore_index=True)
    for f in contract.numeric_fields:  # nullable Int64 from the store -> the float/int the features expect
        if frame[f.name].dtype.name == "Int64":
            frame[f.name] = frame[f.name].astype("float64") if frame[f.name].isna().any() else frame[f.name].astype("int64")
    return frame


def latest_labelled_day(store: LogStore, contract: Contract) -> date | None:
    rng = store.labelled_event_range()
    if rng is None:
        return None
    return pd.Timestamp(rng[1]).tz_convert(contract.timezone).date()


def set_champion(registry: Registry, name: str, version: str) -> str | None:
    """Make `version` the champion; the old champion becomes `previous_champion`. Returns the old one."""
    old = registry.alias_version(name, CHAMPION)
    if old == version:
        return old
    if old is not None:
        registry.set_alias(name, PREVIOUS, old)
    registry.set_alias(name, CHAMPION, version)  # the step that changes what serves: last
    if registry.alias_version(name, CHALLENGER) == version:
        registry.delete_alias(name, CHALLENGER)
    return old


def record_decision(
    registry: Registry,
    runs: RunStore,
    name: str,
    challenger_version: str,
    champion_version: str | None,
    decision: GateDecision,
    *,
    request_id: str | None = None,
    at: datetime | None = None,
) -> None:
    tags = {
        "gate_decision": "promoted" if decision.promote else "refused",
        "gate_vs_champion": champion_version or "none",
        "gate_reasons": "; ".join(decision.reasons)[:4000],
    }
    registry.record_evidence(name, challenger_version, decision.evidence, tags)
    runs.record_event(
        "promoted" if decision.promote else "refused",
        model_name=name,
        from_version=champion_version,
        to_version=challenger_version,
        reasons=decision.reasons,
        evidence=decision.evidence,
        request_id=request_id,
        at=at,
    )


def holdout_window(last: date, days: int) -> tuple[date, date]:
    return last - timedelta(days=days - 1), last


def promote(
    contract: Contract,
    registry: Registry,
    store: LogStore,
    runs: RunStore,
    name: str,
    version: str,
    *,
    force: bool = False,
    holdout_days: int = 7,
    config: GateConfig | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """`driftlight promote VERSION`: through the gate on the latest labelled days, or `force`d."""
    known = {v.version for v in registry.versions(name)}
    if version not in known:
        raise LifecycleError(f"{name} v{version} is not registered (known: {', '.join(sorted(known, key=int)) or 'none'})")
    champion = registry.alias_version(name, CHAMPION)
    if champion == version:
        raise LifecycleError(f"{name} v{version} is already the champion")
    if force:
        set_champion(registry, name, version)
        why = [f"forced promotion: gate skipped ({reason or 'no reason given'})"]
        runs.record_event("forced", model_name=name, from_version=champion, to_version=version, reasons=why)
        return {"action": "forced", "from_version": champion, "to_version": version, "reasons": why}
    last = latest_labelled_day(store, contract)
    if last is None:
        raise LifecycleError("no labelled predictions in the log: the gate has nothing to judge on (use --force to skip it)")
    window = holdout_window(last, holdout_days)
    holdout = labelled_log(store, contract, *window)
    if len(holdout) < 200:
        raise LifecycleError(f"only {len(holdout)} labelled rows in {window[0]}..{window[1]}: too few to judge (min 200)")
    champ = (champion, registry.load(name, champion)) if champion is not None else None
    decision = run_gate(
        contract, champ, (version, registry.load(name, version)), holdout, holdout_window=window, config=config or GateConfig()
    )
    record_decision(registry, runs, name, version, champion, decision)
    if decision.promote:
        set_champion(registry, name, version)
    return {
        "action": "promoted" if decision.promote else "refused",
        "from_version": champion,
        "to_version": version,
        "reasons": decision.reasons,
        "evidence": decision.evidence,
    }


def rollback(registry: Registry, runs: RunStore, name: str, reasons: Sequence[str] = ()) -> dict[str, Any]:
    """`driftlight rollback`: the previous champion serves again (a second rollback undoes the first)."""
    prev = registry.alias_version(name, PREVIOUS)
    current = registry.alias_version(name, CHAMPION)
    if prev is None:
        raise LifecycleError(f"{name} has no {PREVIOUS!r} alias: nothing to roll back to")
    if current is not None:
        registry.set_alias(name, PREVIOUS, current)
    registry.set_alias(name, CHAMPION, prev)
    why = list(reasons) or [f"rollback from v{current} to v{prev}"]
    runs.record_event("rollback", model_name=name, from_version=current, to_version=prev, reasons=why)
    return {"action": "rollback", "from_version": current, "to_version": prev, "reasons": why}
