"""The green / yellow / red policy: a pure function from a window's signals to a verdict.

Metric, threshold and verdict are kept apart: the monitor computes `Signal`s (values only), the
`PolicySettings` (from a YAML policy file) say where each signal's warning and critical thresholds
are, and `decide` maps failed checks to yellow (any warning) or red (any critical), then applies
hysteresis against the recent history so the light does not flap between adjacent windows:
an escalation shows at once, a de-escalation only after `clear_after` consecutive calmer windows.

No I/O here; `load_policy` is the only function that reads a file.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import yaml

Status = Literal["green", "yellow", "red", "not_enough_data"]
Severity = Literal["warning", "critical"]
Question = Literal["data_broken", "model_hurt", "world_moved"]
QUESTIONS: tuple[str, ...] = ("data_broken", "model_hurt", "world_moved")
_RANK = {"green": 0, "yellow": 1, "red": 2}
_STATUS: dict[str, Status] = {"green": "green", "yellow": "yellow", "red": "red"}  # stored text -> Status
# Which question a signal answers when its rule does not say (policy.yaml rules may declare it).
DEFAULT_QUESTION: dict[str, str] = {
    "contract_violation_rate": "data_broken",
    "unit_change": "data_broken",
    "missing_rate_increase": "data_broken",
    "missing_rate_increase_vs_null": "data_broken",
    "unseen_category_rate": "data_broken",
    "stuck_value_share": "data_broken",
    "stuck_value_share_vs_null": "data_broken",
    "stuck_run_ratio": "data_broken",
    "block_inconsistency": "data_broken",
    "duplicate_share": "data_broken",
    "volume_change": "data_broken",
    "refused_share": "data_broken",
    "skew_mismatch_rate": "data_broken",
    "roc_auc_drop": "model_hurt",
    "expected_roc_auc_drop": "model_hurt",
    "calibration_gap_vs_null": "model_hurt",
}


def question_of(signal: str) -> str:
    """The question a signal answers by default: data broken, model hurt, else world moved (drift)."""
    return DEFAULT_QUESTION.get(signal, "world_moved")


@dataclass(frozen=True)
class Signal:
    """One measured value of a window: e.g. ("psi", "temp", 0.31) or ("roc_auc_drop", None, 0.05)."""

    signal: str
    feature: str | None
    value: float
    detail: str = ""
    # The cadence (days) of the null a `*_vs_null` value was scored against, so a rule can hold
    # single-day windows to a different threshold than weeks; None for absolute signals.
    cadence_days: int | None = None


@dataclass(frozen=True)
class Rule:
    """Thresholds for one signal (optionally for matching features): value beyond `critical` is red."""

    signal: str
    warning: float | None = None
    critical: float | None = None
    direction: Literal["above", "below"] = "above"
    features: str | tuple[str, ...] = "*"  # fnmatch pattern(s) on the feature name
    why: str = ""
    # Ranking among reasons of the same severity: diagnostic signals (a unit change, skew, an
    # unseen category) explain *why* and come before generic drift, which says only *that*.
    priority: int = 1
    # Which question the rule answers (data_broken / model_hurt / world_moved); None: by signal.
    question: str | None = None
    # Only for windows judged at this cadence (`Signal.cadence_days`); None: every cadence.
    cadence_days: int | None = None

    @property
    def asks(self) -> str:
        return self.question or question_of(self.signal)

    def matches(self, s: Signal) -> bool:
        if s.signal != self.signal:
            return False
        if self.cadence_days is not None and s.cadence_days != self.cadence_days:
            return False
        patterns = (self.features,) if isinstance(self.features, str) else self.features
        return any(fnmatch.fnmatchcase(s.feature or "", p or "*") for p in patterns)

    def breached(self, value: float, threshold: float | None) -> bool:
        if threshold is None or value is None or math.isnan(value):
            return False
        return value > threshold if self.direction == "above" else value < threshold


@dataclass(frozen=True)
class Reason:
    signal: str
    feature: str | None
    value: float
    threshold: float
    severity: Severity
    message: str
    question: str = "world_moved"  # data_broken | model_hurt | world_moved


@dataclass(frozen=True)
class PolicySettings:
    rules: tuple[Rule, ...]
    clear_after: int = 2
    min_rows: int = 500
    owner: str = "ml-oncall"
    webhook_url: str | None = None
    # A red window whose data is broken asks for no retrain unless this is set (see `retrain_hold`).
    retrain_when_data_broken: bool = False


@dataclass(frozen=True)
class Verdict:
    status: Status
    raw_status: Status
    reasons: tuple[Reason, ...]
    held_by_hysteresis: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reasons"] = [asdict(r) for r in self.reasons]
        return d

    def top_reasons(self, n: int = 5) -> list[Reason]:
        return list(self.reasons[:n])


def evaluate_signals(signals: Iterable[Signal], rules: Sequence[Rule]) -> list[Reason]:
    """Every breached threshold as a `Reason`, most severe and largest excess first.

    The first matching rule per signal wins, so a feature-specific rule placed before a generic
    one overrides it.
    """
    out: list[tuple[tuple[int, int, float], Reason]] = []
    for s in signals:
        rule = next((r for r in rules if r.matches(s)), None)
        if rule is None:
            continue
        levels: tuple[tuple[Severity, float | None], ...] = (("critical", rule.critical), ("warning", rule.warning))
        for sev, thr in levels:
            if rule.breached(s.value, thr):
                assert thr is not None
                excess = abs(s.value - thr) / (abs(thr) if thr else 1.0)
                where = f" of {s.feature}" if s.feature else ""
                cmp = ">" if rule.direction == "above" else "<"
                msg = f"{s.signal}{where} = {s.value:.4g} {cmp} {sev} threshold {thr:g}"
                if s.detail:
                    msg += f" ({s.detail})"
                out.append(
                    (
                        (0 if sev == "critical" else 1, rule.priority, -excess),
                        Reason(s.signal, s.feature, float(s.value), float(thr), sev, msg, rule.asks),
                    )
                )
                break
    out.sort(key=lambda t: t[0])  # type: ignore[arg-type,return-value]
    return [r for _, r in out]


def decide(
    signals: Iterable[Signal],
    settings: PolicySettings,
    history: Sequence[str] = (),
    *,
    rows: int | None = None,
) -> Verdict:
    """The verdict of one window given the *raw* statuses of the previous windows (oldest first).

    The light shown is the worst raw status over this window and the previous `clear_after - 1`
    judged windows: an escalation shows at once; stepping down takes `clear_after` calm windows
    in a row, so a quiet window between two noisy ones does not flip the light.
    """
    if rows is not None and rows < settings.min_rows:
        return Verdict("not_enough_data", "not_enough_data", (), notes=(f"{rows} rows < min_rows {settings.min_rows}",))
    reasons, capped = cap_world_moved(evaluate_signals(signals, settings.rules))
    raw: Status = "red" if any(r.severity == "critical" for r in reasons) else "yellow" if reasons else "green"
    recent = [_STATUS[h] for h in history if h in _STATUS][-(settings.clear_after - 1) :] if settings.clear_after > 1 else []
    shown = worst([raw, *recent])
    notes = (capped,) if capped else ()
    if shown == raw:
        return Verdict(raw, raw, tuple(reasons), notes=notes)
    note = f"held at {shown}: stepping down needs {settings.clear_after} calm windows in a row"
    return Verdict(shown, raw, tuple(reasons), held_by_hysteresis=True, notes=(*notes, note))


def cap_world_moved(reasons: list[Reason]) -> tuple[list[Reason], str]:
    """Red means act: a moved world (covariate or label drift) alone is a warning; its critical
    reasons stay critical only when the model is hurt too (a critical model_hurt reason: the
    realised or estimated AUC interval says performance fell beyond the tolerance; a warning-level
    dip is what a hard day looks like). Returns the reasons (re-sorted) and a note when capped."""
    if any(r.question == "model_hurt" and r.severity == "critical" for r in reasons):
        return reasons, ""
    capped = [r for r in reasons if r.question == "world_moved" and r.severity == "critical"]
    if not capped:
        return reasons, ""
    out = [
        replace(r, severity="warning", message=r.message + " (world moved; no evidence of harm: warning)") if r in capped else r
        for r in reasons
    ]
    out.sort(key=lambda r: 0 if r.severity == "critical" else 1)  # stable: keeps the order within a severity
    names = ", ".join(sorted({f"{r.signal}:{r.feature or ''}" for r in capped}))
    return out, f"world moved ({names}) but no model_hurt reason: held at yellow"


def broken_data(reasons: Iterable[Reason | Mapping[str, Any]]) -> list[str]:
    """The critical data-broken reasons (`signal:feature`, sorted) among `reasons`: `Reason`s, or
    their stored dicts (a fleet run's verdicts)."""
    out = set()
    for r in reasons:
        d = r if isinstance(r, Mapping) else asdict(r)
        if d.get("question") == "data_broken" and d.get("severity") == "critical":
            out.add(f"{d.get('signal')}:{d['feature']}" if d.get("feature") else str(d.get("signal")))
    return sorted(out)


def retrain_hold(reasons: Iterable[Reason], settings: PolicySettings) -> str | None:
    """Why a red window must not ask for a retrain, or None when it may.

    Broken data is fixed at its source, not learned: a challenger fitted on a window whose
    temperatures arrive in Celsius, whose sensor is frozen or whose feed lost half its traffic
    learns the fault, and the gate, judging it on a holdout from the same broken feed, may well
    promote it. So a critical data-broken reason pages the owner (red) and withholds the retrain,
    even when the model looks hurt too (broken inputs hurt any model). A red on model-hurt evidence
    alone retrains as before. `retrain.when_data_broken: true` in the policy restores the old rule."""
    if settings.retrain_when_data_broken:
        return None
    broken = broken_data(reasons)
    if not broken:
        return None
    return (
        f"retrain withheld: the data is broken ({', '.join(broken)}); fix the feed, then retrain with"
        " `driftlight retrain` (a model fitted on broken data learns the fault). To retrain on broken data"
        " anyway, set `retrain: {when_data_broken: true}` in the policy."
    )


def parse_policy(doc: Mapping[str, Any]) -> PolicySettings:
    rules = []
    for raw in doc.get("rules") or ():
        unknown = set(raw) - {f.name for f in fields(Rule)}
        if unknown:
            raise ValueError(f"policy rule {raw.get('signal')!r}: unknown keys {sorted(unknown)}")
        if isinstance(raw.get("features"), list):
            raw = {**raw, "features": tuple(str(p) for p in raw["features"])}
        rule = Rule(**raw)
        if rule.direction not in ("above", "below"):
            raise ValueError(f"policy rule {rule.signal}: direction must be above or below")
        if rule.question is not None and rule.question not in QUESTIONS:
            raise ValueError(f"policy rule {rule.signal}: question must be one of {', '.join(QUESTIONS)}")
        if rule.warning is None and rule.critical is None:
            raise ValueError(f"policy rule {rule.signal}: needs a warning or a critical threshold")
        if rule.warning is not None and rule.critical is not None and rule.breached(rule.warning, rule.critical):
            raise ValueError(f"policy rule {rule.signal}: the warning threshold is beyond the critical one")
        rules.append(rule)
    hyst = doc.get("hysteresis") or {}
    notify = doc.get("notify") or {}
    retrain = doc.get("retrain") or {}
    unknown = set(retrain) - {"when_data_broken"}
    if unknown:
        raise ValueError(f"policy retrain: unknown keys {sorted(unknown)} (known: when_data_broken)")
    return PolicySettings(
        rules=tuple(rules),
        clear_after=int(hyst.get("clear_after", 2)),
        min_rows=int(doc.get("min_rows", 500)),
        owner=str(notify.get("owner", "ml-oncall")),
        webhook_url=notify.get("webhook_url"),
        retrain_when_data_broken=bool(retrain.get("when_data_broken", False)),
    )


def default_policy_path() -> Path:
    return Path(__file__).with_name("policy.yaml")


def load_policy(path: str | Path | None = None) -> PolicySettings:
    p = Path(path) if path is not None else default_policy_path()
    with open(p, encoding="utf-8") as fh:
        return parse_policy(yaml.safe_load(fh))


def worst(statuses: Iterable[Status]) -> Status:
    judged = [s for s in statuses if s in _RANK]
    return max(judged, key=_RANK.__getitem__) if judged else "not_enough_data"
