"""Detection of the issue-11 blind spots on contiguous windows of days the reference never saw.

`python -m scripts.blind_spots` trains the default model in memory (no MLflow), cuts the held-out
control days and the validation days (Mar 18-31) into contiguous 1-day windows (and the
validation days into 7-day and 14-day windows), injects each fault, judges every window with the
real monitor (`compute_signals` + `judge` under monitoring/policy.yaml) and prints a Markdown
table: per fault and cadence, the share of windows red, red with the expected reason first, and
the share of windows the fault changed at all (precipitation in mm on a dry day is the same data).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

Fault = Callable[[pd.DataFrame], pd.DataFrame]
STUCK = ("stuck_value_share", "stuck_value_share_vs_null", "stuck_run_ratio")  # each names a frozen reading


def faults() -> dict[str, tuple[Fault, tuple[tuple[str, ...], str | None] | None]]:
    def scale(col: str, k: float) -> Fault:
        return lambda w: w.assign(**{col: w[col] * k})

    def at_ewr(col: str, v: float) -> Fault:
        return lambda w: w.assign(**{col: w[col].where(w["origin"] != "EWR", v)})

    return {
        "none": (lambda w: w, None),
        "wind speed in km/h": (scale("wind_speed", 1.609344), (("unit_change",), "wind_speed")),
        "wind speed in m/s": (scale("wind_speed", 0.44704), (("unit_change",), "wind_speed")),
        "wind speed in knots": (scale("wind_speed", 0.868976), (("unit_change",), "wind_speed")),
        "precip in mm": (scale("precip", 25.4), (("unit_change",), "precip")),
        "temp in °C": (lambda w: w.assign(temp=(w["temp"] - 32) * 5 / 9), (("unit_change",), "temp")),
        "visib in km": (scale("visib", 1.609344), (("unit_change",), "visib")),
        "every record x5": (
            lambda w: pd.concat([w] * 5).sort_values("time_hour", kind="stable"),
            (("duplicate_share",), None),
        ),
        "dead pressure sensor": (lambda w: w.assign(pressure=np.nan), (("missing_rate_increase",), "pressure")),
        "humid frozen at median": (lambda w: w.assign(humid=float(w["humid"].median())), (STUCK, "humid")),
        # at every airport at once: a resting value frozen everywhere reads as a clear or dry spell
        "visib frozen at 10": (lambda w: w.assign(visib=10.0), (STUCK, "visib")),
        "precip frozen at 0": (lambda w: w.assign(precip=0.0), (STUCK, "precip")),
        # at one airport while the others keep reporting (the run counts the hours they disagree)
        "visib frozen at 10 at EWR": (at_ewr("visib", 10.0), (STUCK, "visib")),
        "precip frozen at 0 at EWR": (at_ewr("precip", 0.0), (STUCK, "precip")),
    }


def main() -> None:
    from data_contracts.windows import local_dates
    from drills.calibrate import log_frame
    from monitoring.monitor import compute_signals, judge
    from scripts.evaluation import trained_default

    t0 = time.perf_counter()
    t = trained_default("blind-spots")
    contract, val, bundle, ctx, policy, control = t.contract, t.val, t.bundle, t.ctx, t.policy, t.control

    def days(frame: pd.DataFrame, n: int) -> list[pd.DataFrame]:
        d = local_dates(frame, contract)
        first = min(d)
        k = (d - first).map(lambda x: x.days // n)
        return [g for _, g in frame.groupby(k) if (g.shape[0] > 0)]

    cadences = {
        "control 1d": [g for _, g in control.groupby(local_dates(control, contract))],
        "validation 1d": days(val, 1),
        "validation 7d": days(val, 7),
        "validation 14d": [val],
    }
    rows = []
    for cad, windows in cadences.items():
        for name, (fault, expect) in faults().items():
            red = first = changed = 0
            statuses: dict[str, int] = {}
            for w in windows:
                w = w.reset_index(drop=True)
                fw = fault(w)
                changed += not (len(fw) == len(w) and fw.equals(w))
                ws = compute_signals(ctx, contract, log_frame(bundle, contract, fw))
                v = judge(ws, {}, policy, []).verdict
                statuses[v.status] = statuses.get(v.status, 0) + 1
                red += v.status == "red"
                top = v.reasons[0] if v.reasons else None
                first += (
                    expect is not None
                    and v.status == "red"
                    and top is not None
                    and top.signal in expect[0]
                    and top.feature == expect[1]
                )
            n = len(windows)
            rows.append(
                f"| {name} | {cad} | {n} | {changed}/{n} | {red / n:.0%} | "
                + (f"{first / n:.0%} (`{' or '.join(expect[0])}`)" if expect else "-")
                + f" | {', '.join(f'{k} {c}' for k, c in sorted(statuses.items()))} |"
            )
            print(rows[-1], flush=True)
    print()
    print("| fault | cadence | windows | fault changed the data | red | red, expected reason first | statuses |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
