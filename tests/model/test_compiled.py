"""The compiled single-record path (Treelite) against the fitted Pipeline, the reference.

The parity test runs the compiled booster over every 2013 flight and requires the very same
probabilities (bit for bit) and so the very same `late` decisions. Exact equality is the
tolerance on purpose: the model's threshold is one of its validation probabilities, so any
difference at all could flip the flight that sits on it.

The service's per-record path is features per record (`transform_record`, equal to the batch
transform on every 2013 flight: tests/model/test_model.py::test_serving_path_equals_training_path_on_every_2013_flight)
then `CompiledBooster.predict_one`, the same margin code on a one-row batch; a tree reads one row at
a time, so a row's probability does not depend on the rows beside it. The per-record path itself is
run on a seeded 20,000 flights: over all 336,776 it took ~50 s of the suite (one Treelite call per
flight), to show what the batch run and that structure already show.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core.compiled import CompilationError, CompiledBooster, compile_booster
from service.model import LoadedModel
from training.data import contract_frame


def test_the_registered_model_carries_its_compiled_booster(bundle):
    assert bundle.compiled, "training stores the compiled booster with the model in MLflow"
    info = bundle.metadata["compiled"]
    assert info["format"] == "treelite-gtil" and info["exact_on_rows"] > 1000, info
    assert LoadedModel("m", "1", "champion", bundle).fast_path == "treelite"


def test_compiled_path_equals_the_pipeline_on_every_2013_flight(contract, flights, bundle):
    X = contract_frame(contract, flights)
    assert len(X) == 336_776
    reference = bundle.pipeline.predict_proba(X)[:, 1]
    model = LoadedModel("m", "1", "champion", bundle)
    assert model.compiled is not None
    served = model.compiled.predict(model.features.transform(X))
    mismatch = np.flatnonzero(served != reference)
    worst = np.abs(served - reference).max()
    assert mismatch.size == 0, f"{mismatch.size} flights differ, first {mismatch[:5]}, max |dp| {worst}"
    t = model.threshold
    assert np.array_equal(served >= t, reference >= t)
    assert (reference == t).any(), "the threshold is a validation probability: why exact equality is required"
    # the service's own per-record path (features of one record, one-row Treelite call)
    idx = np.sort(np.random.default_rng(11).choice(len(X), 20_000, replace=False))
    idx = np.union1d(idx, np.flatnonzero(reference == t))  # the flights on the threshold too
    one = np.fromiter((model.predict_record(r)[0] for r in X.iloc[idx].to_dict("records")), dtype="float64", count=len(idx))
    assert np.array_equal(one, reference[idx]), np.flatnonzero(one != reference[idx])[:5]


def test_batch_compiled_predict_equals_sklearn(contract, flights, bundle):
    feats, est = bundle.pipeline.named_steps["features"], bundle.pipeline.named_steps["model"]
    X = feats.transform(contract_frame(contract, flights.sample(20_000, random_state=4)))
    np.testing.assert_array_equal(CompiledBooster.from_bytes(bundle.compiled).predict(X), est.predict_proba(X)[:, 1])


def test_without_the_folded_baseline_treelite_is_not_exact(contract, flights, bundle):
    """Why compile_booster folds sklearn's baseline into the first tree: Treelite's own base score is
    added after the trees, and that rounds differently on a share of the flights."""
    import treelite.gtil
    import treelite.sklearn

    feats, est = bundle.pipeline.named_steps["features"], bundle.pipeline.named_steps["model"]
    X = feats.transform(contract_frame(contract, flights.sample(20_000, random_state=5)))
    with np.errstate(invalid="ignore"):
        plain = treelite.sklearn.import_model(est)
    p = np.asarray(treelite.gtil.predict(plain, X, nthread=1)).reshape(len(X))
    want = est.predict_proba(X)[:, 1]
    assert (p != want).any()
    assert np.abs(p - want).max() < 1e-12


def test_a_missing_or_broken_compiled_booster_falls_back_to_sklearn(contract, flights, bundle, caplog):
    X = contract_frame(contract, flights.sample(200, random_state=6))
    want = bundle.pipeline.predict_proba(X)[:, 1]
    for compiled, why in ((None, "no compiled booster"), (b"not a treelite model", "not loaded")):
        model = LoadedModel("m", "1", "champion", dataclasses.replace(bundle, compiled=compiled))
        assert model.compiled is None and model.fast_path == "sklearn"
        assert why in (model.compiled_error or "")
        got = [model.predict_record(r)[0] for r in X.to_dict("records")]
        np.testing.assert_array_equal(np.asarray(got), want)
    assert "compiled booster not loaded" in caplog.text


def test_compile_refuses_a_model_it_cannot_reproduce(contract, flights, bundle, monkeypatch):
    """The exactness check in compile_booster is real: an import that skips the baseline folding
    (as a changed Treelite or sklearn might) is refused, not stored."""
    import treelite.sklearn

    feats, est = bundle.pipeline.named_steps["features"], bundle.pipeline.named_steps["model"]
    X = feats.transform(contract_frame(contract, flights.head(2000)))
    assert CompiledBooster.from_bytes(compile_booster(est, check_rows=X)).n_features == X.shape[1]
    real = treelite.sklearn.import_model
    monkeypatch.setattr(treelite.sklearn, "import_model", lambda folded: real(est))
    with pytest.raises(CompilationError, match="differs from sklearn"):
        compile_booster(est, check_rows=X)
