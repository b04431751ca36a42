"""Fleet drills: a fault injected into k of N models turns exactly those k red (broken data for the
feed faults, model hurt for concept drift); a no-drift control stays free of red; every served row
names the model that served it.

A small fleet (the 6 largest routes + global, trained Feb-Mar into an in-memory registry) keeps
this to about a minute; `python -m drills.fleet` runs the same drills on the full fleet.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from core.fleet import load_refs
from core.logstore import LogStore
from core.registry import InMemoryRegistry
from data_contracts.fleet import load_fleet
from data_contracts.windows import on_days
from drills.fleet import (
    CONCEPTS,
    FleetTraffic,
    concept_drill,
    concept_labels,
    fault_drill,
    own_segments,
    segments,
    serial_ids,
)
from features.pipeline import build_features
from monitoring.policy import load_policy
from training.fleet import train_fleet


@pytest.fixture(scope="module")
def small_fleet(contract, flights):
    spec = load_fleet(contract=contract)
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, start=date(2013, 2, 1), null_resamples=100))
    registry = InMemoryRegistry()
    result = train_fleet(contract, registry, spec, frame=flights, workers=1, limit=6)
    refs = load_refs(registry, spec, contract=contract)
    control = registry.load(spec.global_model, refs[spec.global_model].version).metadata["monitoring"]["control_days"]
    return spec, registry, result, refs, sorted(control)


def store_for(tmp_path, contract, name: str) -> LogStore:
    s = LogStore(f"sqlite:///{tmp_path / name}.db", contract, [str(n) for n in build_features(contract).get_feature_names_out()])
    s.create_schema()
    return s


def test_the_small_fleet_trains_and_reports_its_fallbacks(small_fleet) -> None:
    spec, _, result, refs, _ = small_fleet
    trained = [s for s in result.segments if s["status"] == "trained"]
    assert len(trained) == 6 and result.models_registered == 7
    assert set(result.fell_back) == {s["segment"] for s in trained if not s["beats_baseline"]}
    assert spec.global_model in refs and len(refs) == 1 + result.own_champions


@pytest.mark.parametrize("fault", ["unit-change", "new-carrier", "pressure-dropout"])
def test_a_fault_in_k_of_n_models_turns_exactly_those_red(small_fleet, contract, flights, tmp_path, fault) -> None:
    spec, registry, _, refs, control = small_fleet
    own = own_segments(registry, spec)
    assert len(own) >= 3, own
    faulty = own[:2]
    traffic = FleetTraffic(registry, spec, contract, store_for(tmp_path, contract, fault))
    days = control[-7:]
    res = fault_drill(
        traffic, refs, on_days(contract, flights, days), fault, faulty, spec, load_policy(), date.fromisoformat(days[-1])
    )
    assert res.red == sorted(faulty), res
    assert res.recall == 1.0 and res.precision == 1.0
    # Red for the question the fault asks: a °C feed is a unit change (data broken), not a world
    # beyond the reference's range (world moved, yellow on its own).
    expected = {
        "unit-change": "unit_change:temp (data_broken)",
        "new-carrier": "unseen_category_rate:carrier (data_broken)",
        "pressure-dropout": "missing_rate_increase:pressure (data_broken)",
    }[fault]
    assert set(res.why_red.values()) == {expected}, res.why_red


def test_no_drift_control_days_raise_no_red_and_rows_name_their_model(small_fleet, contract, flights, tmp_path) -> None:
    from core.fleet_monitor import count_local, judge_counts
    from data_contracts.windows import window_bounds

    spec, registry, _, refs, control = small_fleet
    store = store_for(tmp_path, contract, "nodrift")
    traffic = FleetTraffic(registry, spec, contract, store)
    frame = on_days(contract, flights, control)
    traffic.serve(frame)
    lo, hi = window_bounds(date.fromisoformat(control[0]), date.fromisoformat(control[-1]), contract.timezone)
    counts, rows = count_local(refs, store, lo, hi, contract.timezone)
    assert rows == len(frame)
    for d in control[-5:]:
        j = judge_counts(refs, counts, spec, load_policy(), date.fromisoformat(d))
        assert j.counts["red"] == 0, [(v.segment, v.reasons[:1]) for v in j.verdicts if v.status == "red"]
    logged = next(store.iter_predictions(lo, hi, chunksize=len(frame) + 1))
    route = logged["origin"].astype(str) + "-" + logged["dest"].astype(str)
    own = set(own_segments(registry, spec))
    expected = [spec.model_name(r) if r in own else spec.global_model for r in route]
    assert logged["model_name"].tolist() == expected


def test_scoring_a_frame_at_once_and_reusing_the_other_sides_scores_gives_the_services_scores(
    small_fleet, contract, flights, tmp_path
) -> None:
    """The year replay's fast path (`FleetTraffic.score`: each model's rows as one batch, one
    OpenMP thread, policy off's scores reused for rows policy on serves with the same model) gives
    exactly the scores of the service's `score_fleet` on 1,000-row requests, which the replay used."""
    from data_contracts.windows import select_window
    from service.model import LoadedModel
    from service.scoring import score_fleet
    from training.fleet import segments_of

    spec, registry, _, _, _ = small_fleet
    own = own_segments(registry, spec)
    frame = select_window(flights, contract, date(2013, 4, 1), date(2013, 5, 31))
    seg = segments_of(spec, frame)
    small = seg[~seg.isin(own)].value_counts().index[0]  # a route the global model serves
    frame = frame[seg.isin([*own[:2], small]).to_numpy()].reset_index(drop=True)
    traffic = FleetTraffic(registry, spec, contract, store_for(tmp_path, contract, "fast"))
    fast = traffic.score(frame)
    recs = traffic.records(frame)
    old = [
        score_fleet(traffic.router, traffic.global_model, recs[lo : lo + 1000], contract.field_names)
        for lo in range(0, len(recs), 1000)
    ]
    assert fast.probabilities == [p for s in old for p in s.probabilities]
    assert fast.per_row == [r for s in old for r in (s.per_row or [])]
    np.testing.assert_array_equal(np.vstack(fast.features), np.vstack([x for s in old for x in s.features]))
    assert {r[0] for r in fast.per_row} == {spec.model_name(own[0]), spec.model_name(own[1]), spec.global_model}

    # Policy on after a promotion: one route's alias moved (here to another route's model as v999);
    # reusing policy off's scores rescores exactly that route's rows and matches scoring afresh.
    on = FleetTraffic(registry, spec, contract, store_for(tmp_path, contract, "fast-on"))
    moved = spec.model_name(own[0])
    donor = on.router.models[own[1]]
    on.router.models = {**on.router.models, own[0]: LoadedModel(moved, "999", spec.alias, donor.bundle)}
    reused, fresh = on.score(frame, reuse=fast), on.score(frame)
    assert reused.scored == int((segments_of(spec, frame) == own[0]).sum()) > 0
    assert reused.probabilities == fresh.probabilities != fast.probabilities
    assert reused.per_row == fresh.per_row
    assert on.serve(frame, scores=reused) == len(frame)


def test_concept_drift_in_k_of_n_models_turns_exactly_those_red_for_model_hurt(small_fleet, contract, flights, tmp_path) -> None:
    """Labels inverted on two routes, inputs untouched: judged on 28 days of labels (the control days
    of the longest lookback), exactly those two are red, for the realised ROC AUC (model_hurt)."""
    spec, registry, _, refs, control = small_fleet
    own = own_segments(registry, spec)
    faulty = own[:2]
    last = date.fromisoformat(control[-1])
    month = [d for d in control if (last - date.fromisoformat(d)).days < 28]
    frame = on_days(contract, flights, month)
    traffic = FleetTraffic(registry, spec, contract, store_for(tmp_path, contract, "concept"))
    [res] = concept_drill(traffic, refs, frame, "concept-inverted", faulty, spec, load_policy(), last, cadences=(28,))
    assert res.cadence == "28d" and res.red == sorted(faulty), res
    assert res.recall == 1.0 and res.precision == 1.0
    assert set(res.why_red.values()) == {"roc_auc_drop: (model_hurt)"}, res.why_red
    assert sorted(res.labelled) == sorted(faulty) and min(res.labelled.values()) >= spec.monitor.min_labels, res.labelled


def test_the_concept_faults_change_labels_only_as_named() -> None:
    rng = np.random.default_rng(1)
    y = pd.Series(rng.random(1000) < 0.2, dtype="float64")
    inverted = CONCEPTS["concept-inverted"][1](y, np.random.default_rng(0))
    assert (inverted == 1 - y).all()
    shuffled = CONCEPTS["concept-permuted"][1](y, np.random.default_rng(0))
    assert shuffled.sum() == y.sum() and (shuffled != y).mean() > 0.2  # the rate kept, the rows moved
    half = CONCEPTS["concept-permuted-half"][1](y, np.random.default_rng(0))
    assert half.sum() == y.sum() and 0 < (half != y).mean() < (shuffled != y).mean()


def test_the_shuffled_labels_of_concept_power_are_the_same_run_after_run(small_fleet, contract, flights, tmp_path) -> None:
    """docs/fleet.md: two runs of `python -m drills.fleet` on one fleet found 0 and 1 of 30 shuffled
    routes red. The log is read back by (event time, prediction id), and one hour's flights share their
    event time: with uuid4 ids they came back in a new order each run, and the seeded shuffle gave the
    flights other labels. Served with `serial_ids()`, as the drill now is, two runs label every flight
    alike (compared by what the ROC AUC sees: hour, model, probability and label; not by id)."""
    spec, registry, _, _, control = small_fleet
    frame = on_days(contract, flights, control[-7:])
    faulty = own_segments(registry, spec)[:2]
    shuffle = CONCEPTS["concept-permuted"][1]
    runs = []
    for run in ("first", "second"):
        traffic = FleetTraffic(registry, spec, contract, store_for(tmp_path, contract, run), ids=serial_ids())
        traffic.serve(frame)
        logged = pd.concat(list(traffic.store.iter_predictions(None, None, chunksize=100_000)), ignore_index=True)
        logged = logged[logged["label"].notna()].reset_index(drop=True)
        lab = concept_labels(logged, segments(spec, logged), faulty, shuffle, np.random.default_rng(0), datetime.now(UTC))
        row = logged.set_index("prediction_id")
        runs.append(
            sorted(
                (str(row.at[r["prediction_id"], "event_time"]), row.at[r["prediction_id"], "model_name"],
                 float(row.at[r["prediction_id"], "probability"]), r["label"], int(row.at[r["prediction_id"], "label"]))
                for r in lab
            )
        )  # fmt: skip
    first, second = runs
    assert len(first) > 200 and sum(new != old for *_, new, old in first) > 20  # the shuffle moved labels
    assert first == second
