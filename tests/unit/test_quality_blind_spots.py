"""The blind spots of issue 11 on small, known inputs: units from pint, duplicates, frozen readings,
refused traffic that never reached the log."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from data_contracts.contract import REJECTED_BY_EVENT, REJECTED_RECORDS, unit_conversions
from monitoring.monitor import WindowSignals, judge
from monitoring.performance import window_performance
from monitoring.policy import evaluate_signals, load_policy
from monitoring.quality import (
    P_COINCIDENCE,
    QualityAccumulator,
    coincidence,
    lattice,
    longest_run_hours,
    quality_signals,
    reference_for,
    reference_to_mapping,
    references_from_mapping,
    unit_change,
)
from monitoring.skew import SkewReport

KNOT = 1.150779  # the 2013 feed reports wind in knots, converted to mph: a grid of 1.15 mph


def targets(unit, lo, hi):
    return {c.to: c for c in unit_conversions(unit, lo, hi)}


def test_conversions_come_from_pint_and_the_contract_range():
    wind = targets("mph", 0, 150)
    assert {"kilometer_per_hour", "meter_per_second", "knot"} <= set(wind)
    assert wind["kilometer_per_hour"].scale == pytest.approx(1.609344)
    rain = targets("inches", 0, 10)
    assert rain["millimeter"].scale == pytest.approx(25.4)
    temp = targets("degF", -40, 130)
    assert temp["degree_Celsius"].apply(32.0) == pytest.approx(0.0, abs=1e-9)  # an offset unit, not a delta
    assert temp["degree_Celsius"].apply(212.0) == pytest.approx(100.0)
    # kelvin sends every valid temperature outside [-40, 130]: the door refuses it, no silent change
    assert "kelvin" not in temp
    # hectopascal is the identity for millibars; inches of mercury are refused at the door
    pressure = targets("millibars", 870, 1085)
    assert "hectopascal" not in pressure and "inch_Hg" not in pressure
    assert unit_conversions("local clock time (America/New_York)", 0, 2359) == ()
    assert unit_conversions(None, 0, 1) == ()


def test_every_declared_unit_of_the_contract_is_read(contract):
    for f in contract.numeric_fields:
        if f.format == "hhmm":
            assert f.conversions() == ()
        else:
            assert f.conversions(), f"{f.name}: pint cannot read unit {f.unit!r}"


@pytest.fixture(scope="module")
def weather():
    """Hourly readings at three sites over 30 days (15 of reference), 6 flights an hour sharing each reading,
    quantized like the 2013 feed (wind on a knot grid, rain in hundredths of an inch, mostly 0)."""
    rng = np.random.default_rng(0)
    hours = pd.date_range("2013-01-01", periods=30 * 24, freq="h", tz="UTC")
    rows = []
    for site in ("EWR", "JFK", "LGA"):
        knots = np.clip(np.round(8 + 4 * np.sin(np.arange(hours.size) / 9) + rng.normal(0, 3, hours.size)), 0, 30)
        rain = np.where(rng.random(hours.size) < 0.12, np.round(rng.gamma(1.2, 0.04, hours.size), 2), 0.0)
        for i, h in enumerate(hours):
            for _ in range(6):
                rows.append({"time_hour": h, "origin": site, "wind_speed": knots[i] * KNOT, "precip": rain[i]})
    frame = pd.DataFrame(rows)
    frame["dest"] = rng.choice(["ATL", "ORD", "LAX", "BOS", "MIA"], len(frame))
    frame["sched_dep_time"] = rng.integers(500, 2300, len(frame))
    days = frame["time_hour"].dt.floor("D")
    ref = frame[days < pd.Timestamp("2013-01-15", tz="UTC")]
    refs = [
        reference_for(ref, "wind_speed", "numeric", "mph"),
        reference_for(ref, "precip", "numeric", "inches"),
        reference_for(ref, "dest", "categorical"),
    ]
    return refs, frame, days


def value(signals, name, feature):
    return next(s.value for s in signals if s.signal == name and s.feature == feature)


def one_day(weather, k):
    _, frame, days = weather
    return frame[days == pd.Timestamp("2013-01-15", tz="UTC") + pd.Timedelta(days=k)].reset_index(drop=True)


def test_wind_speed_in_any_admitted_unit_is_a_unit_change(weather):
    refs = weather[0]
    for k in range(5):
        day = one_day(weather, k)
        assert value(quality_signals(refs, day), "unit_change", "wind_speed") == 0.0
        for factor in (1.609344, 0.44704, 0.868976):  # km/h, m/s, knots
            sig = quality_signals(refs, day.assign(wind_speed=day["wind_speed"] * factor))
            assert value(sig, "unit_change", "wind_speed") == 1.0, factor


def test_rain_in_millimetres_is_a_unit_change_on_a_wet_day(weather):
    refs = weather[0]
    day = one_day(weather, 0)
    assert (day["precip"] > 0).sum() > 30
    sig = quality_signals(refs, day.assign(precip=day["precip"] * 25.4))
    assert value(sig, "unit_change", "precip") == 1.0
    assert value(quality_signals(refs, day), "unit_change", "precip") == 0.0
    # a dry day in mm is the same data: nothing to see, and nothing is claimed
    dry = day.assign(precip=0.0)
    assert value(quality_signals(refs, dry.assign(precip=dry["precip"] * 25.4)), "unit_change", "precip") == 0.0


def test_a_feed_reports_on_a_lattice_and_the_reference_keeps_it():
    # rain in hundredths of an inch; tenths of a degree Celsius sent in Fahrenheit (32 + 0.18 k)
    assert lattice(np.array([0.0, 0.01, 0.03, 0.12])) == pytest.approx((0.0, 0.01))
    origin, step = lattice(np.round(np.arange(-100, 300) * 0.1 * 1.8 + 32, 2))
    assert step == pytest.approx(0.18) and origin == pytest.approx(0.14)
    # gaps of 0.06 and 0.13 (visibility in miles): a step of 0.01, found by dividing the smallest gap
    assert lattice(np.array([0.06, 0.12, 0.25, 0.5, 10.0])) == pytest.approx((0.0, 0.01))
    # a continuous feed has none, and the reference says so
    cont = np.random.default_rng(0).normal(1017, 8, 500)
    assert lattice(cont) == ()
    frame = pd.DataFrame({"pressure": cont})
    assert reference_for(frame, "pressure", "numeric", "millibars", time=None).lattice == ()
    stored = quality_reference_roundtrip(reference_for(frame.round(1), "pressure", "numeric", "millibars", time=None))
    assert stored.lattice == pytest.approx((0.0, 0.1), abs=1e-9)


def quality_reference_roundtrip(ref):
    """The reference as the model stores it (JSON) and the monitor reads it back."""
    import json

    return references_from_mapping(json.loads(json.dumps({ref.name: reference_to_mapping(ref)})))[0]


def precip_conversions():
    return tuple(targets("inches", 0, 10).values())


def test_rain_in_millimetres_is_caught_from_a_single_rainy_reading(weather):
    """A day whose only rain is 0.02 inch: one distinct reading, 0.508 in millimetres. Off the feed's
    hundredths, and exactly 0.02 carried through the conversion: enough, where the grid test needs
    three telling values and the quantile test fifty."""
    refs = weather[0]
    day = one_day(weather, 2)
    day = day.assign(precip=np.where(day["precip"] > 0, 0.02, 0.0))
    assert value(quality_signals(refs, day), "unit_change", "precip") == 0.0
    sig = quality_signals(refs, day.assign(precip=day["precip"] * 25.4))
    assert value(sig, "unit_change", "precip") == 1.0
    why = next(s.detail for s in sig if s.signal == "unit_change" and s.feature == "precip")
    assert "millimeter" in why  # 0.508 is also 0.2 inch in statfarad: the likelier reading wins
    # a model stored before the lattice (no such key) derives it from its grid, and judges the same
    [precip] = [r for r in refs if r.name == "precip"]
    older = {k: v for k, v in reference_to_mapping(precip).items() if k != "lattice"}
    [old] = references_from_mapping({"precip": older})
    assert old.lattice is None and precip.lattice == pytest.approx((0.0, 0.01))
    sent = (day["precip"] * 25.4).to_numpy()
    assert unit_change(old, sent, precip_conversions()) == unit_change(precip, sent, precip_conversions())
    assert unit_change(old, sent, precip_conversions())[0] == 1.0
    # 0.01 and 0.1 inch: 2.54 mm sits on the hundredths too, so only 0.254 tells, and is enough
    two = day.assign(precip=np.where(day["precip"] > 0, np.where(np.arange(len(day)) % 2 == 0, 0.01, 0.1), 0.0))
    assert value(quality_signals(refs, two.assign(precip=two["precip"] * 25.4)), "unit_change", "precip") == 1.0


def test_celsius_in_summer_is_a_unit_change_beyond_a_winter_reference():
    """A January reference's temperatures (tenths of a degree Celsius sent in Fahrenheit) do not reach a
    July day's Celsius values, so no grid point matches them; the lattice does, in any season."""
    rng = np.random.default_rng(1)
    winter_c = np.round(rng.normal(0, 5, 3000), 1)
    ref = reference_for(pd.DataFrame({"temp": np.round(winter_c * 1.8 + 32, 2)}), "temp", "numeric", "degF", time=None)
    july_c = np.round(rng.normal(27, 4, 900), 1)
    conversions = targets("degF", -40, 130).values()
    flag, why = unit_change(ref, july_c, tuple(conversions))
    assert flag == 1.0 and "degree_Celsius" in why
    assert unit_change(ref, np.round(july_c * 1.8 + 32, 2), tuple(conversions))[0] == 0.0  # July in Fahrenheit


def test_a_finer_reading_than_a_small_reference_showed_is_not_a_unit_change():
    """One route's reference saw visibility only at 0.5, 0.75, 1, 1.5, ... 10 miles: lattice 0.25. A
    real 0.12-mile morning is finer, not converted, though 0.12 / 0.08 (kilochains) = 1.5 and
    0.12 x 100 (hectomiles) are on that lattice: conversions that land finer readings on the lattice
    by chance prove nothing (`coincidence`). A conversion that rarely does (km) still decides."""
    readings = [0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    ref = reference_for(pd.DataFrame({"visib": np.repeat(readings, 20)}), "visib", "numeric", "miles", time=None)
    assert ref.lattice == pytest.approx((0.0, 0.25))
    conversions = tuple(targets("miles", 0, 10).values())
    kilochain, km = (next(c for c in conversions if c.to == to) for to in ("kilochain", "kilometer"))
    assert coincidence(kilochain, ref.lattice) > P_COINCIDENCE > coincidence(km, ref.lattice)
    day = np.array([0.12, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    assert unit_change(ref, day, conversions)[0] == 0.0
    assert unit_change(ref, np.array([0.75, 1.5, 2.5]) * 1.609344, conversions)[0] == 1.0


def test_a_pressure_window_two_percent_high_is_weather_not_centimetres_of_water():
    """Pressure conversions sit near the identity (cm of water x1.0197): a windy week's quantiles can
    match one. Readings still on the feed's tenths of a millibar refute it."""
    rng = np.random.default_rng(2)
    ref = reference_for(
        pd.DataFrame({"pressure": np.round(rng.normal(1017, 7.75, 5000), 1)}), "pressure", "numeric", "millibars", time=None
    )
    conversions = tuple(targets("millibars", 870, 1085).values())
    high = np.round(rng.normal(1017, 7.75, 900) * 1.019716, 1)  # the quantiles of cm of water, on the feed's tenths
    assert unit_change(ref, high, conversions)[0] == 0.0
    assert unit_change(ref, np.round(rng.normal(1017, 7.75, 900), 1) * 1.019716, conversions)[0] == 1.0


def test_the_same_records_sent_five_times_is_a_duplicate_share_of_four_fifths(weather):
    refs = weather[0]
    day = one_day(weather, 1)
    assert value(quality_signals(refs, day), "duplicate_share", None) < 0.01
    five = pd.concat([day] * 5, ignore_index=True)
    assert value(quality_signals(refs, five), "duplicate_share", None) == pytest.approx(0.8)
    # streamed in chunks, the repeats across chunks are found too
    acc = QualityAccumulator(refs)
    for start in range(0, len(five), 1000):
        acc.add(five.iloc[start : start + 1000])
    assert value(acc.signals(), "duplicate_share", None) == pytest.approx(0.8)


def stuck_rule():
    return next(r for r in load_policy().rules if r.signal == "stuck_run_ratio")


def last_days(weather):
    _, frame, days = weather
    return frame[(days >= pd.Timestamp("2013-01-15", tz="UTC"))].reset_index(drop=True)


def test_precipitation_rests_at_zero_and_its_reference_run_counts_only_corroborated_hours(weather):
    refs, frame, days = weather
    [precip] = [r for r in refs if r.name == "precip"]
    [wind] = [r for r in refs if r.name == "wind_speed"]
    assert precip.resting_value == 0.0 and wind.resting_value is None  # wind has no value it rests at
    ref = frame[days < pd.Timestamp("2013-01-15", tz="UTC")]
    raw = reference_for(ref, "precip", "numeric", "inches", site=None)  # no site: no run check at all
    assert raw.max_run_hours is None
    sh = ref.drop_duplicates(["origin", "time_hour"])
    every_hour = longest_run_hours(
        pd.DataFrame({"site": sh["origin"], "hour": sh["time_hour"].astype("int64") // 3_600_000_000_000, "v": sh["precip"]})
    )[0]
    # a dry run at one site counts only the hours it rained elsewhere: far fewer than its length
    assert precip.max_run_hours is not None and 0 < precip.max_run_hours < every_hour
    # a per-flight field (destination) is not read per site-hour: no run check for it
    assert reference_for(frame, "sched_dep_time", "numeric").max_run_hours is None


def test_a_dry_spell_at_every_airport_is_weather_not_a_frozen_sensor(weather):
    refs = weather[0]
    dry = last_days(weather).assign(precip=0.0)  # 16 days without rain at all three airports
    rule = stuck_rule()
    assert value(quality_signals(refs, dry), "stuck_run_ratio", "precip") < rule.warning
    reasons = evaluate_signals(quality_signals(refs, dry), load_policy().rules)
    assert not [r for r in reasons if r.signal == "stuck_run_ratio"]


def test_one_airport_frozen_at_zero_while_the_others_rain_is_a_stuck_run(weather):
    refs = weather[0]
    weeks = last_days(weather)
    frozen = weeks.assign(precip=weeks["precip"].where(weeks["origin"] != "EWR", 0.0))
    rule = stuck_rule()
    clean = value(quality_signals(refs, weeks), "stuck_run_ratio", "precip")
    stuck = value(quality_signals(refs, frozen), "stuck_run_ratio", "precip")
    assert clean < rule.warning and rule.critical < stuck
    why = next(s.detail for s in quality_signals(refs, frozen) if s.signal == "stuck_run_ratio" and s.feature == "precip")
    assert "at EWR while another airport read otherwise" in why
    # the most common value's share alone barely moves: precipitation is 0 most hours anyway
    assert value(quality_signals(refs, frozen), "stuck_value_share", "precip") < 0.1
    # streamed in chunks, the same run is found
    acc = QualityAccumulator(refs)
    for start in range(0, len(frozen), 5000):
        acc.add(frozen.iloc[start : start + 5000])
    assert value(acc.signals(), "stuck_run_ratio", "precip") == pytest.approx(stuck)


def test_a_continuous_field_frozen_counts_every_hour_even_at_every_airport(weather):
    refs = weather[0]
    rule = stuck_rule()
    four_days = last_days(weather)
    four_days = four_days[four_days["time_hour"] < pd.Timestamp("2013-01-19", tz="UTC")].reset_index(drop=True)
    assert value(quality_signals(refs, four_days), "stuck_run_ratio", "wind_speed") < rule.warning
    one = four_days.assign(wind_speed=four_days["wind_speed"].where(four_days["origin"] != "JFK", 9.2))
    every = four_days.assign(wind_speed=9.2)  # the whole feed frozen: identical readings at all sites
    for frozen in (one, every):
        assert value(quality_signals(refs, frozen), "stuck_run_ratio", "wind_speed") >= 4.0 > rule.critical  # 96 h / 24 h


def test_a_reference_stored_before_resting_values_keeps_counting_every_hour(weather):
    """A model trained before the change stored the raw longest run and no resting value: it is
    judged as it was (its denominator counted every hour) until it is retrained."""
    refs, frame, days = weather
    [precip] = [r for r in refs if r.name == "precip"]
    ref = frame[days < pd.Timestamp("2013-01-15", tz="UTC")]
    sh = ref.drop_duplicates(["origin", "time_hour"])
    raw = longest_run_hours(
        pd.DataFrame({"site": sh["origin"], "hour": sh["time_hour"].astype("int64") // 3_600_000_000_000, "v": sh["precip"]})
    )[0]
    doc = {k: v for k, v in asdict(precip).items() if k != "resting_value"}
    doc["max_run_hours"] = raw
    [old] = references_from_mapping({"precip": doc})
    assert old.resting_value is None
    dry = last_days(weather).assign(precip=0.0)
    ratio = value(quality_signals([old], dry), "stuck_run_ratio", "precip")
    assert ratio == pytest.approx(dry["time_hour"].nunique() / max(raw, 24.0)) and ratio > stuck_rule().critical
    # stored with the new counting, the value round-trips
    [new] = references_from_mapping({"precip": asdict(precip)})
    assert new.resting_value == 0.0 and new.max_run_hours == precip.max_run_hours


def test_longest_run_breaks_on_missing_and_counts_hours():
    sh = pd.DataFrame({"site": ["A"] * 6, "hour": [0, 1, 2, 5, 6, 7], "v": [1.0, 1.0, 1.0, 1.0, np.nan, 1.0]})
    assert longest_run_hours(sh)[:2] == (6.0, "A")  # hours 0..5, the night gap (3, 4) included


def test_a_run_at_the_resting_value_counts_the_hours_another_site_read_otherwise():
    sh = pd.DataFrame(
        {
            "site": ["A"] * 6 + ["B"] * 6 + ["C"] * 3,
            "hour": [0, 1, 2, 3, 4, 5] * 2 + [1, 2, 9],
            "v": [0.0] * 6 + [0.0, 0.1, 0.2, 0.0, np.nan, 0.0] + [0.3, 0.0, 0.4],
        }
    )
    # A read 0 for 6 h; B rained at hours 1-2, C at hour 1 (and at hour 9, outside A's run)
    assert longest_run_hours(sh, resting=0.0)[:3] == (2.0, "A", 0.0)
    assert longest_run_hours(sh)[:2] == (6.0, "A")  # counting every hour, as before
    # a run at any other value counts every hour
    sh.loc[sh["site"] == "A", "v"] = 0.5
    assert longest_run_hours(sh, resting=0.0)[:3] == (6.0, "A", 0.5)


def signals(rows, sigs=()):
    perf = window_performance(np.full(rows, 0.2), np.full(rows, np.nan), 0.5)
    return WindowSignals(rows=rows, signals=tuple(sigs), performance=perf, skew=SkewReport(rows, ()))


def test_a_window_whose_every_record_was_refused_is_red_by_event_time():
    policy = load_policy()
    j = judge(signals(0), {REJECTED_BY_EVENT: 900}, policy, [])
    assert j.verdict.status == "red"
    top = j.verdict.reasons[0]
    assert (top.signal, top.feature, top.value) == ("contract_violation_rate", "_rejected", 1.0)


def test_refused_records_are_not_judged_rows():
    policy = load_policy()
    # 250 served, 250 refused for temp: the window is not judged as 500 rows of data...
    j = judge(signals(250), {("temp", "out_of_range"): 250, REJECTED_RECORDS: 250}, policy, [])
    assert j.verdict.status == "red" and j.verdict.reasons[0].value == pytest.approx(0.5)
    assert any("door" in n for n in j.verdict.notes)
    # ...and a window of too few served rows with no refusals stays not judged
    assert judge(signals(250), {}, policy, []).verdict.status == "not_enough_data"
    # enough served rows: judged on its own rows, with the door's rate beside them
    j = judge(signals(900), {("temp", "out_of_range"): 100, REJECTED_RECORDS: 100}, policy, [])
    assert j.verdict.status == "red" and j.verdict.reasons[0].value == pytest.approx(0.1)
