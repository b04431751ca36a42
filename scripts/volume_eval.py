"""Volume: false alarms on days the reference never saw and detection of lost traffic and spikes.

`python -m scripts.volume_eval` trains the default model in memory (no MLflow), cuts the held-out
control days and the validation days (Mar 18-31) into contiguous 1-day windows (and the validation
days into 7-day windows), applies each fault, and judges every window with the real monitor
(`compute_signals`, `volume_signals` with the frozen hours-of-week reference, `judge` under
monitoring/policy.yaml). Every window is closed (watermark = its end). Prints a Markdown table: per
fault and cadence, statuses with and without the volume signal, share red, share red with
`volume_change` first, and which view came first; then every no-fault window the volume turned
non-green, with its reason.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import pandas as pd

Fault = Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame]


def faults() -> dict[str, tuple[Fault, bool]]:
    """name -> (fault, whether volume_change is the expected first reason)."""

    def drop_origin(w: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        return w[w["origin"] != rng.choice(sorted(w["origin"].unique()))]

    def drop_share(share: float) -> Fault:
        return lambda w, rng: w[rng.random(len(w)) >= share]

    def drop_6h(w: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        # 6 contiguous local hours, starting at a seeded hour between 05:00 and 18:00 (the hours that
        # carry traffic: 00:00-05:00 carries none, so a gap there loses nothing)
        local = w["time_hour"].dt.tz_convert("America/New_York")
        first = local.dt.normalize().min() + pd.Timedelta(hours=int(rng.integers(5, 19)))
        return w[(local < first) | (local >= first + pd.Timedelta(hours=6))]

    def spike(w: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        # a second feed of the same flights with its own readings: not exact duplicates
        twin = w.assign(distance=w["distance"] + 1)
        return pd.concat([w, twin]).sort_values("time_hour", kind="stable")

    return {
        "none": (lambda w, rng: w, False),
        "one origin's feed gone": (drop_origin, True),
        "40 % of records dropped": (drop_share(0.40), True),
        "30 % of records dropped": (drop_share(0.30), True),
        "6 contiguous hours gone": (drop_6h, True),
        "x2 (a second feed)": (spike, True),
        "x2 (every record twice)": (lambda w, rng: pd.concat([w, w]).sort_values("time_hour", kind="stable"), False),
    }


def main() -> None:
    from data_contracts.windows import local_dates, window_bounds
    from drills.calibrate import log_frame
    from monitoring.monitor import compute_signals, judge
    from monitoring.volume import volume_signals
    from scripts.evaluation import trained_default

    t0 = time.perf_counter()
    t = trained_default("volume")
    contract, val, bundle, ctx, policy, control = t.contract, t.val, t.bundle, t.ctx, t.policy, t.control
    vref = ctx.volume_reference
    assert vref is not None

    def windows(frame: pd.DataFrame, n: int) -> list[tuple[pd.DataFrame, object, object]]:
        d = local_dates(frame, contract)
        first = min(d)
        k = (d - first).map(lambda x: x.days // n)
        out = []
        for _, g in frame.groupby(k):
            days = local_dates(g, contract)
            lo, hi = window_bounds(min(days), max(days), contract.timezone)
            out.append((g, lo, hi))
        return out

    cadences = {"control 1d": windows(control, 1), "validation 1d": windows(val, 1), "validation 7d": windows(val, 7)}
    print("| fault | cadence | windows | statuses | without volume | red | red, `volume_change` first | first view |")
    print("|---|---|---|---|---|---|---|---|")
    alarms = []
    for cad, ws in cadences.items():
        for name, (fault, expect) in faults().items():
            rng = np.random.default_rng(0)
            statuses: Counter[str] = Counter()
            before: Counter[str] = Counter()
            views: Counter[str] = Counter()
            red = first = 0
            for w, lo, hi in ws:
                fw = fault(w.reset_index(drop=True), rng).reset_index(drop=True)
                sig = compute_signals(ctx, contract, log_frame(bundle, contract, fw))
                vol, det = volume_signals(vref, sig.arrivals, 0, lo, hi, watermark=hi)
                v = judge(sig, {}, policy, [], volume=tuple(vol), expected_rows=float(det.get("expected", 0))).verdict
                statuses[v.status] += 1
                before[judge(sig, {}, policy, []).verdict.status] += 1
                red += v.status == "red"
                top = v.reasons[0] if v.reasons else None
                first += v.status == "red" and top is not None and top.signal == "volume_change"
                vr = [r for r in v.reasons if r.signal == "volume_change"]
                views.update([vr[0].feature or "total"] if vr else [])
                if name == "none" and vr:
                    alarms.append(f"- {cad} {lo:%Y-%m-%d} ({len(w)} flights): {v.status}; {vr[0].message}")
            n = len(ws)
            st = ", ".join(f"{k} {c}" for k, c in sorted(statuses.items()))
            bf = ", ".join(f"{k} {c}" for k, c in sorted(before.items()))
            vw = ", ".join(f"{k} {c}" for k, c in views.most_common(4)) or "-"
            hit = f"{first / n:.0%}" if expect else f"({first / n:.0%})"
            print(f"| {name} | {cad} | {n} | {st} | {bf} | {red / n:.0%} | {hit} | {vw} |", flush=True)
    print("\nNo-fault windows with a volume reason:")
    print("\n".join(alarms) or "- none")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
