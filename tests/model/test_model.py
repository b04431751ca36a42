"""The trained model: beats the baseline, reproducible, same answer in training and serving."""

from __future__ import annotations

from datetime import date

import numpy as np

from data_contracts.windows import select_window
from training.data import contract_frame
from training.train import TrainConfig, fit_bundle, split


def test_beats_the_baseline_on_validation(trained):
    _, result = trained
    m, b = result.model_metrics, result.baseline_metrics
    assert result.promoted
    assert m["roc_auc"] > b["roc_auc"] + 0.03, (m, b)
    assert m["pr_auc"] > b["pr_auc"]
    assert m["brier"] < b["brier"]
    assert 0.0 < m["threshold"] < 1.0


def test_every_origin_slice_is_useful(trained):
    _, result = trained
    assert set(result.slices) == {"EWR", "JFK", "LGA"}
    for origin, m in result.slices.items():
        assert m["roc_auc"] > 0.65, (origin, m)


def test_same_data_and_seed_give_the_same_metrics(contract, flights):
    cfg = TrainConfig(start=date(2013, 1, 1), end=date(2013, 1, 21), validation_days=7, seed=3)
    fit, val = split(contract, flights, cfg)
    a, b = fit_bundle(contract, fit, val, cfg), fit_bundle(contract, fit, val, cfg)
    assert a.model.as_dict() == b.model.as_dict()
    assert a.bundle.metadata["threshold"] == b.bundle.metadata["threshold"]


def test_serving_path_equals_training_path_on_every_2013_flight(contract, flights, bundle):
    """Features and probabilities from the per-record path (serving) equal the Pipeline's."""
    feats, model = bundle.pipeline.named_steps["features"], bundle.pipeline.named_steps["model"]
    X = contract_frame(contract, flights)
    batch = feats.transform(X)
    records = X.to_dict("records")
    one = np.empty_like(batch)
    for i, r in enumerate(records):
        one[i] = feats.transform_record(r)
    np.testing.assert_array_equal(batch, one)
    np.testing.assert_array_equal(bundle.pipeline.predict_proba(X)[:, 1], model.predict_proba(one)[:, 1])


def test_single_row_prediction_equals_batch_prediction(contract, flights, bundle):
    feats, model = bundle.pipeline.named_steps["features"], bundle.pipeline.named_steps["model"]
    X = contract_frame(contract, flights.sample(300, random_state=1))
    batch = bundle.pipeline.predict_proba(X)[:, 1]
    single = [model.predict_proba(feats.transform_record(r).reshape(1, -1))[0, 1] for r in X.to_dict("records")]
    np.testing.assert_array_equal(batch, np.asarray(single))


def test_batch_order_does_not_change_predictions(contract, flights, bundle):
    X = contract_frame(contract, flights.sample(2000, random_state=2))
    p = bundle.pipeline.predict_proba(X)[:, 1]
    perm = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_array_equal(bundle.pipeline.predict_proba(X.iloc[perm])[:, 1], p[perm])


def test_directional_expectations(contract, flights, bundle):
    """Behaviour the data teaches (checked on real April rows): delays build up through the day,
    and thunderstorm-like weather (heavy rain, poor visibility) makes lateness more likely."""
    april = contract_frame(contract, select_window(flights, contract, date(2013, 4, 1), date(2013, 4, 30)))
    sample = april.sample(3000, random_state=0)
    p = lambda frame: bundle.pipeline.predict_proba(frame)[:, 1].mean()  # noqa: E731
    assert p(sample.assign(sched_dep_time=1900, sched_arr_time=2200)) > p(sample.assign(sched_dep_time=700, sched_arr_time=1000))
    assert p(sample.assign(precip=0.3, visib=1.0)) > p(sample.assign(precip=0.0, visib=10.0))


def test_unseen_categories_are_served_not_crashed(contract, flights, bundle):
    X = contract_frame(contract, flights.head(50)).assign(carrier="ZZ", dest="NEW")
    p = bundle.pipeline.predict_proba(X)[:, 1]
    assert np.isfinite(p).all()
