"""How `stuck_run_ratio` behaves on the 2013 weather, counting every hour of a run (the rule up to
2026-12-01) and counting only the corroborated hours of a run at the field's resting value (now).

`python -m scripts.stuck_runs` builds the default model's quality reference (Jan 1 - Mar 17 fit,
its reference days, seed 0; no model is trained), then prints

1. per weather field: the resting value, the longest run of the reference counted both ways;
2. the ratio on natural windows of every flight from Mar 18 on (calendar months Apr-Dec and 28-day
   windows every 7 days), both ways: how close the weather itself comes to the threshold;
3. days until a reading frozen at one airport turns red (ratio >= the policy's critical), the
   fault starting on every Monday from Mar 18 to Nov 25 at each airport in turn, looked at for up
   to 60 days: precipitation at 0, visibility at 10 miles, temperature at its window median.

The change was motivated by September 2013 in the year replay (docs/year-2013.md): a dry month
whose zero run beat 3x the reference's longest was red as a frozen precipitation sensor.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

MAX_DAYS = 60
WEATHER = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib")
HOUR_NS = 3_600_000_000_000


def main() -> None:
    from data_contracts.contract import load_contract
    from data_contracts.windows import on_days
    from monitoring.policy import load_policy
    from monitoring.quality import MIN_RUN_HOURS, longest_run_hours, resting_value, site_readings
    from training.data import load_flights
    from training.reference import split_days
    from training.train import TrainConfig, split

    t0 = time.perf_counter()
    critical = next(r for r in load_policy().rules if r.signal == "stuck_run_ratio").critical
    assert critical is not None
    contract, config = load_contract(), TrainConfig()
    flights = load_flights()
    fit, _ = split(contract, flights, config)
    ref = on_days(contract, fit, split_days(contract, fit, config.seed)[0])

    refs: dict[str, tuple[float, float, float | None]] = {}  # field -> (raw base, corroborated base, resting)
    print("| field | resting value | longest run, every hour | longest run, corroborated |\n|---|---|---|---|")
    for name in WEATHER:
        sh = site_readings(ref, name, "time_hour", "origin")
        if sh is None:
            continue
        rest = resting_value(sh)
        raw, corr = longest_run_hours(sh)[0], longest_run_hours(sh, rest)[0]
        refs[name] = (max(raw, MIN_RUN_HOURS), max(corr, MIN_RUN_HOURS), rest)
        print(f"| {name} | {'-' if rest is None else f'{rest:g}'} | {raw:g} h | {corr:g} h |")

    all_sh = {n: site_readings(flights, n, "time_hour", "origin") for n in refs}
    t = pd.to_datetime(flights["time_hour"], utc=True)

    def ratios(lo: pd.Timestamp, hi: pd.Timestamp) -> dict[str, tuple[float, float]]:
        h0, h1 = lo.value // HOUR_NS, hi.value // HOUR_NS
        out = {}
        for n, (raw, corr, rest) in refs.items():
            sh = all_sh[n]
            assert sh is not None
            w = sh[(sh["hour"] >= h0) & (sh["hour"] < h1)]
            out[n] = (longest_run_hours(w)[0] / raw, longest_run_hours(w, rest)[0] / corr)
        return out

    print("\n| window | largest ratio, every hour | largest ratio, corroborated |\n|---|---|---|")
    for m in range(4, 13):
        lo = pd.Timestamp(f"2013-{m:02d}-01", tz="UTC")
        r = ratios(lo, lo + pd.offsets.MonthBegin(1))
        old, new = max(r, key=lambda n: r[n][0]), max(r, key=lambda n: r[n][1])
        print(f"| 2013-{m:02d} | {r[old][0]:.2f} ({old}) | {r[new][1]:.2f} ({new}) |")
    worst: dict[str, list[float]] = {n: [0.0, 0.0] for n in refs}
    lo = pd.Timestamp("2013-03-18", tz="UTC")
    while lo + pd.Timedelta(days=28) <= t.max():
        for n, (a, b) in ratios(lo, lo + pd.Timedelta(days=28)).items():
            worst[n] = [max(worst[n][0], a), max(worst[n][1], b)]
        lo += pd.Timedelta(days=7)
    print("\n| field | 28-day windows: largest ratio, every hour | corroborated |\n|---|---|---|")
    for n, (a, b) in worst.items():
        print(f"| {n} | {a:.2f} | {b:.2f} |")

    print(f"\n| reading frozen at one airport | starts | red within {MAX_DAYS} days | days to red: p10 / median / p90 |")
    print("|---|---|---|---|")
    for name, frozen in (("precip", 0.0), ("visib", 10.0), ("temp", None)):
        _, base, rest = refs[name]
        sh = all_sh[name]
        assert sh is not None
        days: list[int | None] = []
        for site in ("EWR", "JFK", "LGA"):
            for start in pd.date_range("2013-03-18", "2013-11-25", freq="7D", tz="UTC"):
                h0 = start.value // HOUR_NS
                w = sh[(sh["hour"] >= h0) & (sh["hour"] < h0 + MAX_DAYS * 24)].copy()
                at = w["site"] == site
                w.loc[at, "v"] = frozen if frozen is not None else float(w.loc[at, "v"].median())
                days.append(
                    next(
                        (
                            d
                            for d in range(1, MAX_DAYS + 1)
                            if longest_run_hours(w[w["hour"] < h0 + d * 24], rest)[0] / base >= critical
                        ),
                        None,
                    )
                )
        got = np.array([d for d in days if d is not None], dtype=float)
        what = f"{name} at {'its median' if frozen is None else f'{frozen:g}'}"
        spread = " / ".join(f"{np.percentile(got, q):.0f}" for q in (10, 50, 90)) if got.size else "-"
        print(f"| {what} | {len(days)} | {got.size} | {spread} |")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
