"""The fleet's pure statistics: mergeable counts, the overdispersed null, the BH budget, the fleet file."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_contracts.contract import load_contract
from data_contracts.fleet import load_fleet, parse_fleet
from monitoring.fleet import (
    MAX_DISTINCT,
    BetweenDayNull,
    Counts,
    ModelRef,
    auc_from_hist,
    benjamini_hochberg,
    block_draws,
    count_days,
    estimate_null,
    judge_fleet,
    measure,
    merge_all,
)
from monitoring.policy import load_policy
from monitoring.profile import build_profile
from monitoring.quality import field_conversions, reference_for

pytestmark = pytest.mark.unit


def frame(n: int, seed: int, temp_shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "temp": rng.normal(40 + temp_shift, 8, n),
            "carrier": rng.choice(["UA", "DL", "AA"], n, p=[0.5, 0.3, 0.2]),
            "probability": rng.beta(2, 6, n),
            "label": (rng.random(n) < 0.22).astype(float),
            "day": [f"2013-01-{1 + i % 28:02d}" for i in range(n)],
        }
    )


def ref_of(f: pd.DataFrame, name: str = "m", null: dict | None = None) -> ModelRef:
    prof = build_profile(f, ["temp", "probability"], ["carrier"])
    return ModelRef(name, "1", name, prof, 0.22, 0.5, 200, 700, date(2013, 3, 31), null or {})


def test_counts_merge_exactly_whatever_the_chunking() -> None:
    f = frame(3000, 0)
    prof = ref_of(f).profile
    whole = merge_all(count_days(prof, f, f["day"]).values())
    parts = [merge_all(count_days(prof, c, c["day"]).values()) for c in (f.iloc[i : i + 431] for i in range(0, len(f), 431))]
    chunked = merge_all(parts)
    assert whole is not None and chunked is not None
    assert whole.rows == chunked.rows == 3000
    for k in whole.cols:
        np.testing.assert_array_equal(whole.cols[k], chunked.cols[k])
    np.testing.assert_array_equal(whole.hist_pos, chunked.hist_pos)
    assert whole.days == chunked.days and len(whole.days) == 28


def test_auc_from_histogram_matches_sklearn_within_binning() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.random(5000) < 0.3
    p = np.clip(rng.normal(0.3 + 0.2 * y, 0.15), 0, 1)
    f = pd.DataFrame({"probability": p, "label": y.astype(float), "temp": 1.0, "carrier": "UA", "day": "d"})
    c = count_days(ref_of(frame(500, 0)).profile, f, f["day"])["d"]
    assert abs(auc_from_hist(c.hist_pos, c.hist_neg) - roc_auc_score(y, p)) < 0.005


@given(st.lists(st.floats(0, 1), min_size=1, max_size=200), st.floats(0.001, 0.5))
@settings(max_examples=60, deadline=None)
def test_bh_is_monotone_and_never_finds_more_than_its_p_values_allow(ps: list[float], q: float) -> None:
    found = benjamini_hochberg(ps, q)
    p = np.asarray(ps)
    if found.any():  # every discovery has a p-value no larger than every non-discovery
        assert p[found].max() <= (p[~found].min() if (~found).any() else 1.0)
        assert p[found].max() <= q
    else:
        assert (np.sort(p) > q * np.arange(1, p.size + 1) / p.size).all()


def test_between_day_part_is_seen_when_days_are_clustered() -> None:
    """Rows of one day that share a reading (here: one temperature per day) add a between-day part
    to the chi-square distance; the null estimated from whole days must see it, and i.i.d. rows
    must show (almost) none. A clustered window then gets a far larger p-value than i.i.d. theory."""
    rng = np.random.default_rng(2)
    days = [f"2013-01-{d:02d}" for d in range(1, 29) for _ in range(50)]
    daily = {d: rng.normal(40, 8) for d in sorted(set(days))}
    clustered = pd.DataFrame({"temp": [daily[d] + rng.normal(0, 1) for d in days], "carrier": "UA", "day": days})
    iid = pd.DataFrame({"temp": rng.normal(40, 8, len(days)), "carrier": "UA", "day": days})
    got = {}
    for name, f in (("clustered", clustered), ("iid", iid)):
        prof = build_profile(f, ["temp"], ["carrier"])
        got[name] = estimate_null(prof, count_days(prof, f, f["day"]), 0.2, days=(1, 7), resamples=200)
    assert got["clustered"]["columns"]["temp"]["mean"][0] > 1.0  # one day covers ~2 of 10 bins
    assert got["iid"]["columns"]["temp"]["mean"][0] < 0.05
    x2, df, n = 500.0, 9, 50  # a one-day window: T = 10, about what one clustered day shows
    assert BetweenDayNull(got["clustered"]).column_p("temp", x2, df, 1, n) > 0.01
    assert BetweenDayNull(got["iid"]).column_p("temp", x2, df, 1, n) < 1e-6


def test_block_draws_are_runs_of_consecutive_days() -> None:
    idx = block_draws(50, 7, 3, 100, np.random.default_rng(0))
    assert idx.shape == (100, 7) and idx.min() >= 0 and idx.max() < 50
    assert (np.diff(idx[:, :3], axis=1) == 1).all()


def no_drift_and_shifted(shift: float, *, fault: str = "shift", validation_auc: float = 0.5) -> tuple[list, ModelRef]:
    """20 models' windows; the first three carry `fault`: temperatures `shift` beyond the reference
    ("shift"), or sent in °C ("celsius"). `validation_auc` is those three's validation AUC (their
    windows' AUC is ~0.5: a high one says the model is hurt)."""
    ref_f = frame(4000, 3)
    prof = ref_of(ref_f).profile
    null = estimate_null(prof, count_days(prof, ref_f, ref_f["day"]), 0.22, days=(1, 7, 28), resamples=100)
    quality = [reference_for(ref_f, "temp", "numeric", "degF")]
    unit = {"quality": {"temp": quality[0]}, "conversions": field_conversions(quality, load_contract())}
    ref = ModelRef("m", "1", "m", prof, 0.22, 0.5, 200, 700, date(2013, 3, 31), null, **unit)
    windows = []
    for i in range(20):
        faulty = i < 3
        f = frame(400, 100 + i, temp_shift=shift if faulty and fault == "shift" else 0.0)
        if faulty and fault == "celsius":
            f = f.assign(temp=(f["temp"] - 32.0) * 5.0 / 9.0)
        c = merge_all(count_days(prof, f, f["day"], ref.unit_columns).values())
        assert c is not None
        auc = validation_auc if faulty else 0.5
        windows.append(measure(ModelRef(f"m{i}", "1", f"s{i}", prof, 0.22, auc, 200, 700, date(2013, 3, 31), null, **unit), c))
    return windows, ref


def test_budget_no_drift_is_green_and_faults_are_exactly_red() -> None:
    policy = load_policy()
    calm, _ = no_drift_and_shifted(0.0)
    j = judge_fleet(calm, policy, fdr=0.05, min_rows=30)
    assert j.counts["red"] == 0 and j.counts["yellow"] == 0, [(v.name, v.reasons) for v in j.verdicts]
    faulty, _ = no_drift_and_shifted(0.0, fault="celsius")  # three models' temperature feed sent in °C
    j = judge_fleet(faulty, policy, fdr=0.05, min_rows=30)
    assert sorted(v.name for v in j.verdicts if v.status == "red") == ["m0", "m1", "m2"]
    assert j.verdicts[0].status == "red"  # worst first
    for v in j.verdicts[:3]:
        assert (v.reasons[0].signal, v.reasons[0].feature, v.reasons[0].question) == ("unit_change", "temp", "data_broken")


def test_a_world_beyond_the_reference_is_yellow_and_red_only_when_the_model_is_hurt() -> None:
    """The single model's split (monitoring.policy.cap_world_moved): values beyond the reference's
    range (a warm spring) are world_moved; critical counts as red only with a critical model_hurt
    reason in the same window."""
    policy = load_policy()
    moved, _ = no_drift_and_shifted(40.0)  # far beyond the reference; the models are not hurt
    j = judge_fleet(moved, policy, fdr=0.05, min_rows=30)
    assert j.counts["red"] == 0 and sorted(v.name for v in j.verdicts if v.status == "yellow") == ["m0", "m1", "m2"]
    for v in j.verdicts[:3]:
        beyond = [r for r in v.reasons if r.signal == "beyond_reference_rate"]
        assert beyond and beyond[0].question == "world_moved" and beyond[0].severity == "warning"
        assert "unit_change" not in {r.signal for r in v.reasons}  # moved, not converted
        assert any("no model_hurt reason: held at yellow" in n for n in v.notes)
    hurt, _ = no_drift_and_shifted(40.0, validation_auc=0.9)  # the same move, and AUC fell from 0.9 to ~0.5
    j = judge_fleet(hurt, policy, fdr=0.05, min_rows=30)
    assert sorted(v.name for v in j.verdicts if v.status == "red") == ["m0", "m1", "m2"]
    for v in j.verdicts[:3]:
        critical = {(r.signal, r.question) for r in v.reasons if r.severity == "critical"}
        assert ("roc_auc_drop", "model_hurt") in critical and ("beyond_reference_rate", "world_moved") in critical


def test_exact_values_merge_like_the_counts_and_survive_json() -> None:
    f = frame(3000, 0)
    prof = ref_of(f).profile
    whole = merge_all(count_days(prof, f, f["day"], ["temp"]).values())
    parts = [
        merge_all(count_days(prof, c, c["day"], ["temp"]).values()) for c in (f.iloc[i : i + 431] for i in range(0, 3000, 431))
    ]
    chunked = merge_all(parts)
    assert whole is not None and chunked is not None
    for got in (chunked, Counts.from_dict(json.loads(json.dumps(chunked.to_dict())))):
        vc = got.values["temp"]
        assert vc is not None
        np.testing.assert_array_equal(vc[0], np.unique(f["temp"]))
        assert vc[1].sum() == 3000
        np.testing.assert_array_equal(vc[1], whole.values["temp"][1])  # type: ignore[index]


def test_too_many_distinct_values_skip_the_unit_check_and_say_so() -> None:
    f = frame(MAX_DISTINCT + 10, 1).assign(day="2013-01-05")
    prof = ref_of(f).profile
    c = merge_all(count_days(prof, f, f["day"], ["temp"]).values())
    assert c is not None and c.values["temp"] is None
    quality = [reference_for(f, "temp", "numeric", "degF")]
    ref = ModelRef(
        "m", "1", "m", prof, 0.22, 0.5, 200, 700, date(2013, 3, 31), {}, {"temp": quality[0]}, field_conversions(quality)
    )
    unit = [s for s in measure(ref, c).signals if s.signal == "unit_change"]
    assert len(unit) == 1 and unit[0].value == 0.0 and "not checked" in unit[0].detail


def test_small_windows_are_not_enough_data_and_spend_no_budget() -> None:
    windows, _ = no_drift_and_shifted(40.0)
    j = judge_fleet(windows, load_policy(), fdr=0.05, min_rows=1000)
    assert j.counts["not_enough_data"] == 20 and j.tests == 0


def test_null_lookup_never_uses_a_longer_span_than_the_window() -> None:
    nm = BetweenDayNull({"days": [1, 7, 28], "columns": {"temp": {"mean": [9.0, 4.0, 2.0], "var": [1.0, 1.0, 1.0]}}})
    entry = nm.null["columns"]["temp"]
    assert nm._at(entry, 6) == (9.0, 1.0) and nm._at(entry, 7) == (4.0, 1.0) and nm._at(entry, 40) == (2.0, 1.0)
    # the same statistic is less surprising over fewer days
    assert nm.column_p("temp", 300.0, 9, 1, 50) > nm.column_p("temp", 300.0, 9, 28, 50)


def test_drift_alone_is_capped_at_yellow_when_the_fleet_file_says_so() -> None:
    windows, _ = no_drift_and_shifted(40.0)
    j = judge_fleet(windows, load_policy(), fdr=0.05, min_rows=30, yellow_only=("psi", "beyond_reference_rate"))
    assert j.counts["red"] == 0 and j.counts["yellow"] == 3


def test_fleet_file_is_checked_against_the_contract() -> None:
    contract = load_contract()
    spec = load_fleet(contract=contract)
    assert spec.segment_of({"origin": "EWR", "dest": "ATL"}) == "EWR-ATL"
    assert spec.model_name("EWR-ATL") == "flights-late--EWR-ATL"
    with pytest.raises(ValueError, match="not contract fields"):
        parse_fleet({"segment_by": ["route"]}).check(contract)
    with pytest.raises(ValueError, match="unknown train keys"):
        parse_fleet({"segment_by": ["dest"], "train": {"min_rowz": 3}})
    with pytest.raises(ValueError, match=r"train\.from"):
        parse_fleet({"segment_by": ["dest"], "train": {"from": "soon"}})


def weather_days(n_days: int, seed: int) -> pd.DataFrame:
    """Days of 40 flights sharing one temperature regime (a day's mean and a small spread)."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(n_days):
        mu = rng.normal(40, 8)
        for _ in range(40):
            rows.append({"temp": mu + rng.normal(0, 2), "carrier": "UA", "day": f"2013-{1 + d // 28:02d}-{1 + d % 28:02d}"})
    return pd.DataFrame(rows)


def test_beyond_range_null_is_measured_out_of_sample_not_zero_by_construction() -> None:
    """The share beyond the reference's [min, max] is 0 on the reference itself, whatever the
    weather; held back a day at a time, a day warmer than every other one shows its true rate. A
    window whose beyond share is what held-back days show is no discovery; a °C feed (everything
    below the °F range) still is."""
    f = weather_days(50, 4)
    prof = build_profile(f, ["temp"], ["carrier"])
    per_day = count_days(prof, f, f["day"])
    in_sample = estimate_null(prof, per_day, 0.2, days=(1, 7), resamples=100)
    values = {"temp": {d: g["temp"].to_numpy() for d, g in f.groupby("day")}}
    held = estimate_null(prof, per_day, 0.2, days=(1, 7), resamples=100, day_values=values)
    assert in_sample["columns"]["temp:beyond"]["mean"] == [0.0, 0.0]
    mean1 = held["columns"]["temp:beyond"]["mean"][0]
    assert 0.0 < mean1 < 0.2 and held["columns"]["temp:beyond"]["var"][0] > 0
    assert held["n_days"] == 50
    typical = 3 * mean1  # a day at three times the average held-out rate
    old, new = BetweenDayNull(in_sample), BetweenDayNull(held)
    assert old.share_p("temp:beyond", typical, 0.0, 40, 1, prof.rows) < 1e-6  # in-sample: "impossible"
    assert new.share_p("temp:beyond", typical, 0.0, 40, 1, prof.rows) > 0.01
    assert new.share_p("temp:beyond", 1.0, 0.0, 40, 1, prof.rows) < 1e-6


def test_unseen_category_null_is_held_out_too() -> None:
    """A carrier flown on one reference day only is 'unseen' when that day is held back."""
    f = weather_days(40, 5)
    f.loc[(f["day"] == "2013-01-03") & (f.index % 4 == 0), "carrier"] = "9E"
    prof = build_profile(f, ["temp"], ["carrier"])
    null = estimate_null(prof, count_days(prof, f, f["day"]), 0.2, days=(1,), resamples=50)
    m, v = null["columns"]["carrier:unseen"]["mean"][0], null["columns"]["carrier:unseen"]["var"][0]
    assert m == pytest.approx(0.25 / 40) and v > 0  # 1 of 40 held-back days has 25 % new


def test_fewer_reference_days_make_the_null_tail_heavier() -> None:
    """The null's moments come from the reference days: with few of them the same statistic is
    less surprising (Student-t prediction interval), with many it tends to the plugged-in tail."""
    entry = {"temp": {"mean": [1.0], "var": [0.5]}, "temp:missing": {"mean": [0.0], "var": [0.001]}}
    few = BetweenDayNull({"days": [1], "columns": entry, "n_days": 6})
    many = BetweenDayNull({"days": [1], "columns": entry, "n_days": 5000})
    assert few.column_p("temp", 500.0, 9, 1, 50) > 10 * many.column_p("temp", 500.0, 9, 1, 50)
    assert few.share_p("temp:missing", 0.2, 0.05, 50, 1, 1000) > many.share_p("temp:missing", 0.2, 0.05, 50, 1, 1000)
    # the gamma fit on the cube-root scale: a statistic at the null's mean is unremarkable
    assert 0.3 < many.column_p("temp", (1.0 + 9 / 50) * 50, 9, 1, 50) < 0.7


def test_a_null_without_its_day_count_takes_it_from_the_reference_days() -> None:
    f = frame(500, 0)
    prof = build_profile(f, ["temp", "probability"], ["carrier"])
    md = {
        "validation_metrics": {"rows": 100, "positive_rate": 0.2, "roc_auc": 0.7},
        "monitoring": {"label_rate": 0.2, "reference_days": ["d"] * 37, "fleet_null": {"days": [1], "columns": {}}},
        "window": {"end": "2013-03-31"},
    }
    assert ModelRef.from_artifacts("m", "1", "m", md, prof.to_dict()).null["n_days"] == 37


def test_a_capped_reason_keeps_its_question() -> None:
    from monitoring.fleet import cap
    from monitoring.policy import Reason

    r = cap(Reason("expected_roc_auc_drop", None, 0.05, 0.03, "critical", "AUC estimate fell", "model_hurt"))
    assert (r.severity, r.question) == ("warning", "model_hurt") and r.message.endswith("[capped at yellow: drift alone]")


def test_a_declared_carrier_new_to_a_route_is_drift_and_an_undeclared_code_is_broken_data() -> None:
    """A route's reference sees three carriers. With the contract's domain declared in its profile,
    a carrier the contract knows (B6) starting on the route is a change of mix (psi: world_moved,
    yellow at most while the model is not hurt); a code nobody declared (ZZ) is unseen (red)."""
    policy = load_policy()
    declared = {"carrier": ("AA", "B6", "DL", "UA")}
    ref_f = frame(4000, 3)
    prof = build_profile(ref_f, ["temp", "probability"], ["carrier"], declared=declared)
    assert prof.column("carrier").categories == ("AA", "B6", "DL", "UA")  # B6: a bin with share 0
    null = estimate_null(prof, count_days(prof, ref_f, ref_f["day"]), 0.22, days=(1, 7, 28), resamples=100)

    def judged(code: str) -> dict[str, tuple[str, list[tuple[str, str | None, str]]]]:
        windows = []
        for i in range(20):
            f = frame(400, 100 + i)
            if i < 3:
                f.loc[f.index % 4 == 0, "carrier"] = code
            c = merge_all(count_days(prof, f, f["day"]).values())
            assert c is not None
            windows.append(measure(ModelRef(f"m{i}", "1", f"s{i}", prof, 0.22, 0.5, 200, 700, date(2013, 3, 31), null), c))
        j = judge_fleet(windows, policy, fdr=0.05, min_rows=30)
        return {v.name: (v.status, [(r.signal, r.feature, r.question) for r in v.reasons]) for v in j.verdicts}

    known = judged("B6")
    assert sorted(n for n, (s, _) in known.items() if s != "green") == ["m0", "m1", "m2"]
    for name in ("m0", "m1", "m2"):
        status, reasons = known[name]
        assert status == "yellow" and reasons[0] == ("psi", "carrier", "world_moved"), reasons
        assert "unseen_category_rate" not in {r[0] for r in reasons}
    unknown = judged("ZZ")
    assert sorted(n for n, (s, _) in unknown.items() if s == "red") == ["m0", "m1", "m2"]
    for name in ("m0", "m1", "m2"):
        assert ("unseen_category_rate", "carrier", "data_broken") in unknown[name][1]


def test_shadow_comparison_per_model_is_the_single_models_with_each_models_threshold() -> None:
    """core.fleet_monitor.shadow_by_model: one `monitoring.shadow.compare` per model of the run that
    has shadow rows, on its own rows and its own threshold; a model the run does not know is left out."""
    from dataclasses import replace

    from core.fleet_monitor import shadow_by_model
    from monitoring.shadow import compare

    rng = np.random.default_rng(3)
    n = 300
    f = pd.DataFrame(
        {
            "probability": rng.random(n),
            "shadow_probability": rng.random(n),
            "shadow_version": "2",
            "label": pd.array((rng.random(n) < 0.3).astype(int), dtype="Int64"),
            "model_name": rng.choice(["a", "b", "gone"], n),
        }
    )
    base = ref_of(frame(200, 0))
    refs = {"a": replace(base, name="a", threshold=0.2), "b": replace(base, name="b", threshold=0.7), "c": base}
    out = shadow_by_model(refs, f)
    assert sorted(out) == ["a", "b"]  # "c" had no shadow rows, "gone" is not in the run
    for name in ("a", "b"):
        rows = f[f["model_name"] == name].reset_index(drop=True)
        assert out[name] == compare(rows, refs[name].threshold)
    assert out["a"]["decision_agreement"] != compare(f[f["model_name"] == "a"], 0.7)["decision_agreement"]  # type: ignore[index]
    assert shadow_by_model(refs, f.iloc[:0]) == {}


def test_the_auc_test_counts_the_longest_lookbacks_labels_while_drift_judges_one_day() -> None:
    """40 flights a day: the data tests judge one day (>= min_rows 30), which holds fewer labels
    than the 50 the ROC AUC test needs. With `label_span: longest` the AUC test counts 28 days of
    labels, so three models whose AUC fell from 0.9 to ~0.5 are red for model harm; judged on the
    one day ("window") the same models have no AUC test and nothing is red."""
    import dataclasses

    from core.fleet_monitor import judge_counts

    policy = load_policy()
    ref_f = frame(4000, 3)
    prof = ref_of(ref_f).profile
    null = estimate_null(prof, count_days(prof, ref_f, ref_f["day"]), 0.22, days=(1, 7, 28), resamples=100)
    refs, counts = {}, {}
    for i in range(20):
        name = f"m{i}"
        refs[name] = ModelRef(name, "1", f"s{i}", prof, 0.22, 0.9 if i < 3 else 0.5, 200, 700, date(2013, 3, 31), null)
        f = frame(28 * 40, 100 + i)
        for day, c in count_days(prof, f, f["day"]).items():
            counts[(name, day)] = c
    spec = load_fleet()
    day = date(2013, 1, 28)
    longest = judge_counts(refs, counts, spec, policy, day)
    assert spec.monitor.label_span == "longest"
    red = sorted(v.name for v in longest.verdicts if v.status == "red")
    assert red == ["m0", "m1", "m2"], [(v.name, v.status, v.reasons) for v in longest.verdicts]
    for v in longest.verdicts:
        if v.name in red:
            assert v.days == 1 and v.labelled == 28 * 40
            assert (v.reasons[0].signal, v.reasons[0].question) == ("roc_auc_drop", "model_hurt")
    window = dataclasses.replace(spec, monitor=dataclasses.replace(spec.monitor, label_span="window"))
    same_day = judge_counts(refs, counts, window, policy, day)
    assert same_day.counts["red"] == 0
    assert all(v.labelled == 40 for v in same_day.verdicts)
