"""Fallback, shadow scoring, hot reload and the admin guard, in process.

- no model at start: the non-ML baseline serves, flagged in each response, in the log, in the
  metrics, and `/ready` says so;
- a model that raises at predict time: the request is answered by the model's own baseline;
- the shadow model is scored on live traffic, stored, never returned, and compared by the monitor;
- an alias move is picked up by `/admin/reload`; admin endpoints are closed without a token.
"""

from __future__ import annotations

from fastapi.testclient import TestClient
from sklearn.pipeline import Pipeline

from core.logstore import LogStore
from core.registry import InMemoryRegistry, ModelBundle
from core.runs import RunStore
from core.settings import Settings
from monitoring.shadow import compare
from service.app import create_app
from tests.integration.test_server import metric

PARAMS = {"params": {}, "metrics": {}, "artifacts": {}}


def settings_for(tmp_path, **kw) -> Settings:
    return Settings(home=tmp_path, log_store_url=f"sqlite:///{tmp_path / 'log.db'}", reload_interval=0, **kw)


def test_missing_model_at_start_serves_the_fallback_and_says_so(tmp_path, good_record, contract):
    token = "fallback-test-admin-token-0123456789abcdef"
    s = settings_for(tmp_path, admin_token=token)
    with TestClient(create_app(s, registry=InMemoryRegistry())) as client:
        ready = client.get("/ready")
        assert ready.status_code == 200
        body = ready.json()
        assert body["served_by"] == "fallback" and body["status"] == "degraded"
        # Without the admin token: the error's type only, never its text (paths, hosts).
        assert "packaged" in body["fallback_source"] and body["reason"].startswith("LookupError (")
        assert "champion" not in body["reason"]
        full = client.get("/ready", headers={"authorization": f"Bearer {token}"}).json()
        assert "champion" in full["reason"]
        r = client.post("/predict", json=good_record).json()
        assert r["served_by"] == "fallback" and r["model_version"] == "fallback"
        assert 0 < r["probability"] < 1 and any("fallback" in w for w in r["warnings"])
        batch = client.post("/predict/batch", json={"records": [good_record] * 3}).json()
        assert {p["served_by"] for p in batch["predictions"]} == {"fallback"}
        prom = client.get("/metrics").text
        assert metric(prom, "driftlight_fallback_active") == 1
        assert metric(prom, "driftlight_predictions_total", served_by="fallback") == 4
        assert client.get("/model").status_code == 503  # no model to describe
    store = LogStore(s.resolved_log_store_url, contract, [])
    assert store.count_predictions() == 4  # nothing served is lost, fallback rows included


def test_model_failing_at_predict_time_is_answered_by_its_baseline(tmp_path, good_record, bundle):
    class Broken:
        def predict_proba(self, X):
            raise RuntimeError("corrupted booster")

    broken = ModelBundle(
        pipeline=Pipeline([("features", bundle.pipeline.named_steps["features"]), ("model", Broken())]),
        baseline=bundle.baseline,
        metadata=bundle.metadata,
    )
    reg = InMemoryRegistry()
    reg.register("flights-late", broken, **PARAMS)
    reg.set_alias("flights-late", "champion", "1")
    with TestClient(create_app(settings_for(tmp_path), registry=reg)) as client:
        r = client.post("/predict", json=good_record)
        assert r.status_code == 200
        assert r.json()["served_by"] == "fallback" and "model v1 failed: RuntimeError" in r.json()["warnings"][-1]
        assert r.json()["probability"] == bundle.baseline.predict_record(good_record)
        assert client.post("/predict/batch", json={"records": [good_record] * 2}).status_code == 200
        prom = client.get("/metrics").text
        assert metric(prom, "driftlight_model_failures_total") == 2
        assert client.get("/ready").json()["served_by"] == "model"  # loaded; failing per request


def test_the_last_champion_baseline_is_kept_for_the_next_start(tmp_path, good_record, bundle):
    reg = InMemoryRegistry()
    reg.register("flights-late", bundle, **PARAMS)
    reg.set_alias("flights-late", "champion", "1")
    s = settings_for(tmp_path)
    with TestClient(create_app(s, registry=reg)):
        pass
    assert s.fallback_path.exists()
    with TestClient(create_app(s, registry=InMemoryRegistry())) as client:  # the registry is gone
        assert client.get("/ready").json()["fallback_source"] == "baseline of v1"
        assert client.post("/predict", json=good_record).json()["probability"] == bundle.baseline.predict_record(good_record)


def test_shadow_scores_are_logged_never_returned_and_compared(tmp_path, good_record, bundle, contract):
    reg = InMemoryRegistry()
    for _ in range(2):
        reg.register("flights-late", bundle, **PARAMS)
    reg.set_alias("flights-late", "champion", "1")
    reg.set_alias("flights-late", "challenger", "2")
    s = settings_for(tmp_path, shadow_alias="challenger")
    with TestClient(create_app(s, registry=reg)) as client:
        assert client.get("/ready").json()["shadow_version"] == "2"
        one = client.post("/predict", json=good_record).json()
        many = client.post("/predict/batch", json={"records": [{**good_record, "sched_dep_time": 600 + i} for i in range(20)]})
        assert one["model_version"] == "1" and "shadow" not in str(one)
        ids = [one["prediction_id"], *(p["prediction_id"] for p in many.json()["predictions"])]
        client.post("/feedback/batch", json={"labels": [{"prediction_id": p, "label": i % 2} for i, p in enumerate(ids)]})
    scores = RunStore(s.resolved_log_store_url).shadow_scores(ids)
    assert set(scores) == set(ids) and {v for v, _ in scores.values()} == {"2"}
    assert abs(scores[ids[0]][1] - one["probability"]) < 1e-12  # the same model scored twice
    frame = LogStore(s.resolved_log_store_url, contract, []).shadow_frame(None, None)
    out = compare(frame, threshold=0.3)
    assert out["rows"] == 21 and out["decision_agreement"] == 1.0 and out["mean_abs_difference"] < 1e-12


def test_admin_reload_swaps_and_admin_is_closed_without_a_token(tmp_path, good_record, bundle):
    reg = InMemoryRegistry()
    for _ in range(2):
        reg.register("flights-late", bundle, **PARAMS)
    reg.set_alias("flights-late", "champion", "1")
    with TestClient(create_app(settings_for(tmp_path), registry=reg)) as client:
        r = client.post("/admin/reload")
        assert r.status_code == 403 and r.json()["detail"][0]["kind"] == "disabled"
    with TestClient(create_app(settings_for(tmp_path / "b", admin_token="s3cret"), registry=reg)) as client:
        assert client.post("/admin/reload").status_code == 401
        assert client.post("/admin/reload", headers={"authorization": "Bearer wrong"}).status_code == 401
        reg.set_alias("flights-late", "champion", "2")
        assert client.post("/predict", json=good_record).json()["model_version"] == "1"  # polling is off here
        r = client.post("/admin/reload", headers={"authorization": "Bearer s3cret"})
        assert r.status_code == 200 and r.json() == {"changed": True, "version": "2", "previous": "1", "shadow": None}
        assert client.post("/predict", json=good_record).json()["model_version"] == "2"
        prom = client.get("/metrics").text
        assert metric(prom, "driftlight_model_info", model_version="2") == 1
        assert metric(prom, "driftlight_model_info", model_version="1") == 0
        bad = client.post("/admin/promote", json={"version": "two"}, headers={"authorization": "Bearer s3cret"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "version"
