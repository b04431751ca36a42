"""The drill catalogue: one named production failure each, caused on purpose, with the verdict it must get.

A drill takes a sample of real no-drift traffic (the champion's held-out control days: days of its
own training window that its reference profile never saw), injects one fault, sends it through
the live API (with the true labels, delayed, where the drill needs performance), runs the monitor
on exactly that traffic and checks the colour and the reasons. Multi-phase drills (gradual drift)
judge several windows in a row, so the policy's hysteresis is part of what is checked.

Faults are functions of the traffic frame (contract fields + `late`) and a seeded generator; the
schema change acts on the JSON records instead, because the caller's payload is what changes.
Every number here was checked against the policy's thresholds (docs/thresholds.md): the
expectation is the policy's, not tuned per drill.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from drills.calibrate import nan_spike
from drills.calibrate import outlier as outliers

FrameFault = Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame]
RecordFault = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Phase:
    """One window of a drill: what is injected and what the light must say."""

    label: str
    fault: FrameFault | None = None
    record_fault: RecordFault | None = None
    expect: tuple[str, ...] = ("green",)  # allowed (shown) statuses
    signals: tuple[tuple[str, str | None], ...] = ()  # at least one must be among the top reasons
    forbid: tuple[str, ...] = ()  # signals that must not be among the reasons at all
    rejected: bool = False  # every request must be refused at the door (4xx)


@dataclass(frozen=True)
class Drill:
    name: str
    question: str
    injects: str
    response: str
    phases: tuple[Phase, ...]
    labels: bool = True
    top: int = 3  # how far down the ranked reasons an expected signal may be

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "question": self.question,
            "injects": self.injects,
            "expect": [
                {"phase": p.label, "status": list(p.expect), "signals": [f"{s}({f or '*'})" for s, f in p.signals]}
                for p in self.phases
            ],
            "response": self.response,
        }


# -- faults ----------------------------------------------------------------------------------------
def shift(**offsets: float) -> FrameFault:
    def f(w: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        out = w.copy()
        for col, off in offsets.items():
            out[col] = out[col] + off
        if "humid" in out:
            out["humid"] = out["humid"].clip(upper=100.0)
        return out

    return f


def fahrenheit_to_celsius(col: str) -> FrameFault:
    return lambda w, rng: w.assign(**{col: (w[col] - 32.0) * 5.0 / 9.0})


def new_category(col: str, value: str, share: float) -> FrameFault:
    return lambda w, rng: w.assign(**{col: np.where(rng.random(len(w)) < share, value, w[col])})


def stuck(col: str) -> FrameFault:
    return lambda w, rng: w.assign(**{col: float(w[col].median())})


def utc_departure_hour(w: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The caller converts the scheduled departure to UTC (New York is UTC-5 in winter)."""
    hhmm = w["sched_dep_time"].astype(int)
    return w.assign(sched_dep_time=((hhmm // 100 + 5) % 24) * 100 + hhmm % 100)


def shuffled_labels(w: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Inputs untouched; the outcome no longer follows them (same late rate)."""
    y = w["late"].to_numpy().copy()
    known = ~np.isnan(y)
    y[known] = rng.permutation(y[known])
    return w.assign(late=y)


def more_late(share: float) -> FrameFault:
    def f(w: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        y = w["late"].to_numpy().copy()
        flip = (y == 0) & (rng.random(len(y)) < share)
        y[flip] = 1.0
        return w.assign(late=y)

    return f


def chain(*faults: FrameFault) -> FrameFault:
    def f(w: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        for g in faults:
            w = g(w, rng)
        return w

    return f


def rename_field(old: str, new: str) -> RecordFault:
    def f(rec: dict[str, Any]) -> dict[str, Any]:
        out = dict(rec)
        out[new] = out.pop(old)
        return out

    return f


# -- the catalogue ---------------------------------------------------------------------------------
TEMP_SD_F = 7.5  # standard deviation of temperature on the control days (°F)
# The smallest temperature shift the light catches 95 % of the time is 3-4 sd (docs/thresholds.md,
# power table): winter weeks differ that much on their own. Smaller shifts are weather, not drift.
WARM = (("psi_vs_null", "temp"), ("psi_vs_null", "dewp"), ("beyond_reference_rate_vs_null", "temp"))

DRILLS: tuple[Drill, ...] = (
    Drill(
        "no-drift",
        "How often does the monitor cry wolf? (false alarms on real, unchanged traffic)",
        "nothing: held-out days of the training window, as they were",
        "Nothing. Green does nothing; the control bounds the false-alarm rate (tests/drills).",
        (Phase("control", expect=("green",)),),
    ),
    Drill(
        "heat-wave",
        "Data (covariate) drift: the inputs move away from what the model was trained on.",
        "temperature +30 °F (about 4 sd of winter temperature) and humidity +15 points on every flight",
        "Yellow (the world moved; no evidence of harm yet): the owner is notified and watches the model-hurt "
        "signals; red, and a retrain, only once the model is hurt.",
        (
            Phase(
                "heat wave",
                shift(temp=4 * TEMP_SD_F, humid=15.0),
                expect=("yellow",),
                signals=(("psi_vs_null", "temp"), ("beyond_reference_rate_vs_null", "temp"), ("psi_vs_null", "humid")),
            ),
        ),
    ),
    Drill(
        "new-carrier",
        "Inputs that changed overnight: a category the model has never seen (new ice-cream flavours).",
        "20 % of flights flown by a carrier code 'ZZ' unknown to the contract and the model",
        "Red: the model scores 'ZZ' as unknown (served, with a warning); add it to the contract, retrain once it has labels.",
        (
            Phase(
                "new carrier", new_category("carrier", "ZZ", 0.2), expect=("red",), signals=(("unseen_category_rate", "carrier"),)
            ),
        ),
    ),
    Drill(
        "unit-change",
        "An upstream unit change: the weather feed switches temperature from °F to °C.",
        "temperature converted to °C (still inside the contract's range, so the door lets it in)",
        "Red: fix or convert at the source; the unit-change signal names the conversion, no retrain needed.",
        (Phase("°F -> °C", fahrenheit_to_celsius("temp"), expect=("red",), signals=(("unit_change", "temp"),)),),
    ),
    Drill(
        "missing-spike",
        "Missing data: a broken pressure sensor stops reporting at one airport after another.",
        "40 % of pressure readings missing",
        "Red: repair the feed; the model's missing-value handling keeps serving meanwhile.",
        (
            Phase(
                "pressure NaN",
                nan_spike("pressure", 0.4),
                expect=("red",),
                signals=(("block_inconsistency", "pressure"), ("missing_rate_increase", "pressure")),
            ),
        ),
    ),
    Drill(
        "stuck-sensor",
        "A sensor frozen at one value: valid, in range, non-null, and wrong.",
        "humidity frozen at its median on every flight",
        "Red: the stuck-value signal points at the field; repair the feed.",
        (
            Phase(
                "humid frozen",
                stuck("humid"),
                expect=("red",),
                signals=(("stuck_value_share_vs_null", "humid"), ("stuck_run_ratio", "humid")),
            ),
        ),
    ),
    Drill(
        "utc-skew",
        "Training-serving skew: a caller computes a field differently from training (UTC, not local time).",
        "scheduled departure sent in UTC (+5 h) instead of local New York time",
        "Yellow: the departure-hour drift (raw and derived) names the field far beyond its null; the owner "
        "fixes the caller, no retrain.",
        (
            Phase(
                "UTC departure",
                utc_departure_hour,
                expect=("yellow",),
                signals=(("psi_vs_null", "sched_dep_time"), ("psi_vs_null", "f_dep_hour")),
            ),
        ),
    ),
    Drill(
        "concept-drift",
        "Concept drift vs data drift: inputs unchanged, their relation to the outcome changes.",
        "labels shuffled among the window's flights: same inputs, same late rate, no relation left",
        "Red from performance alone (no drift signal can see it): retrain, and look for what changed in the world.",
        (Phase("relation broken", shuffled_labels, expect=("red",), signals=(("roc_auc_drop", None),), forbid=("psi_vs_null",)),),
    ),
    Drill(
        "label-drift",
        "Label (prior) drift: the late rate jumps (a storm season, an airline strike).",
        "30 % of on-time flights turned late: the late rate goes from ~23 % to ~46 %",
        "Yellow (the late rate moved beyond its null; the ranking still holds): the owner recalibrates or "
        "retrains on recent labels; capacity plans change.",
        (Phase("late rate jump", more_late(0.3), expect=("yellow",), signals=(("label_rate_shift_vs_null", None),)),),
    ),
    Drill(
        "schema-change",
        "An upstream schema change: a field renamed.",
        "the caller sends 'temperature' instead of 'temp'",
        "Red at the door: every request is refused with a 422 naming the field; roll back the caller or version the contract.",
        (
            Phase(
                "temp renamed",
                record_fault=rename_field("temp", "temperature"),
                expect=("red",),
                signals=(("contract_violation_rate", "temp"), ("contract_violation_rate", "temperature")),
                rejected=True,
            ),
        ),
        labels=False,
    ),
    Drill(
        "gradual-drift",
        "Gradual drift over weeks: does the light warn (yellow) before it alarms (red), and hold red until calm?",
        "temperature and dew point rising week by week (+2, +4, +6, +10 °F), then back to normal",
        "Small shifts are weather (green); a large one is yellow (notify); red once the model is hurt "
        "(retrain). After red, one calm window is not enough to go green.",
        (
            Phase("week 1: +1 sd", shift(temp=TEMP_SD_F, dewp=TEMP_SD_F), expect=("green",)),
            Phase("week 2: +4 sd", shift(temp=4 * TEMP_SD_F, dewp=4 * TEMP_SD_F), expect=("yellow",), signals=WARM),
            # the moved world now hurts the model (its outcomes no longer follow its inputs): red
            Phase(
                "week 3: +4 sd, model hurt",
                chain(shift(temp=4 * TEMP_SD_F, dewp=4 * TEMP_SD_F), shuffled_labels),
                expect=("red",),
                signals=(("roc_auc_drop", None), *WARM),
            ),
            Phase("week 4: normal again", None, expect=("red",)),  # held: hysteresis
        ),
    ),
    Drill(
        "outlier-burst",
        "Outliers: a handful of absurd readings must not raise a false alarm.",
        "0.1 % of flights report a wind speed of 149 mph (inside the contract's 0-150 range; absurd at an airport)",
        "Nothing: a few outliers are not drift. The beyond-range rate stays far below its threshold.",
        (Phase("outliers", outliers("wind_speed", 149.0, 0.001), expect=("green",)),),
    ),
    Drill(
        "outlier-hiding-shift",
        "An outlier hiding a real shift: extreme values stretch equal-width bins and mask drift.",
        "the same outliers plus a +6 °F (0.8 sd) temperature rise; 0.5 sd sits right at the warning line for 2,000 rows",
        "Yellow: quantile bins frozen at training see the shift despite the outliers.",
        (
            Phase(
                "outliers + shift",
                chain(shift(temp=4 * TEMP_SD_F), outliers("wind_speed", 149.0, 0.001)),
                expect=("yellow", "red"),
                signals=(("psi_vs_null", "temp"), ("beyond_reference_rate_vs_null", "temp")),
            ),
        ),
    ),
)

BY_NAME: dict[str, Drill] = {d.name: d for d in DRILLS}


@dataclass
class PhaseResult:
    label: str
    status: str
    raw_status: str
    rows: int
    sent: int
    rejected: int
    expected: list[str]
    top: list[str]
    met: bool
    why: list[str] = field(default_factory=list)


def check(phase: Phase, verdict: Any, sent: int, rejected: int, top_n: int) -> list[str]:
    """Why the phase's expectation is not met (empty list = met)."""
    why = []
    if verdict.status not in phase.expect:
        why.append(f"status {verdict.status}, expected {' or '.join(phase.expect)}")
    top = verdict.top_reasons(top_n)
    if phase.signals and not any(r.signal == s and (f is None or r.feature == f) for r in top for s, f in phase.signals):
        want = ", ".join(f"{s}({f or '*'})" for s, f in phase.signals)
        why.append(f"none of {want} among the top {top_n} reasons")
    bad = [r.signal for r in verdict.reasons if r.signal in phase.forbid]
    if bad:
        why.append(f"forbidden signals fired: {sorted(set(bad))}")
    if phase.rejected and rejected != sent:
        why.append(f"{sent - rejected} of {sent} records got through the door; all should be refused")
    if not phase.rejected and rejected:
        why.append(f"{rejected} records were refused at the door")
    return why
