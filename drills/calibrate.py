"""Thresholds from evidence: false alarms on real no-drift windows, detection on injected faults.

`python -m drills.calibrate` trains the default model in memory, then builds windows shaped
like the prediction log (raw fields, the served features and probabilities computed by the same
fitted pipeline the service runs, labels) from real 2013 flights:

- no-drift windows: random samples of the held-out control days of the training period (days the
  reference profile never saw), at 500, 2,000 and 10,000 rows;
- fault windows: the same control windows with one fault injected into the raw inputs, features
  and probabilities recomputed as the service would.

Each window is judged on its own (no hysteresis history) with the default policy. It prints and
writes docs/thresholds.md: the verdict-level false-alarm rate, the confusion table (fault x
verdict) with whether the expected signal is among the top reasons, and the per-column PSI excess
percentiles on no-drift windows that each default threshold was set against.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data_contracts.contract import Contract, load_contract
from monitoring.monitor import ModelContext, compute_signals
from monitoring.policy import PolicySettings, decide, load_policy

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


@dataclass(frozen=True)
class Case:
    name: str
    fault: Fault
    expected: tuple[str, ...]  # signals of which one must be among the top reasons
    expect_green: bool = False


def cases(ref: pd.DataFrame) -> list[Case]:
    temp_sd = float(ref["temp"].std())
    return [
        Case("heat wave (+0.5 sd temp)", lambda w, r: w.assign(temp=w["temp"] + 0.5 * temp_sd), ("psi",)),
        Case(
            "heat wave (+15 F, humid +15)",
            lambda w, r: w.assign(temp=w["temp"] + 15, humid=(w["humid"] + 15).clip(upper=100)),
            ("psi", "beyond_reference_rate"),
        ),
        Case("F -> C (temp)", lambda w, r: w.assign(temp=(w["temp"] - 32) * 5 / 9), ("unit_change",)),
        Case("40 % NaN spike (pressure)", nan_spike("pressure", 0.4), ("missing_rate_increase",)),
        Case(
            "new carrier (20 %)",
            lambda w, r: w.assign(carrier=np.where(r.random(len(w)) < 0.2, "ZZ", w["carrier"])),
            ("unseen_category_rate",),
        ),
        Case("stuck sensor (humid)", lambda w, r: w.assign(humid=float(w["humid"].median())), ("stuck_value_share",)),
        Case("outlier 0.1 % (wind_speed 1,040)", outlier("wind_speed", 1040.0, 0.001), (), expect_green=True),
        Case(
            "outlier 0.1 % + 0.5 sd temp shift",
            lambda w, r: outlier("wind_speed", 1040.0, 0.001)(w.assign(temp=w["temp"] + 0.5 * temp_sd), r),
            ("psi",),
        ),
    ]


def judge(ctx: ModelContext, contract: Contract, policy: PolicySettings, window: pd.DataFrame):  # type: ignore[no-untyped-def]
    ws = compute_signals(ctx, contract, window)
    return decide(ws.signals, policy, (), rows=ws.rows), ws


def run(sizes: tuple[int, ...] = (500, 2000, 10000), n_windows: int = 60, n_fault_windows: int = 20, seed: int = 0) -> dict:
    from data_contracts.windows import on_days
    from training.data import load_flights
    from training.train import TrainConfig, fit_bundle, split

    t0 = time.perf_counter()
    contract = load_contract()
    flights = load_flights()
    config = TrainConfig(seed=seed)
    fit, val = split(contract, flights, config)
    out = fit_bundle(contract, fit, val, config)
    bundle = out.bundle
    ctx = ModelContext.from_bundle("flights-late", "calibration", bundle)
    policy = load_policy()
    control = on_days(contract, fit, bundle.metadata["monitoring"]["control_days"])
    ref = on_days(contract, fit, bundle.metadata["monitoring"]["reference_days"])
    rng = np.random.default_rng(seed)

    results: dict = {"sizes": sizes, "no_drift": {}, "faults": {}, "psi_excess": {}, "control_rows": len(control)}
    for size in sizes:
        statuses: Counter[str] = Counter()
        fired: Counter[str] = Counter()
        psi_vals: dict[str, list[float]] = defaultdict(list)
        for i in range(n_windows):
            w = control.sample(size, random_state=seed * 1000 + i)
            verdict, ws = judge(ctx, contract, policy, log_frame(bundle, contract, w))
            statuses[verdict.status] += 1
            for r in verdict.reasons:
                fired[f"{r.signal}:{r.feature or ''}"] += 1
            for s in ws.signals:
                if s.feature and s.signal not in ("skew_mismatch_rate",):
                    psi_vals[f"{s.signal}:{s.feature}"].append(s.value)
        results["no_drift"][size] = {
            "statuses": dict(statuses),
            "false_alarm_rate": 1 - statuses["green"] / n_windows,
            "fired": dict(fired.most_common(8)),
        }
        results["psi_excess"][size] = {k: (float(np.percentile(v, 95)), float(np.max(v))) for k, v in psi_vals.items()}
        for case in cases(ref):
            st: Counter[str] = Counter()
            hit = 0
            for i in range(n_fault_windows):
                w = control.sample(size, random_state=seed * 1000 + 500 + i)
                faulty = case.fault(w.reset_index(drop=True), rng)
                verdict, _ = judge(ctx, contract, policy, log_frame(bundle, contract, faulty))
                st[verdict.status] += 1
                top = {r.signal for r in verdict.top_reasons(3)}
                hit += (
                    (verdict.status == "green")
                    if case.expect_green
                    else bool(top & set(case.expected)) and verdict.status != "green"
                )
            results["faults"].setdefault(case.name, {})[size] = {
                "statuses": dict(st),
                "success_rate": hit / n_fault_windows,
                "expected": list(case.expected) or ["green"],
            }
    results["seconds"] = round(time.perf_counter() - t0, 1)
    return results


def markdown(res: dict) -> str:
    sizes = res["sizes"]
    lines = [
        "# Thresholds: measured, not folklore",
        "",
        "Produced by `python -m drills.calibrate` (writes this file). Windows are drawn from the",
        f"held-out control days of the training window ({res['control_rows']} flights on days the reference",
        "profile never saw); features and probabilities are computed by the same fitted pipeline the",
        "service runs. Each window is judged alone (no hysteresis), with `monitoring/policy.yaml`.",
        "",
        "## False alarms on real no-drift windows",
        "",
        "| rows | windows | green | yellow | red | non-green rate | reasons that fired |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size in sizes:
        d = res["no_drift"][size]
        s = d["statuses"]
        n = sum(s.values())
        fired = ", ".join(f"{k} ({v})" for k, v in d["fired"].items()) or "-"
        lines.append(
            f"| {size:,} | {n} | {s.get('green', 0)} | {s.get('yellow', 0)} | {s.get('red', 0)} "
            f"| {d['false_alarm_rate']:.1%} | {fired} |"
        )
    lines += [
        "",
        "## Injected faults (confusion table)",
        "",
        "Success = not green AND the expected signal among the top 3 reasons (for the outlier alone: green).",
        "",
    ]
    lines.append("| fault | expected signal | " + " | ".join(f"{s:,} rows: green / yellow / red → success" for s in sizes) + " |")
    lines.append("| --- | --- | " + " | ".join("---" for _ in sizes) + " |")
    for name, by_size in res["faults"].items():
        cells = []
        for size in sizes:
            d = by_size[size]
            s = d["statuses"]
            cells.append(f"{s.get('green', 0)} / {s.get('yellow', 0)} / {s.get('red', 0)} → {d['success_rate']:.0%}")
        lines.append(f"| {name} | {', '.join(by_size[sizes[0]]['expected'])} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Every per-column signal on no-drift windows (95th percentile / max)",
        "",
        "PSI is the bias-corrected excess. Signals that stay 0 everywhere are left out.",
        "",
        "| signal:column | " + " | ".join(f"{s:,} rows" for s in sizes) + " |",
        "| --- | " + " | ".join("---" for _ in sizes) + " |",
    ]
    cols = sorted(res["psi_excess"][sizes[0]], key=lambda c: -res["psi_excess"][sizes[-1]][c][1])
    for c in cols:
        if max(res["psi_excess"][s][c][1] for s in sizes) <= 0.0:
            continue
        lines.append(
            f"| {c} | " + " | ".join(f"{res['psi_excess'][s][c][0]:.3f} / {res['psi_excess'][s][c][1]:.3f}" for s in sizes) + " |"
        )
    lines += ["", f"Run time: {res['seconds']} s on this machine.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, default=60)
    ap.add_argument("--fault-windows", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("docs/thresholds.md"))
    args = ap.parse_args()
    res = run(n_windows=args.windows, n_fault_windows=args.fault_windows)
    text = markdown(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
