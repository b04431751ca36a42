"""The unit check on real 2013 days the Jan-Mar reference never saw (`python -m scripts.unit_seasons`
runs every day; these are the days that once went wrong, and the season the grid could not reach)."""

from __future__ import annotations

import pandas as pd
import pytest

from data_contracts.windows import local_dates, on_days
from monitoring.quality import reference_for, unit_change
from training.reference import split_days
from training.train import TrainConfig, split


@pytest.fixture(scope="module")
def reference_and_days(contract, flights):
    fit, _ = split(contract, flights, TrainConfig())
    ref_days, _ = split_days(contract, fit, TrainConfig().seed)
    days = local_dates(flights, contract).map(lambda d: d.isoformat()).to_numpy()
    return on_days(contract, fit, ref_days), flights, days


def check(contract, reference: pd.DataFrame, window: pd.DataFrame, name: str, sent=lambda v: v) -> float:
    f = contract.field(name)
    ref = reference_for(reference, name, "numeric", f.unit, time=None)
    return unit_change(ref, sent(window[name].dropna().to_numpy(dtype="float64")), f.conversions())[0]


def test_days_that_once_raised_a_false_unit_change_do_not(contract, reference_and_days):
    reference, flights, days = reference_and_days
    # the whole model's reference: a November day beyond its pressure range matched cm of water by quantiles
    assert check(contract, reference, flights[days == "2013-11-04"], "pressure") == 0.0

    def route(origin, dest):
        return reference[(reference["origin"] == origin) & (reference["dest"] == dest)]

    def route_day(origin, dest, day):
        return flights[(days == day) & (flights["origin"] == origin).to_numpy() & (flights["dest"] == dest).to_numpy()]

    # one route's small reference: a few readings carried through a large scale looked near its grid
    assert check(contract, route("EWR", "PHX"), route_day("EWR", "PHX", "2013-11-20"), "pressure") == 0.0
    assert check(contract, route("EWR", "DFW"), route_day("EWR", "DFW", "2013-06-07"), "precip") == 0.0
    # and a morning at 0.12 mile, finer than JFK-LAX's reference lattice of quarter miles, is no conversion
    jfk_lax = route("JFK", "LAX")
    assert check(contract, jfk_lax, pd.DataFrame({"visib": [0.12, 2.0, 5.0, 10.0]}), "visib") == 0.0


def test_a_july_day_in_celsius_and_a_june_rain_in_millimetres_are_unit_changes(contract, reference_and_days):
    reference, flights, days = reference_and_days
    july = flights[days == "2013-07-15"]
    assert check(contract, reference, july, "temp") == 0.0
    assert check(contract, reference, july, "temp", lambda v: (v - 32) * 5 / 9) == 1.0
    wet = flights[days == "2013-06-07"]
    assert (wet["precip"] > 0).any()
    assert check(contract, reference, wet, "precip", lambda v: v * 25.4) == 1.0
