"""`unit_change` on every day of 2013 the reference never saw, in every season.

`python -m scripts.unit_seasons` trains the default model's reference in memory (no MLflow) and checks
the `unit_change` signal alone (`monitoring.quality.unit_change`, every conversion the contract's unit
admits) on one-day windows:

- false alarms, nested on the reference days: each reference day against a reference built from the
  other reference days (no control or validation day is used);
- false alarms on every day of April-December 2013 against the Jan-Mar reference: the seasons move
  every weather field beyond the reference, with no unit changed; and per route (the fleet's case:
  a small reference, whose lattice can be coarser than its feed's);
- detection on the same April-December days, each field sent in another unit, for the conversions a
  sender plausibly makes (a January reference's grid does not reach a July day's Celsius values).

Prints Markdown tables (docs/blind-spots.md keeps the latest, with this command).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

ROUTE_ROWS = 300  # a route with fewer reference flights is not checked on its own

# The conversions a sender plausibly makes, per field (pint admits many more; all are tried).
SENT_IN = {
    "temp": ("degree_Celsius",),
    "dewp": ("degree_Celsius",),
    "wind_speed": ("kilometer_per_hour", "meter_per_second", "knot"),
    "wind_gust": ("kilometer_per_hour",),
    "precip": ("millimeter",),
    "pressure": ("centimeter_H2O", "millistandard_atmosphere"),
    "visib": ("kilometer",),
    "distance": ("kilometer",),
}


def main() -> None:
    from data_contracts.windows import local_dates
    from drills.calibrate import setup
    from monitoring.quality import reference_for, unit_change
    from training.data import load_flights

    t0 = time.perf_counter()
    s = setup()
    fields = {f.name: f for f in s.contract.numeric_fields if f.conversions()}

    def references(frame: pd.DataFrame) -> dict:
        # time=None: the unit check reads the lattice, grid and quantiles, never the stuck-run reference
        return {n: reference_for(frame, n, "numeric", f.unit, time=None) for n, f in fields.items()}

    def flagged(refs: dict, day: pd.DataFrame) -> list[str]:
        values = {n: day[n].dropna().to_numpy(dtype="float64") for n in fields}
        return [n for n, f in fields.items() if unit_change(refs[n], values[n], f.conversions())[0]]

    nested = {}
    for d in s.reference_days:
        nested[d] = flagged(references(pd.concat([s.frames[x] for x in s.reference_days if x != d])), s.frames[d])
    reference = pd.concat([s.frames[x] for x in s.reference_days])
    refs = references(reference)
    flights = load_flights()
    days = local_dates(flights, s.contract).map(lambda d: d.isoformat()).to_numpy()
    later = {d: g for d, g in flights.groupby(days) if d >= "2013-04-01"}
    false_alarms = {d: flagged(refs, g) for d, g in later.items()}
    # Routes: one route's reference is far smaller than the single model's, so its lattice can be
    # coarser than its feed (the fleet's case). Each route with >= ROUTE_ROWS reference flights, its
    # April-December days against its own Jan-Mar reference.
    sizes = reference.groupby(["origin", "dest"]).size()
    route_days, route_flags = 0, []
    for origin, dest in sizes[sizes >= ROUTE_ROWS].index:
        mine = (reference["origin"] == origin) & (reference["dest"] == dest)
        rrefs = references(reference[mine])
        for d, g in later.items():
            g = g[(g["origin"] == origin) & (g["dest"] == dest)]
            if len(g):
                route_days += 1
                route_flags += [f"{origin}-{dest} {d}: {n}" for n in flagged(rrefs, g)]
    caught: dict[tuple[str, str], list[int]] = {}
    for g in later.values():
        for name, targets in SENT_IN.items():
            conversions = fields[name].conversions()
            v = g[name].dropna().to_numpy(dtype="float64")
            for c in (c for c in conversions if c.to in targets):
                sent = c.apply(v)
                if np.array_equal(sent, v):  # 0 mm of rain on a dry day is 0 inch: nothing to see
                    continue
                tally = caught.setdefault((name, c.to), [0, 0])
                tally[0] += 1
                tally[1] += int(unit_change(refs[name], sent, conversions)[0])

    print("| no-drift 1-day windows | days | days with a unit_change | fields |")
    print("|---|---|---|---|")
    runs = (
        ("reference days, each against the other reference days", nested),
        ("April-December 2013 against Jan-Mar", false_alarms),
    )
    for label, res in runs:
        hit = "; ".join(f"{d}: {', '.join(f)}" for d, f in res.items() if f)
        print(f"| {label} | {len(res)} | {sum(1 for f in res.values() if f)} | {hit or '-'} |")
    n_routes = int((sizes >= ROUTE_ROWS).sum())
    label = f"{n_routes} routes' April-December days, each against its own Jan-Mar reference"
    print(f"| {label} | {route_days} | {len(route_flags)} | {'; '.join(route_flags) or '-'} |")
    print()
    print("| field sent in | April-December days the fault changed | caught | share |")
    print("|---|---|---|---|")
    for (name, to), (n, k) in caught.items():
        print(f"| {name} in {to} | {n} | {k} | {k / n:.0%} |")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
