"""Thresholds from evidence, on windows shaped the way users run a monitor.

`python -m drills.calibrate` trains the default model in memory (the README's way: Jan-Mar 2013,
the last 14 days for validation) and builds windows shaped like the prediction log (raw fields,
the served features and probabilities from the same fitted pipeline the service runs, labels)
from real 2013 flights. Windows are contiguous spans of event time at 1, 7 and 28 days:

- no drift: the model's validation days (Mar 18-31), day by day, week by week and whole; the
  held-out control days of the fit window (days the reference profile never saw), one day at a
  time, 7 control days in a row and all of them at once; plus random-row windows of 2,000 rows
  from the control days (one more column: the old way, rows mixed from ~25 days);
- faults: the same validation and control windows with one fault injected into the raw inputs
  (features and probabilities recomputed as the service would) or, for a schema change, refused
  at the door.

What tuned what (never the windows reported): the no-drift nulls are estimated on the reference
days (monitoring.null); the model-hurt reference AUC and its day-to-day spread come from the
validation days (as the validation AUC always did), widened by the reference days' out-of-fold
spread where that is larger; the policy's z thresholds were set a priori from the per-column
false-alarm budget, and for single days from the nested check on the reference days. The control
days set no threshold's value; the changes they prompted are disclosed in the document.

Each window is judged alone (no hysteresis) with the default policy. The command prints and
writes docs/thresholds.md (saying so when it replaces an existing file): validation days day by
day and week by week, the control false-alarm rates, the fault x cadence x verdict table with the
top reason, the power table (smallest shift per field caught 95 % of the time at each cadence),
and the label-free estimate measured week by week over April-December 2013.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data_contracts.contract import Contract, load_contract
from monitoring.monitor import ModelContext, compute_signals
from monitoring.policy import PolicySettings, Signal, decide, load_policy

Fault = Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame]


def log_frame(bundle, contract: Contract, frame: pd.DataFrame) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """What the service would have logged for `frame` (contract fields + `late`)."""
    feats, model = bundle.pipeline.named_steps["features"], bundle.pipeline.named_steps["model"]
    raw = frame[list(contract.field_names)].reset_index(drop=True)
    X = feats.transform(raw)
    out = raw.copy()
    for j, name in enumerate(feats.get_feature_names_out()):
        out[f"f_{name}"] = X[:, j]
    out["probability"] = model.predict_proba(X)[:, 1]
    out["label"] = frame["late"].to_numpy() if "late" in frame else np.nan
    out["event_time"] = raw[contract.timestamp_field]
    out["served_at"] = out["event_time"]
    out["received_at"] = out["served_at"]
    out["prediction_id"] = [f"c{i}" for i in range(len(out))]
    return out


def nan_spike(col: str, share: float) -> Fault:
    def f(w: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        w = w.copy()
        w.loc[rng.random(len(w)) < share, col] = np.nan
        return w

    return f


def outlier(col: str, value: float, share: float, shift_sd: float = 0.0, sd: float = 1.0) -> Fault:
    def f(w: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        w = w.copy()
        if shift_sd:
            w[col] = w[col] + shift_sd * sd
        n = max(1, round(share * len(w)))
        w.loc[w.index[rng.choice(len(w), size=n, replace=False)], col] = value
        return w

    return f


def judge(ctx: ModelContext, contract: Contract, policy: PolicySettings, window: pd.DataFrame):  # type: ignore[no-untyped-def]
    ws = compute_signals(ctx, contract, window)
    return decide(ws.signals, policy, (), rows=ws.rows), ws


# --- faults -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # data_broken | world_moved
    fault: Fault | None  # None: the schema change, refused at the door
    expected: tuple[str, ...]  # signal name prefixes; one must be first (data_broken) or in the top 3


def _assign(col: str, value: str, share: float) -> Fault:
    def f(w: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        return w.assign(**{col: np.where(rng.random(len(w)) < share, value, w[col].astype(object))})

    return f


def _ramp(col: str, total: float) -> Fault:
    """Gradual drift: +0 at the window's first event rising linearly to +`total` at its last."""

    def f(w: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        t = w["time_hour"].astype("int64").to_numpy(dtype="float64")
        frac = (t - t.min()) / max(t.max() - t.min(), 1.0)
        return w.assign(**{col: w[col] + total * frac})

    return f


def _more_late(share: float) -> Fault:
    def f(w: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        late = w["late"].to_numpy(dtype="float64").copy()
        flip = (late == 0) & (rng.random(len(w)) < share)
        late[flip] = 1.0
        return w.assign(late=late)

    return f


FAULTS: tuple[Case, ...] = (
    Case("F -> C (temp)", "data_broken", lambda w, r: w.assign(temp=(w["temp"] - 32) * 5 / 9), ("unit_change",)),
    Case("wind mph -> km/h", "data_broken", lambda w, r: w.assign(wind_speed=w["wind_speed"] * 1.609344), ("unit_change",)),
    Case("precip inches -> mm", "data_broken", lambda w, r: w.assign(precip=w["precip"] * 25.4), ("unit_change",)),
    Case(
        "40 % NaN spike (pressure)", "data_broken", nan_spike("pressure", 0.4), ("block_inconsistency", "missing_rate_increase")
    ),
    Case("dead field (pressure all null)", "data_broken", nan_spike("pressure", 1.01), ("missing_rate_increase",)),
    Case("new carrier (20 %)", "data_broken", _assign("carrier", "ZZ", 0.2), ("unseen_category_rate",)),
    # Two signals say "stuck": the share of one reading (stuck_value_share*) and the longest run of
    # one reading at an airport (stuck_run_ratio); over 28 days the run is the larger excess.
    Case(
        "stuck sensor (humid)",
        "data_broken",
        lambda w, r: w.assign(humid=float(w["humid"].median())),
        ("stuck_value", "stuck_run_ratio"),
    ),
    Case(
        "every record 5 times",
        "data_broken",
        lambda w, r: pd.concat([w] * 5, ignore_index=True),
        ("duplicate",),
    ),
    Case("schema change (pressure renamed)", "data_broken", None, ("contract_violation_rate",)),
    Case(
        "heat wave (+15 F, humid +15)",
        "world_moved",
        lambda w, r: w.assign(temp=w["temp"] + 15, humid=(w["humid"] + 15).clip(upper=100)),
        ("psi", "beyond_reference"),
    ),
    Case("gradual drift (temp +0 -> +15 F)", "world_moved", _ramp("temp", 15.0), ("psi", "beyond_reference")),
    Case("carrier mix (+30 % EV)", "world_moved", _assign("carrier", "EV", 0.3), ("psi",)),
    Case("destination mix (+30 % LAX)", "world_moved", _assign("dest", "LAX", 0.3), ("psi",)),
    Case(
        "label-rate jump (+15 % of on-time flights late)",
        "world_moved",
        _more_late(0.15),
        ("label_rate_shift", "calibration_gap", "roc_auc_drop"),
    ),
)
POWER_FIELDS = ("temp", "dewp", "humid", "wind_speed", "pressure")
POWER_SHIFTS_SD = (0.5, 1.0, 2.0, 3.0, 4.0)


@dataclass
class Setup:
    contract: Contract
    bundle: object
    ctx: ModelContext
    policy: PolicySettings
    frames: dict[str, pd.DataFrame]  # raw rows per local day (ISO)
    validation_days: list[str]
    control_days: list[str]
    reference_days: list[str]
    ref_sd: dict[str, float]


MODEL_DAYS = ("reference", "all")


def reference_only_bundle(contract: Contract, fit: pd.DataFrame, val: pd.DataFrame, config):  # type: ignore[no-untyped-def]
    """The default model fitted on the reference days only, monitored exactly as the README's
    model is (the same seeded reference/control split of the fit window, profile and nulls from the
    reference days): so the held-out control days are unseen by the model as well as by the
    reference, as every production window is. Fitted on all fit days (the README's way) the model
    has seen the control days: its AUC there is ~0.78-0.80 against ~0.64-0.69 out of fold, so every
    model-based signal (AUC, calibration, output drift) is in-sample on those windows."""
    from dataclasses import replace

    from data_contracts.windows import on_days
    from training.data import contract_frame
    from training.reference import monitoring_reference, split_days
    from training.train import fit_bundle

    ref_days, _ = split_days(contract, fit, config.seed)
    bundle = fit_bundle(contract, on_days(contract, fit, ref_days), val, config).bundle
    p_fit = bundle.pipeline.predict_proba(contract_frame(contract, fit))[:, 1]
    section, profile = monitoring_reference(
        contract, fit, p_fit, config.seed, bundle.pipeline.named_steps["features"], pipeline=bundle.pipeline
    )
    # importance and the validation blocks stay (they come from the validation days)
    metadata = {**bundle.metadata, "monitoring": {**bundle.metadata["monitoring"], **section}, "model_days": "reference"}
    return replace(bundle, metadata=metadata, profile=profile)


def setup(seed: int = 0, model_days: str = "reference") -> Setup:
    """Train in memory and index the days. `model_days`: "reference" fits the model on the
    reference days only (the control days unseen by the model too: see `reference_only_bundle`),
    "all" on every fit day (the README's way: the control days are in the model's fit)."""
    from data_contracts.windows import local_dates, on_days
    from training.data import load_flights
    from training.train import TrainConfig, fit_bundle, split

    if model_days not in MODEL_DAYS:
        raise ValueError(f"model_days must be one of {', '.join(MODEL_DAYS)}, got {model_days!r}")
    contract = load_contract()
    flights = load_flights()
    config = TrainConfig(seed=seed)
    fit, val = split(contract, flights, config)
    if model_days == "all":
        bundle = fit_bundle(contract, fit, val, config).bundle
    else:
        bundle = reference_only_bundle(contract, fit, val, config)
    mon = bundle.metadata["monitoring"]
    both = pd.concat([fit, val])
    days = local_dates(both, contract).map(lambda d: d.isoformat())
    frames = {d: g for d, g in both.groupby(days.to_numpy())}
    ref = on_days(contract, fit, mon["reference_days"])
    return Setup(
        contract,
        bundle,
        ModelContext.from_bundle("flights-late", "calibration", bundle),
        load_policy(),
        frames,
        sorted({d.isoformat() for d in local_dates(val, contract)}),
        list(mon["control_days"]),
        list(mon["reference_days"]),
        {f: float(ref[f].std()) for f in POWER_FIELDS},
    )


def windows(s: Setup) -> dict[str, list[tuple[str, list[str]]]]:
    """Named windows (label, days) per group: validation and control at each cadence."""
    v, c = s.validation_days, s.control_days
    return {
        "validation 1 d": [(d, [d]) for d in v],
        "validation 7 d": [(f"{v[i]}..{v[i + 6]}", v[i : i + 7]) for i in (0, 7)],
        "validation 14 d": [(f"{v[0]}..{v[-1]}", v)],
        "control 1 d": [(d, [d]) for d in c],
        "control 7 d": [(f"{c[i]}..{c[i + 6]}", c[i : i + 7]) for i in range(len(c) - 6)],
        "control 28 d": [(f"{c[0]}..{c[-1]} ({len(c)} days)", c)],
    }


def raw_window(s: Setup, days: list[str]) -> pd.DataFrame:
    return pd.concat([s.frames[d] for d in days]).reset_index(drop=True)


def top_reason(verdict) -> str:  # type: ignore[no-untyped-def]
    if not verdict.reasons:
        return "-"
    r = verdict.reasons[0]
    return f"{r.signal}:{r.feature or ''} ({r.question})"


def judge_raw(s: Setup, raw: pd.DataFrame):  # type: ignore[no-untyped-def]
    return judge(s.ctx, s.contract, s.policy, log_frame(s.bundle, s.contract, raw))


def judge_schema_change(s: Setup, raw: pd.DataFrame):  # type: ignore[no-untyped-def]
    """Every record sent without `pressure` (renamed by the caller): refused at the door, so the
    window has no served rows and the door's count of refusals is all the monitor sees."""
    from data_contracts.contract import REJECTED_RECORDS
    from monitoring.monitor import judge as judge_window

    ws = compute_signals(s.ctx, s.contract, log_frame(s.bundle, s.contract, raw).iloc[:0])
    violations = {("pressure", "missing"): len(raw), REJECTED_RECORDS: len(raw)}
    return judge_window(ws, violations, s.policy, []).verdict, ws


def run_no_drift(s: Setup, random_windows: int = 20, seed: int = 0) -> dict:
    out: dict = {}
    for group, wins in windows(s).items():
        rows = []
        for label, days in wins:
            verdict, ws = judge_raw(s, raw_window(s, days))
            rows.append(
                {
                    "window": label,
                    "rows": ws.rows,
                    "status": verdict.status,
                    "top": top_reason(verdict),
                    "cadence": ws.details.get("null_cadence_days"),
                }
            )
        out[group] = rows
    control = raw_window(s, s.control_days)
    rows = []
    for i in range(random_windows):
        verdict, ws = judge_raw(s, control.sample(2000, random_state=seed * 1000 + i).reset_index(drop=True))
        rows.append({"window": f"random 2,000 #{i}", "rows": ws.rows, "status": verdict.status, "top": top_reason(verdict)})
    out["control random 2,000 rows"] = rows
    return out


def _hit(case: Case, verdict) -> bool:  # type: ignore[no-untyped-def]
    names = [r.signal for r in verdict.reasons]
    if case.kind == "data_broken":
        return verdict.status == "red" and bool(names) and names[0].startswith(case.expected)
    return verdict.status != "green" and any(n.startswith(case.expected) for n in names[:3])


def run_faults(s: Setup, seed: int = 0) -> dict:
    wins = windows(s)
    groups = {
        1: wins["validation 1 d"] + wins["control 1 d"],
        7: wins["validation 7 d"] + wins["control 7 d"],
        28: wins["validation 14 d"] + wins["control 28 d"],
    }
    out: dict = {}
    for case in FAULTS:
        for cadence, ws_list in groups.items():
            rng = np.random.default_rng(seed)
            st: Counter[str] = Counter()
            tops: Counter[str] = Counter()
            hits = judged = changed = changed_hits = 0
            for _, days in ws_list:
                raw = raw_window(s, days)
                if case.fault is None:
                    verdict, _ = judge_schema_change(s, raw)
                    moved = True
                else:
                    faulty = case.fault(raw, rng)
                    # A fault can leave a window's data as it was (inches -> mm on a dry day: 0 is 0
                    # in every unit): no monitor can see it there. Counted apart, never dropped.
                    moved = not faulty.equals(raw)
                    verdict, _ = judge_raw(s, faulty)
                st[verdict.status] += 1
                tops[top_reason(verdict)] += 1
                if verdict.status != "not_enough_data":
                    judged += 1
                    hit = _hit(case, verdict)
                    hits += hit
                    changed += moved
                    changed_hits += hit and moved
            out.setdefault(case.name, {"kind": case.kind, "expected": list(case.expected)})[cadence] = {
                "statuses": dict(st),
                "windows": len(ws_list),
                "success": hits / judged if judged else float("nan"),
                "top": tops.most_common(1)[0][0] if tops else "-",
                "tops": dict(tops.most_common()),
                "judged": judged,
                "changed": changed,
                "success_changed": changed_hits / changed if changed else float("nan"),
            }
    return out


def run_power(s: Setup, fields: tuple[str, ...] = POWER_FIELDS, shifts: tuple[float, ...] = POWER_SHIFTS_SD) -> dict:
    """Smallest upward shift (in reference sd) of each field caught (non-green) in >= 95 % of the
    held-out control windows at 1 and 7 days; shifts are tried in increasing order and the search
    stops at the first that is caught."""
    wins = windows(s)
    groups = {1: wins["control 1 d"], 7: wins["control 7 d"]}
    out: dict = {}
    for f in fields:
        for cadence, ws_list in groups.items():
            found = None
            tried = {}
            for k in shifts:
                caught = n = 0
                for _, days in ws_list:
                    raw = raw_window(s, days)
                    verdict, _ = judge_raw(s, raw.assign(**{f: raw[f] + k * s.ref_sd[f]}))
                    if verdict.status == "not_enough_data":
                        continue
                    n += 1
                    caught += verdict.status != "green"
                tried[k] = caught / n if n else float("nan")
                if n and caught / n >= 0.95:
                    found = k
                    break
            out.setdefault(f, {})[cadence] = {"shift_sd": found, "sd": s.ref_sd[f], "tried": tried}
    return out


NULL_COVERAGE_Z = (3.0, 3.5, 4.0, 5.0)


def run_null_coverage(s: Setup) -> dict:
    """The nulls checked on the reference days alone (monitoring.null.held_back_scores): each
    1-day and 7-day block of reference days held back, the nulls re-estimated from the other
    reference days, the block's PSI of every profiled column, its label-rate shift and its
    calibration gap (out-of-fold probabilities, as training computes them) scored;
    the share of blocks with some z at or above each threshold. Uses no control or validation day."""
    from monitoring.null import alarm_share, held_back_scores
    from training.data import contract_frame
    from training.reference import day_statistics, out_of_fold_probabilities

    ref = pd.concat([s.frames[d] for d in s.reference_days])
    pipe = s.bundle.pipeline  # type: ignore[attr-defined]
    p = pipe.predict_proba(contract_frame(s.contract, ref))[:, 1]
    assert s.ctx.drift_profile is not None
    oof = out_of_fold_probabilities(s.contract, ref, pipe)  # as training does for the calibration-gap null
    d = day_statistics(s.contract, ref, pipe.named_steps["features"], p, s.ctx.drift_profile, oof)
    out: dict = {}
    for c in (1, 7):
        scores = held_back_scores(d.counts, (d.late, d.labelled), c, d.predicted, d.values)
        firing = Counter(k for row in scores for k, v in row.items() if v >= NULL_COVERAGE_Z[0])
        warned = [any(policy_warns(s.policy, k, v, c) for k, v in row.items()) for row in scores]
        out[c] = {
            "blocks": len(scores),
            "statistics": len(scores[0]) if scores else 0,
            "share": {z: alarm_share(scores, z) for z in NULL_COVERAGE_Z},
            "share_policy": float(np.mean(warned)) if warned else math.nan,
            "firing": dict(firing.most_common(8)),
            "calibration_gap_max_z": max((row["calibration_gap"] for row in scores if "calibration_gap" in row), default=None),
        }
    return out


def policy_warns(policy: PolicySettings, key: str, z: float, cadence: int) -> bool:
    """Whether a nested score (`held_back_scores` key "statistic[:column]" -> z) reaches the warning
    of the policy rule that would judge it in a window of that cadence (`<statistic>_vs_null`)."""
    name, _, column = key.partition(":")
    sig = Signal(f"{name}_vs_null", column or None, z, cadence_days=cadence)
    rule = next((r for r in policy.rules if r.matches(sig)), None)
    return rule is not None and rule.breached(z, rule.warning)


# What each world-moved fault moves, in the units a detector sees: (field or "late", shift, how).
FEASIBILITY = (
    ("heat wave (+15 F, humid +15)", "temp", 15.0, "+15 F"),
    ("gradual drift (temp +0 -> +15 F)", "temp", 7.5, "+7.5 F on average over the window"),
    ("label-rate jump (+15 % of on-time flights late)", "late", 0.15, "+15 % of the on-time share"),
)


def run_feasibility(s: Setup) -> dict:
    """What the 95 %-power targets of the world-moved faults ask of any detector, from the reference
    days alone: each 1- and 7-day block of reference days held back, its mean (temperature, late
    rate) minus the mean of the other reference days; the RMS of that difference is how far a block
    moves with no drift at all. A fault moving the mean by `shift` is `d` = shift / RMS of those
    no-drift moves away; a one-sided test on that mean catches 95 % of such windows only with a
    threshold at or below d - 1.645 (normal approximation), whose false-alarm share on no-drift
    windows is what the table reports. No control or validation day is used."""
    from statistics import NormalDist

    ref = s.reference_days
    base_late = float(pd.concat([s.frames[d] for d in ref])["late"].mean())
    out: dict = {}
    for name, col, shift, how in FEASIBILITY:
        eff = shift * (1.0 - base_late) if col == "late" else shift
        row: dict = {"field": col, "how": how, "shift": eff}
        for c in (1, 7):
            moves = []
            for i in range(len(ref) - c + 1):
                held = pd.concat([s.frames[d] for d in ref[i : i + c]])[col]
                rest = pd.concat([s.frames[d] for d in ref[:i] + ref[i + c :]])[col]
                moves.append(float(held.mean() - rest.mean()))
            rms = float(np.sqrt(np.mean(np.square(moves))))
            d = eff / rms
            z = d - NormalDist().inv_cdf(0.95)
            row[c] = {"blocks": len(moves), "rms": rms, "d": d, "z_needed": z, "false_alarm": 1 - NormalDist().cdf(z)}
        out[name] = row
    return out


def estimate_bias_jan_mar(s: Setup) -> dict[str, dict[str, float]]:
    """The uncorrected label-free estimate's signed error (estimate - realised ROC AUC) on every
    sliding 7-day window of the validation days and of the held-out control days (Jan-Mar, none of
    them a reported week): whether a fixed offset could be taken from data the report never judges."""
    from sklearn.metrics import roc_auc_score

    from monitoring.monitor import airport_hours
    from monitoring.performance import expected_auc_interval

    out = {}
    for name, days in (("validation", s.validation_days), ("control", s.control_days)):
        errors = []
        for i in range(len(days) - 6):
            logged = log_frame(s.bundle, s.contract, raw_window(s, days[i : i + 7]))
            p, y = logged["probability"].to_numpy(), logged["label"].to_numpy(dtype="float64")
            est = expected_auc_interval(p, airport_hours(logged), block_sd=s.ctx.block_logit_sd).estimate
            have = ~np.isnan(y)
            errors.append(est - float(roc_auc_score(y[have].astype(int), p[have])))
        out[name] = {"weeks": len(errors), "mean_error": float(np.mean(errors)) if errors else math.nan}
    return out


def run_estimate(s: Setup, start: str = "2013-04-01", end: str = "2013-12-31") -> list[dict]:
    """Every week (Mon-Sun, local) of `start`..`end`, judged on its probabilities alone (labels
    removed): the label-free AUC estimate with its 90 % interval and the trust flag, against the
    realised AUC of the same week.

    The interval is the monitor's: the prior from the validation days, widened online by the
    errors of the earlier weeks whose labels are in (a week's flights have landed, and their labels
    arrived, before the next week starts), exactly what `RunStore.estimate_errors` gives the
    monitor; never the week itself nor a later one. Beside it, on the same weeks, what the brief
    asked to measure: the sampling-only interval (the old one), the prior alone, the online
    interval with labels one week later, and alternative point estimates that use only past labels
    (the uncorrected estimate, bias-corrected by the mean of all past errors or always by the median
    of the last 4, the last realised AUC, its average with the estimate, and the probabilities
    recalibrated (Platt) on the last 4 labelled weeks)."""
    from datetime import date, timedelta

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from data_contracts.windows import select_window
    from monitoring.monitor import airport_hours, estimate_trust
    from monitoring.performance import (
        ESTIMATE_TOLERANCE,
        Interval,
        corrected_errors,
        estimate_correction,
        expected_auc_interval,
        online_estimate_interval,
        recent_estimate_error,
        shifted,
    )
    from training.data import load_flights

    def logit(p: np.ndarray) -> np.ndarray:
        q = np.clip(p, 1e-6, 1 - 1e-6)
        return np.log(q / (1 - q))

    flights = load_flights()
    flights = flights[flights["late"].notna()]
    d0, d1 = date.fromisoformat(start), date.fromisoformat(end)
    d0 += timedelta(days=(7 - d0.weekday()) % 7)
    rows: list[dict] = []
    labelled: list[tuple[np.ndarray, np.ndarray]] = []  # past weeks' (probability, label)
    while d0 + timedelta(days=6) <= d1:
        raw = select_window(flights, s.contract, d0, d0 + timedelta(days=6)).reset_index(drop=True)
        logged = log_frame(s.bundle, s.contract, raw)
        past = [r["uncorrected_error"] for r in rows]  # weeks that ended before this one starts
        blind = compute_signals(s.ctx, s.contract, logged.assign(label=np.nan), past_errors=past)
        iv = blind.details["intervals"]
        est, samp = iv["expected_roc_auc"], iv["expected_roc_auc_sampling"]
        e = blind.details["estimate"]
        p, y = logged["probability"].to_numpy(), logged["label"].to_numpy(dtype="float64")
        real = float(roc_auc_score(y.astype(int), p))
        sampling = Interval(**samp)
        late, _ = online_estimate_interval(
            shifted(sampling, -estimate_correction(past[:-1])), corrected_errors(past[:-1]), e["prior_half_width"]
        )
        names = ("uncorrected", "bias_corrected", "median_last_4", "last_realised", "average_with_last", "platt_last_4")
        alt = dict.fromkeys(names, math.nan)
        if rows:
            alt["uncorrected"] = e["uncorrected"]
            alt["bias_corrected"] = e["uncorrected"] - float(np.mean(past))
            alt["median_last_4"] = e["uncorrected"] - float(np.median(past[-4:]))
            alt["last_realised"] = rows[-1]["realised"]
            alt["average_with_last"] = (e["uncorrected"] + rows[-1]["realised"]) / 2
            P = np.concatenate([x[0] for x in labelled[-4:]])
            Y = np.concatenate([x[1] for x in labelled[-4:]]).astype(int)
            platt = LogisticRegression(C=1e6).fit(logit(P)[:, None], Y)
            q = platt.predict_proba(logit(p)[:, None])[:, 1]
            alt["platt_last_4"] = expected_auc_interval(q, airport_hours(logged), block_sd=s.ctx.block_logit_sd).estimate
        labelled.append((p, y))
        rows.append(
            {
                "week": d0.isoformat(),
                "rows": len(raw),
                "estimate": est["estimate"],
                "low": est["low"],
                "high": est["high"],
                "realised": real,
                "error": est["estimate"] - real,
                "uncorrected": e["uncorrected"],
                "correction": e["correction"],
                "uncorrected_error": e["uncorrected"] - real,
                "covered": est["low"] <= real <= est["high"],
                "past_weeks": len(past),
                "sampling_covered": samp["low"] <= real <= samp["high"],
                "sampling_half": (samp["high"] - samp["low"]) / 2,
                "prior_covered": abs(e["uncorrected"] - real) <= e["prior_half_width"],  # no online update at all
                "prior_half": e["prior_half_width"],
                "late_labels_covered": late.low <= real <= late.high,
                "half": (est["high"] - est["low"]) / 2,
                "alternatives": alt,
                "trusted": blind.details.get("estimate_trusted"),
                "why": blind.details.get("estimate_untrusted_why", ""),
                # the flag's two halves, evaluated apart: inputs/output vs the nulls; recent misses
                "trusted_inputs": estimate_trust(blind.signals)[0],
                "trusted_recent": not recent_estimate_error(past) > ESTIMATE_TOLERANCE,
            }
        )
        d0 += timedelta(days=7)
    return rows


def run(
    seed: int = 0,
    power: bool = True,
    estimate: bool = True,
    echo: Callable[[str], None] = print,
    model_days: str = "reference",
) -> dict:
    t0 = time.perf_counter()
    s = setup(seed, model_days)
    echo(f"trained in memory ({time.perf_counter() - t0:.0f} s); judging no-drift windows")
    res: dict = {"no_drift": run_no_drift(s, seed=seed)}
    echo(f"no-drift done ({time.perf_counter() - t0:.0f} s); faults")
    res["faults"] = run_faults(s, seed=seed)
    echo(f"faults done ({time.perf_counter() - t0:.0f} s)")
    res["null_coverage"] = run_null_coverage(s)
    res["feasibility"] = run_feasibility(s)
    if power:
        res["power"] = run_power(s)
        echo(f"power done ({time.perf_counter() - t0:.0f} s)")
    if estimate:
        res["estimate"] = run_estimate(s)
        echo(f"estimate done ({time.perf_counter() - t0:.0f} s)")
    m = s.bundle.metadata  # type: ignore[attr-defined]
    res["meta"] = {
        "validation_days": s.validation_days,
        "control_days": s.control_days,
        "reference_days": len(s.reference_days),
        "validation_auc": m["validation_metrics"]["roc_auc"],
        "validation_auc_by_cadence": m["monitoring"]["validation_auc_by_cadence"],
        "validation_auc_sd_by_cadence": m["monitoring"]["validation_auc_sd_by_cadence"],
        "oof_auc_sd_by_cadence": m["monitoring"].get("oof_auc_sd_by_cadence") or {},
        "block_logit_sd": m["monitoring"]["block_logit_sd"],
        "estimate_error_rms_by_cadence": m["monitoring"].get("estimate_error_rms_by_cadence"),
        "estimate_bias_jan_mar": estimate_bias_jan_mar(s) if estimate else {},
        "model_days": model_days,
        "null_cadences": sorted({x["cadence_days"] for x in m["monitoring"]["null"]["summaries"]}),
    }
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def _nongreen(rows: list[dict], *, interval: bool = False) -> str:
    n, _gr, ye, re_, ne = _counts(rows)
    judged = n - ne
    ci = f", 95 % interval {rate_interval(ye + re_, judged)}" if interval else ""
    return f"{ye + re_} of {judged} judged non-green ({(ye + re_) / max(judged, 1):.1%}{ci}), {re_} red"


def nested(res: dict, cadence: int, z: float | None) -> str:
    """The nested check's share of held-back reference blocks of `cadence` days flagged at `z`
    (None: at the policy's own warnings), as "x.x %", or "-" when the run has no such figure."""
    x = res.get("null_coverage", {}).get(cadence)  # `load_results` gives a saved run its numeric keys back
    share = None if not x else x.get("share_policy") if z is None else x["share"].get(z)
    return "-" if share is None else f"{100 * share:.1f} %"


def rate_interval(k: int, n: int, level: float = 0.95) -> str:
    """The exact (Clopper-Pearson) interval of a rate seen as `k` of `n` independent windows, as
    "lo-hi %": how much a false-alarm rate measured on a few dozen days can say."""
    if n <= 0:
        return "-"
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return f"{100 * ci.low:.1f}-{100 * ci.high:.1f} %"


def _counts(rows: list[dict]) -> tuple[int, int, int, int, int]:
    st = Counter(r["status"] for r in rows)
    return len(rows), st["green"], st["yellow"], st["red"], st["not_enough_data"]


def untouched_windows(faults: dict) -> list[str]:
    """Per fault and cadence where it left some judged windows exactly as they were: how many, and
    the success rate on the windows it did change (the rate above keeps every window)."""
    return [
        f"{name}: {c} d {d[c]['judged'] - d[c]['changed']} of {d[c]['judged']} windows unchanged, "
        f"success on the {d[c]['changed']} it changed {d[c]['success_changed']:.0%}"
        for name, d in faults.items()
        for c in (1, 7, 28)
        if "changed" in d.get(c, {}) and d[c]["changed"] < d[c]["judged"]
    ]


def markdown(res: dict) -> str:
    meta = res["meta"]
    nd = res["no_drift"]
    L = [
        "# Thresholds: measured on windows shaped like production",
        "",
        "Produced by `python -m drills.calibrate` (rewrites this file and says so). The model is",
        "trained in memory with the README's settings (Jan-Mar 2013, the last 14 days for validation),",
    ]
    if meta.get("model_days", "all") == "reference":
        L += [
            "**fitted on the reference days only** (`--model-days reference`, the default here), so the",
            "held-out control days are unseen by the model as well as by the reference, as every",
            "production window is. Fitted on every fit day (`--model-days all`, the README's model) the",
            "model has seen the control days: its AUC on the first five 7-control-day windows is 0.77-0.80",
            "in sample against 0.64-0.69 out of fold (4 week-interleaved folds), so every model-based signal",
            "(realised AUC, calibration, output drift) is in-sample there and label faults hide",
            "(label-rate jump at 7 d: 10 % caught in sample, see the git history of this file).",
        ]
    else:
        L += ["fitted on every fit day (`--model-days all`: the control days are in the model's fit)."]
    L += [
        "Windows are contiguous spans of event time; each is judged alone (no hysteresis) with",
        "`monitoring/policy.yaml`, features and probabilities from the same fitted pipeline the",
        "service runs, against the model's own no-drift nulls (`monitoring/null.py`).",
        "",
        "**What tuned what.** The nulls are estimated on the "
        f"{meta['reference_days']} reference days only (whole days held back, 1- and 7-day blocks; cadences with a null: "
        f"{', '.join(str(c) for c in meta['null_cadences'])} days; a longer window is judged against the nearest: "
        "a 28-day null would rest on 2 independent 28-day blocks of 51 days, below `MIN_BLOCKS` 3, "
        "so the 28-day windows below are judged against the 7-day null, looser than a true 28-day one).",
        "The model-hurt reference comes from the validation days, as the validation AUC always did: mean AUC "
        + ", ".join(f"{k} d {v:.3f}" for k, v in meta["validation_auc_by_cadence"].items())
        + " (day-to-day sd "
        + ", ".join(f"{k} d {v:.3f}" for k, v in meta["validation_auc_sd_by_cadence"].items())
        + "; the interval is widened by the larger of that and the reference days' out-of-fold block sd: "
        + (", ".join(f"{k} d {v:.3f}" for k, v in meta.get("oof_auc_sd_by_cadence", {}).items()) or "none")
        + f"); the label-free interval's airport-hour shock (logit sd {meta['block_logit_sd']:.2f}) too.",
        "The policy's z thresholds (warning 3, critical 4-5) were set from the per-column false-alarm",
        "budget, not fitted to these windows; single-day windows warn at z 4 for PSI, the label-rate",
        "shift, the stuck-value share and the share beyond the reference range, from the check of the",
        f"nulls on the reference days alone (below: z 3 on any statistic fires on {nested(res, 1, 3.0)} of",
        f"held-back reference days, the policy's warnings on {nested(res, 1, None)}). The held-out control days "
        f"({len(meta['control_days'])} days of Jan 1-Mar 17 the reference never saw) set no threshold's value,",
        "but two of the three changes below were looked for because of them.",
        "Three changes were made after looking at reported windows, disclosed here. (1) After a",
        "validation day: a moved world is escalated to red only by a *critical* model-hurt reason",
        "(first version: any model-hurt reason; Mar 30, a day of humidity below anything in the",
        "reference with a warning-level AUC dip, was red). (2) After a control week: the model-hurt",
        "interval was widened by the validation days' block sd alone (7 d 0.017, from 2 independent",
        "weeks); Feb 3-18 were red for `roc_auc_drop`. It now takes the larger of that and the",
        "reference days' out-of-fold sd (`training.reference.out_of_fold_auc_spread`: 45 weekly",
        "blocks, ~7 independent), which the nulls' rule (estimate spreads from the reference days)",
        "asked for from the start. (3) After the control days of five seeded splits",
        "(`python -m scripts.control_seeds`: steady days yellow for `stuck_value_share_vs_null`): the",
        "nested check was extended to the value nulls, which showed the same kind of day among the",
        "reference days; the 1-day warning of the stuck-value share and of the beyond-reference rate",
        "moved from z 3 to z 4, as PSI's had, on that reference-only evidence.",
        "",
        "## The model's validation days (Mar 18-31)",
        "",
        "| window | rows | verdict | top reason |",
        "| --- | --- | --- | --- |",
    ]
    for g in ("validation 1 d", "validation 7 d", "validation 14 d"):
        for r in nd[g]:
            L.append(f"| {r['window']} | {r['rows']:,} | {r['status']} | {r['top']} |")
    n, g1, y1, r1, _ = _counts(nd["validation 1 d"])
    L += ["", f"Day by day: {g1} of {n} green, {y1} yellow, {r1} red.", ""]
    L += [
        "## Held-out control days: false alarms",
        "",
        "| windows | judged | green | yellow | red | non-green rate | 95 % interval | red rate | reasons first |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for g in ("control 1 d", "control 7 d", "control 28 d", "control random 2,000 rows"):
        rows = nd[g]
        n, gr, ye, re_, ne = _counts(rows)
        judged = n - ne
        tops = Counter(r["top"] for r in rows if r["status"] in ("yellow", "red"))
        why = ", ".join(f"{k} ({v})" for k, v in tops.most_common(4)) or "-"
        rate, red = (ye + re_) / max(judged, 1), re_ / max(judged, 1)
        # 1-day windows are distinct days; the 7-day ones slide by a day (they share 6 of 7 days) and
        # the random-row ones share days: not independent windows, so no binomial interval for them
        ci = rate_interval(ye + re_, judged) if g == "control 1 d" else "-"
        L.append(f"| {g} | {judged} of {n} | {gr} | {ye} | {re_} | {rate:.1%} | {ci} | {red:.1%} | {why} |")
    pooled = [(nd[f"validation {c} d"] + nd[f"control {c} d"], c) for c in (1, 7)]
    L += [""] + [
        f"Every no-drift {c}-day window, validation and control together: {_nongreen(rows, interval=c == 1)}."
        for rows, c in pooled
    ]
    L += [
        "",
        "The interval is exact (Clopper-Pearson) for independent days: a rate measured on a few dozen",
        "days cannot tell 5 % from 8 % (1-day windows only: 7-day windows slide by one day and share",
        "six of their seven days, so counting them as independent would overstate what they show).",
        "One seeded split's two dozen days say little: `python -m scripts.control_seeds` judges the",
        "validation days and the control days and weeks of five seeded reference/control splits, each",
        "with its own model and reference (the README keeps its latest figures).",
    ]
    if "null_coverage" in res:
        L += [
            "",
            "## The nulls checked on the reference days alone (nested)",
            "",
            "Each block of reference days held back in turn, the nulls re-estimated from the other",
            "reference days only, the block's PSI of every profiled column, its label-rate shift and its",
            "calibration gap (late rate - mean out-of-fold probability: each reference day scored by a",
            "model fitted on the other weeks, `training.reference.out_of_fold_probabilities`)",
            "scored as a window would be (`monitoring.null.held_back_scores`). No control or validation",
            "day is used: this is the evidence a threshold change may rest on. Since 2026-12-01 the",
            "stuck-value share and the share beyond the reference range of every numeric field are",
            "scored too (the value nulls). Share of held-back blocks with at least one statistic at or",
            "above z, and (last but one column) with one at or above the policy's warning for its",
            "signal at that cadence:",
            "",
            "| cadence | blocks | statistics | "
            + " | ".join(f"z ≥ {z:g}" for z in NULL_COVERAGE_Z)
            + " | the policy's warnings | statistics at z ≥ 3 (blocks) |",
            "| --- | --- | --- | " + " | ".join("---" for _ in NULL_COVERAGE_Z) + " | --- | --- |",
        ]
        for c, x in res["null_coverage"].items():
            firing = ", ".join(f"{k} ({v})" for k, v in x["firing"].items()) or "-"
            shares = " | ".join(f"{x['share'][z]:.1%}" for z in NULL_COVERAGE_Z)
            policy = f"{x['share_policy']:.1%}" if "share_policy" in x else "-"
            L.append(f"| {c} d | {x['blocks']} | {x['statistics']} | {shares} | {policy} | {firing} |")
        gap_max = [
            f"{c} d {x['calibration_gap_max_z']:.2f}"
            for c, x in res["null_coverage"].items()
            if x.get("calibration_gap_max_z") is not None
        ]
        if gap_max:
            L += ["", "Largest calibration-gap z of any held-back block: " + ", ".join(gap_max) + "."]
    L += [
        "",
        "7-day control windows are 7 consecutive control days (sliding by one, so they overlap); the",
        "28-day column is every control day at once. Days with fewer than `min_rows` flights are",
        "`not_enough_data` and not counted as judged.",
        "",
        "## Faults x cadence x verdict",
        "",
        "Injected into the validation and control windows above (1 d: every such day; 7 d: both",
        "validation weeks and the sliding control weeks; 28 d: the two-week validation window and",
        "all control days). Success: data-breaking faults red with the expected signal FIRST;",
        "covariate and label shifts non-green with the expected signal among the top 3.",
        "",
        "| fault | question | expected | 1 d: g / y / r → success (top reason) | 7 d | 28 d |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, d in res["faults"].items():
        cells = []
        for c in (1, 7, 28):
            x = d[c]
            st = x["statuses"]
            cells.append(f"{st.get('green', 0)} / {st.get('yellow', 0)} / {st.get('red', 0)} → {x['success']:.0%} ({x['top']})")
        L.append(f"| {name} | {d['kind']} | {', '.join(d['expected'])} | " + " | ".join(cells) + " |")
    untouched = untouched_windows(res["faults"])
    if untouched:
        L += [
            "",
            "Windows a fault left exactly as they were (the injected data equals the real data, so no",
            "monitor can see it; they stay in the success rates above): " + "; ".join(untouched) + ".",
        ]
    if "power" in res:
        L += [
            "",
            "## Power: the smallest shift caught 95 % of the time",
            "",
            "An upward shift of one field by k reference standard deviations, on every held-out control",
            f"window; k tried in {', '.join(str(k) for k in POWER_SHIFTS_SD)}; caught = not green.",
            "",
            "| field | reference sd | 1 day | 7 days | caught share at each k tried (1 d; 7 d) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for f, d in res["power"].items():

            def cell(x: dict, sd: float) -> str:
                return "not within 4 sd" if x["shift_sd"] is None else f"{x['shift_sd']:g} sd ({x['shift_sd'] * sd:.3g})"

            tried = "; ".join(", ".join(f"{k:g}: {v:.0%}" for k, v in d[c]["tried"].items()) for c in (1, 7))
            L.append(f"| {f} | {d[1]['sd']:.3g} | {cell(d[1], d[1]['sd'])} | {cell(d[7], d[7]['sd'])} | {tried} |")
    if "feasibility" in res:
        L += [
            "",
            "## What the world-moved targets ask of any detector",
            "",
            "Measured on the reference days alone (`run_feasibility`): every 1- and 7-day block of",
            "reference days held back, its mean minus the other reference days' mean. The RMS of that",
            "difference is how far a block moves with no drift at all; a fault's shift is d of those. A",
            "one-sided test on the mean catches 95 % of shifted windows only with a threshold at or below",
            "d - 1.645, and that threshold's false-alarm share per column, on no-drift windows, is the last",
            "column (normal approximation). The policy warns at z 3 (0.13 % per column, ~35 columns).",
            "",
            "| fault | moves | cadence | no-drift RMS (blocks) | d | threshold for 95 % | false alarms per column |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, row in res["feasibility"].items():
            for c in (1, 7):
                x = row[c]
                L.append(
                    f"| {name} | {row['field']} {row['how']} ({row['shift']:.3g}) | {c} d | {x['rms']:.3g} ({x['blocks']}) "
                    f"| {x['d']:.2f} | z {x['z_needed']:.2f} | {x['false_alarm']:.1%} |"
                )
        L += [
            "",
            "A threshold that low on one column alone breaks the no-drift budget (≤ 5 % of windows",
            "non-green over every column): a 7-day heat wave of +15 F is within what winter weeks do to",
            "the window's mean temperature, and +15 % of on-time flights late within what they do to its",
            "late rate. The model-based signals see more than the late rate alone (the calibration gap",
            "conditions on the weather; label noise lowers the realised AUC), which is why the label-rate",
            "jump is caught more often than its d says. The injected heat wave also raises humidity with",
            "the dew point unchanged, which no real air mass does: a check of that physical relation",
            "would flag the injection, not a heat wave, so none is counted. What is caught is in the power table.",
        ]
    if "estimate" in res:
        L += ["", *estimate_markdown(res["estimate"], res.get("meta", {})).splitlines()]
    L += ["", f"Run time: {res['seconds']} s on this machine.", ""]
    return "\n".join(L)


ESTIMATE_HEADING = "## The label-free estimate, week by week, April-December 2013"
ESTIMATE_COMMAND = "python -m drills.calibrate --only-estimate"


DECIDE_BEFORE = "2013-08-01"  # the point estimate's correction was chosen on the weeks before it (April-July)


def _gated(stat: Callable[[np.ndarray], float], when: Callable[[np.ndarray], bool]) -> Callable[[np.ndarray], float]:
    def correction(past: np.ndarray) -> float:
        last = past[-4:]
        return float(stat(last)) if last.size and when(last) else 0.0

    return correction


def point_estimate_markdown(est: list[dict], jan_mar: dict) -> list[str]:
    """How the point estimate's correction was chosen: every candidate replayed online on the
    uncorrected errors of the weeks (each week corrected by the weeks before it only), April-July
    (where the choice was made) apart from August-December."""
    from monitoring.performance import ESTIMATE_TOLERANCE, estimate_correction

    def beyond(x: np.ndarray) -> bool:
        return float(np.median(np.abs(x))) > ESTIMATE_TOLERANCE

    def same_sign(x: np.ndarray) -> bool:
        return x.size == 4 and bool(np.all(x > 0) or np.all(x < 0))

    candidates: dict[str, Callable[[np.ndarray], float]] = {
        "none (the uncorrected estimate)": lambda past: 0.0,
        "median of the last 4, always": _gated(np.median, lambda x: True),
        "median of the last 4, when their median abs error > 0.03": _gated(np.median, beyond),
        "**mean of the last 4, when their median abs error > 0.03 (kept: `estimate_correction`)**": estimate_correction,
        "median of the last 4, when all 4 share a sign": _gated(np.median, same_sign),
    }
    e = np.array([r["uncorrected_error"] for r in est])
    decide = np.array([r["week"] < DECIDE_BEFORE for r in est])
    small = bool(jan_mar) and all(abs(v["mean_error"]) <= 0.015 for v in jan_mar.values())
    L = [
        "**The point estimate.** The expected AUC if the model were calibrated (labels drawn with the",
        "airport-hour shock), corrected by its own recent failures: when the last 4 labelled weeks (the",
        "trust flag's) missed by a median |error| above the 0.03 tolerance, it is moved by their mean",
        "error; otherwise it is left alone (`monitoring.performance.estimate_correction`; only weeks",
        "that ended before the judged one starts, as for the interval). How it was chosen, disclosed:",
        "the uncorrected estimate's errors of all these weeks were already in this section, and seen,",
        "before the candidates below were listed. On the model's validation and held-out control weeks",
        "(Jan-Mar, sliding 7-day windows; "
        + ("; ".join(f"{k} {v['weeks']}: mean error {v['mean_error']:+.3f}" for k, v in jan_mar.items()) or "not measured here")
        + ")",
        "the uncorrected estimate's mean error was "
        + ("within ±0.015, so no fixed offset was taken from them." if small else "as shown; no fixed offset was taken from it."),
        "The candidates were compared on April-July only: none beat no correction there; the gated mean tied it and was kept",
        "because it acts only when the flag already says the estimate has just failed (in a calibrated",
        "stretch a mean of 4 noisy errors only adds noise). August-December was looked at after.",
        "",
        "| correction (each week by the weeks before it) | April-July (chosen here) | August-December | all weeks |",
        "| --- | --- | --- | --- |",
    ]
    for name, f in candidates.items():
        c = np.abs([e[i] - f(e[:i]) for i in range(e.size)])
        cells = [f"{np.median(c[m]):.4f}" if m.any() else "-" for m in (decide, ~decide, np.ones_like(decide))]
        L.append(f"| {name} | {' | '.join(cells)} |")
    return L


def estimate_markdown(est: list[dict], meta: dict) -> str:
    """The estimate section of docs/thresholds.md (also rewritten alone by `--only-estimate`)."""
    err = np.array([abs(r["error"]) for r in est])
    raw = np.array([abs(r["uncorrected_error"]) for r in est])
    decide = np.array([r["week"] < DECIDE_BEFORE for r in est])
    corrected = np.array([r["correction"] != 0.0 for r in est])
    cov = np.array([r["covered"] for r in est])
    seasoned = np.array([r["past_weeks"] >= 4 for r in est])
    half = np.array([r["half"] for r in est])
    real = np.array([r["realised"] for r in est])
    rms = meta.get("estimate_error_rms_by_cadence") or {}

    def share(key: str, m: np.ndarray | None = None) -> str:
        x = np.array([bool(r[key]) for r in est])
        return f"{x[m].mean() if m is not None else x.mean():.0%}"

    L = [
        ESTIMATE_HEADING,
        "",
        f"Produced by `{ESTIMATE_COMMAND}` (rewrites this section only) or the full `python -m drills.calibrate`.",
        "The Jan-Mar model; each week (Monday-Sunday) judged by the monitor on its probabilities alone",
        "(labels removed), then compared with the realised ROC AUC of the same week. Interval: 90 %.",
        "",
        "**The interval.** The point estimate (expected AUC if the model were calibrated, labels drawn",
        "with the airport-hour shock) has a sampling interval of about ±0.02, but the realised weekly",
        f"AUC swings {real.min():.2f}-{real.max():.2f}: a concept wobble sampling theory leaves out. The",
        "interval puts it back without looking at the week it judges: before any production labels, a",
        "prior half-width of 1.645 x the estimate's RMS error on the model's own validation windows"
        + (" (" + ", ".join(f"{c}-day windows {v:.3f}" for c, v in rms.items()) + "; the largest up to the span)" if rms else "")
        + ";",
        "then, as each past week's labels arrive, adaptive conformal inference (Gibbs & Candès 2021,",
        "step 0.05, the prior kept as one score) over the |errors| of the earlier weeks of the same",
        "model and span, read from the run store (`RunStore.estimate_errors`: windows that ended before",
        "the judged one starts); the interval is centred on the corrected estimate (below) and adapts",
        "to the errors the corrected estimate made. Nothing is fitted on the week it judges, but the design was chosen",
        "after an exploratory look at these same weeks, disclosed: split conformal over all past weeks",
        "covered 72-95 % depending on the prior, a 12-week window 80-92 %, ACI 87-90 %; the prior from",
        "1-day validation windows (rather than the 7-day RMS, 2 weeks' worth) and step 0.05 were",
        "kept from that look. No held-out year exists to confirm them; the alternatives are below.",
        "",
        *point_estimate_markdown(est, meta.get("estimate_bias_jan_mar") or {}),
        "",
        f"- all {len(est)} weeks: median |estimated - realised| **{np.median(err):.3f}** (target ≤ 0.03; uncorrected "
        f"{np.median(raw):.3f}), interval coverage **{cov.mean():.0%}** (target ≥ 85 %), median half-width {np.median(half):.3f}",
        *(
            f"- {name} ({int(m.sum())} weeks): median |error| **{np.median(err[m]):.3f}** (uncorrected "
            f"{np.median(raw[m]):.3f}), coverage **{cov[m].mean():.0%}**"
            for name, m in (("April-July, the weeks the correction was chosen on", decide), ("August-December", ~decide))
            if m.any()
        ),
        f"- weeks with ≥ 4 labelled past weeks ({int(seasoned.sum())}): coverage **{cov[seasoned].mean():.0%}**, "
        f"median |error| {np.median(err[seasoned]):.3f}; the correction acted on {int(corrected.sum())} weeks",
    ]
    L += [
        "",
        "Is the trust flag informative? Each half apart, then together (median |error|, coverage):",
        "",
        "| flag | trusted weeks | untrusted weeks |",
        "| --- | --- | --- |",
    ]
    for label, key in (
        ("inputs or output beyond their nulls / outside the reference", "trusted_inputs"),
        ("last 4 labelled weeks off by a median |error| > 0.03", "trusted_recent"),
        ("**the flag (either)**", "trusted"),
    ):
        m = np.array([bool(r.get(key)) for r in est])
        cells = [f"{int(x.sum())}: {np.median(err[x]):.3f}, {cov[x].mean():.0%}" if x.any() else "0: -" for x in (m, ~m)]
        L.append(f"| {label} | {cells[0]} | {cells[1]} |")
    L += [
        "",
        "The same weeks, other intervals (coverage of the realised AUC; median half-width):",
        "",
        "| interval | all weeks | ≥ 4 past weeks | median half-width |",
        "| --- | --- | --- | --- |",
        f"| sampling only (the previous interval) | {share('sampling_covered')} | {share('sampling_covered', seasoned)} | "
        f"{np.median([r['sampling_half'] for r in est]):.3f} |",
        f"| validation prior alone (no online update) | {share('prior_covered')} | {share('prior_covered', seasoned)} | "
        f"{np.median([r['prior_half'] for r in est]):.3f} |",
        f"| online, labels one week later (errors of weeks < w-1) | {share('late_labels_covered')} | "
        f"{share('late_labels_covered', seasoned)} | - |",
        f"| **online (the monitor's)** | {cov.mean():.0%} | {cov[seasoned].mean():.0%} | {np.median(half):.3f} |",
        "",
        "Point estimates using only past labels, on the weeks that have one (from the second week):",
        "",
        "| point estimate | median abs error |",
        "| --- | --- |",
    ]
    names = {
        "uncorrected": "the uncorrected estimate (the previous one)",
        "bias_corrected": "the uncorrected estimate minus the mean error of all past weeks",
        "median_last_4": "the uncorrected estimate minus the median error of the last 4 weeks, always",
        "last_realised": "last week's realised AUC (persistence)",
        "average_with_last": "average of the uncorrected estimate and last week's realised AUC",
        "platt_last_4": "expected AUC after recalibrating the probabilities (Platt) on the last 4 labelled weeks",
    }
    later = est[1:]
    base = np.median([abs(r["error"]) for r in later]) if later else math.nan
    L.append(f"| **the estimate, corrected (the monitor's)** | {base:.3f} |")
    beat = []
    for k, name in names.items():
        e = [abs(r["alternatives"][k] - r["realised"]) for r in later if math.isfinite(r["alternatives"][k])]
        L.append(f"| {name} | {np.median(e):.3f} |" if e else f"| {name} | - |")
        if e and np.median(e) < base:
            beat.append(f"{name} ({np.median(e):.3f})")
    better = (
        "Better than the corrected estimate on these weeks: " + "; ".join(beat) + " (not adopted: chosen on the reported weeks)."
        if beat
        else "None of them beats the corrected estimate."
    )
    L += [
        "",
        better,
        "The realised weekly AUC barely persists from one week to the next (lag-1 correlation "
        f"{np.corrcoef(real[1:], real[:-1])[0, 1]:.2f}), so",
        "past labels say how wide the interval must be more than where the next week lands.",
        "",
        "| week from | rows | estimate [90 % interval] | realised | error | covered | past weeks | trusted (why not) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in est:
        trusted = "yes" if r["trusted"] else f"no ({r['why']})"
        L.append(
            f"| {r['week']} | {r['rows']:,} | {r['estimate']:.3f} [{r['low']:.3f}, {r['high']:.3f}] | {r['realised']:.3f} "
            f"| {r['error']:+.3f} | {'yes' if r['covered'] else 'no'} | {r['past_weeks']} | {trusted} |"
        )
    return "\n".join(L) + "\n"


def splice_estimate(doc: str, section: str) -> str:
    """`doc` with its estimate section (from ESTIMATE_HEADING to the next `## ` heading or the
    closing run-time line) replaced by `section`; appended before the run-time line if absent."""
    lines = doc.splitlines(keepends=True)
    start = next((i for i, x in enumerate(lines) if x.rstrip() == ESTIMATE_HEADING), None)
    if start is None:
        end = next((i for i, x in enumerate(lines) if x.startswith("Run time:")), len(lines))
        return "".join(lines[:end]) + section + "\n" + "".join(lines[end:])
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ") or lines[i].startswith("Run time:")), len(lines)
    )
    return "".join(lines[:start]) + section + "\n" + "".join(lines[end:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/thresholds.md"))
    ap.add_argument("--no-power", action="store_true", help="skip the power table (the slowest part)")
    ap.add_argument("--no-estimate", action="store_true", help="skip the weekly label-free estimate (Apr-Dec)")
    ap.add_argument(
        "--only-estimate",
        action="store_true",
        help="measure only the weekly label-free estimate and rewrite only its section of --out (minutes, not half an hour)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--model-days",
        choices=MODEL_DAYS,
        default="reference",
        help="fit the model on the reference days only (default: the control days unseen by the model too) or on all fit days",
    )
    ap.add_argument("--json", type=Path, default=None, help="also save the raw results here (to re-render the doc)")
    ap.add_argument(
        "--render", type=Path, default=None, help="render the doc from a saved --json file instead of running (no training)"
    )
    args = ap.parse_args()
    if args.render is not None:
        res = load_results(args.render)
        _write(args.out, markdown(res))
        return
    if args.only_estimate:
        t0 = time.perf_counter()
        st = setup(args.seed, model_days=args.model_days)
        est = run_estimate(st)
        meta = {
            "estimate_error_rms_by_cadence": st.bundle.metadata["monitoring"].get("estimate_error_rms_by_cadence"),  # type: ignore[attr-defined]
            "estimate_bias_jan_mar": estimate_bias_jan_mar(st),
        }
        section = estimate_markdown(est, meta)
        if args.json is not None:
            import json

            args.json.write_text(json.dumps({"estimate": est, "meta": meta}, indent=1, default=str), encoding="utf-8")
        old = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        new = splice_estimate(old, section)
        what = "unchanged" if new == old else "rewriting its estimate section only"
        print(f"{args.out}: {what} ({time.perf_counter() - t0:.0f} s)")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(new, encoding="utf-8")
        print(section)
        return
    res = run(seed=args.seed, power=not args.no_power, estimate=not args.no_estimate, model_days=args.model_days)
    text = markdown(res)
    if args.json is not None:
        import json

        args.json.write_text(json.dumps(res, indent=1, default=str), encoding="utf-8")
    _write(args.out, text)


def _write(out: Path, text: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        same = out.read_text(encoding="utf-8") == text
        print(f"{out} exists: {'unchanged' if same else 'OVERWRITING it (the previous version is in git)'}")
    out.write_text(text, encoding="utf-8")
    print(text)


def load_results(path: Path) -> dict:
    """A `--json` file read back with its numeric keys (cadences, shifts, z) as numbers again."""
    import json

    def number(k: str) -> object:
        try:
            return int(k)
        except ValueError:
            try:
                return float(k)
            except ValueError:
                return k

    return json.loads(path.read_text(encoding="utf-8"), object_hook=lambda d: {number(k): v for k, v in d.items()})


if __name__ == "__main__":
    main()
