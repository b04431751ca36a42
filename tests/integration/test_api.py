"""The HTTP contract of the service, in process, with a real SQLite prediction log.

Every kind of bad input named in the issue gets a 4xx whose body names the field, what was
expected and what came; nothing returns a 500; every served prediction and label is stored.
"""

from __future__ import annotations

import json
import math

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.logstore import LogStore
from core.registry import InMemoryRegistry
from core.settings import Settings
from service.app import create_app
from service.errors import KINDS


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    """(client, store) over the trained model, with its own SQLite log."""
    settings, _ = trained
    home = tmp_path_factory.mktemp("api")
    s = settings.model_copy(update={"log_store_url": f"sqlite:///{home / 'log.db'}", "home": settings.home, "max_batch": 50})
    app = create_app(s)
    with TestClient(app) as client:
        yield client, app
    # leaving the block ran the lifespan's shutdown: everything is flushed


def detail_of(resp) -> list[dict]:
    body = resp.json()
    assert set(body) == {"error", "message", "detail"}, body
    for d in body["detail"]:
        assert {"field", "kind", "expected", "received", "message"} <= set(d)
        assert d["kind"] in KINDS  # a bounded set: it is also the metric's `kind` label
    return body["detail"]


def test_predict_returns_what_the_contract_promises(served, good_record):
    client, _ = served
    r = client.post("/predict", json=good_record)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {
        "prediction_id",
        "probability",
        "late",
        "threshold",
        "model_name",
        "model_version",
        "served_by",
        "warnings",
    }
    assert body["served_by"] == "model"
    assert 0 < body["probability"] < 1 and body["late"] == (body["probability"] >= body["threshold"])
    assert body["warnings"] == []


@pytest.mark.parametrize(
    ("mutate", "status", "field", "kind", "received"),
    [
        (lambda r: r.pop("temp"), 422, "temp", "missing", None),
        (lambda r: r.update(dep_delay=12), 422, "dep_delay", "extra_field", 12),
        (lambda r: r.update(distance="far"), 422, "distance", "wrong_type", "far"),
        (lambda r: r.update(humid=140.0), 422, "humid", "out_of_range", 140.0),
        (lambda r: r.update(origin="BOS"), 422, "origin", "unknown_category", "BOS"),
        (lambda r: r.update(sched_dep_time=1275), 422, "sched_dep_time", "bad_format", 1275),
        (lambda r: r.update(time_hour="2013-04-01 10:00"), 422, "time_hour", "bad_format", "2013-04-01 10:00"),
    ],
)
def test_bad_record_names_field_expectation_and_value(served, good_record, mutate, status, field, kind, received):
    client, _ = served
    mutate(good_record)
    r = client.post("/predict", json=good_record)
    assert r.status_code == status
    [d] = detail_of(r)
    assert (d["field"], d["kind"], d["received"]) == (field, kind, received)
    assert d["expected"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(served, good_record, literal):
    client, _ = served
    text = json.dumps(good_record).replace('"temp": 50.0', f'"temp": {literal}')
    r = client.post("/predict", content=text, headers={"content-type": "application/json"})
    assert r.status_code == 422
    [d] = detail_of(r)
    assert d["field"] == "temp" and d["kind"] == "not_finite" and d["received"] == literal


def test_unseen_carrier_is_served_with_a_warning_and_counted(served, good_record):
    client, _ = served
    r = client.post("/predict", json={**good_record, "carrier": "ZZ"})
    assert r.status_code == 200
    assert any("carrier='ZZ'" in w for w in r.json()["warnings"])
    metrics = client.get("/metrics").text
    assert 'driftlight_contract_violations_total{field="carrier",kind="unseen_category"}' in metrics


def test_violations_are_counted_by_field_and_kind(served, good_record):
    client, _ = served
    client.post("/predict", json={**good_record, "humid": 140.0})
    line = next(
        x
        for x in client.get("/metrics").text.splitlines()
        if x.startswith('driftlight_contract_violations_total{field="humid",kind="out_of_range"}')
    )
    assert float(line.rsplit(" ", 1)[1]) >= 1


def test_batch_errors(served, good_record):
    client, _ = served
    r = client.post("/predict/batch", json={"records": []})
    assert r.status_code == 422 and detail_of(r)[0]["field"] == "records"
    r = client.post("/predict/batch", json={"records": [good_record] * 51})
    assert r.status_code == 413 and detail_of(r)[0]["field"] == "records"
    r = client.post("/predict/batch?atomic=true", json={"records": [good_record, {**good_record, "visib": -1.0}]})
    assert r.status_code == 422 and detail_of(r)[0]["field"] == "records[1].visib"
    r = client.post("/predict/batch", json={"records": [{**good_record, "visib": -1.0}]})
    assert r.status_code == 422 and detail_of(r)[0]["field"] == "records[0].visib"


def test_batch_predictions_match_single_ones(served, good_record):
    client, _ = served
    recs = [good_record, {**good_record, "temp": 10.0, "precip": 0.4}]
    batch = client.post("/predict/batch", json={"records": recs}).json()["predictions"]
    singles = [client.post("/predict", json=r).json() for r in recs]
    assert [p["probability"] for p in batch] == [s["probability"] for s in singles]


def test_malformed_json_and_wrong_content_type(served):
    client, _ = served
    r = client.post("/predict", content=b'{"temp": ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and detail_of(r)[0]["kind"] == "invalid_json"
    r = client.post("/predict", content=b"temp=5", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and detail_of(r)[0]["expected"] == "application/json"
    r = client.post("/predict", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 422 and detail_of(r)[0]["kind"] == "not_an_object"


def test_feedback(served, good_record):
    client, _ = served
    pid = client.post("/predict", json=good_record).json()["prediction_id"]
    assert client.post("/feedback", json={"prediction_id": pid, "label": 1}).status_code == 202
    assert client.post("/feedback", json={"prediction_id": pid, "label": 1}).status_code == 202  # idempotent
    r = client.post("/feedback", json={"prediction_id": "0" * 40, "label": 1})
    assert r.status_code == 404 and detail_of(r)[0]["field"] == "prediction_id"
    for bad in (2, "1", True, 0.5, None):
        r = client.post("/feedback", json={"prediction_id": pid, "label": bad})
        assert r.status_code == 422 and detail_of(r)[0]["field"] == "label", bad
    r = client.post("/feedback/batch", json={"labels": [{"prediction_id": pid, "label": 0}, {"prediction_id": "x", "label": 1}]})
    assert r.status_code == 404 and detail_of(r)[0]["field"] == "labels[1].prediction_id"


def test_ops_endpoints(served):
    client, _ = served
    assert client.get("/health").json() == {"status": "alive"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["model_version"] == "1"
    model = client.get("/model").json()
    assert model["training_window"] == {"start": "2013-01-01", "end": "2013-03-31"}
    assert model["validation_metrics"]["roc_auc"] > 0.7 and model["contract_version"] == "1.0.0"
    assert client.get("/contract").json()["x-contract-version"] == "1.0.0"


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    field=st.sampled_from(["temp", "carrier", "origin", "time_hour", "sched_dep_time", "distance", "wind_gust", "new"]),
    value=JSONISH,
)
def test_no_value_in_any_field_causes_a_5xx(served, good_record_base, field, value):
    client, _ = served
    body = {**good_record_base, field: value}
    text = json.dumps(body, allow_nan=True)
    r = client.post("/predict", content=text, headers={"content-type": "application/json"})
    assert r.status_code < 500, (field, value, r.text)
    if r.status_code == 200:
        assert math.isfinite(r.json()["probability"])


def test_every_prediction_and_label_is_logged(trained, tmp_path, good_record, contract):
    settings, _ = trained
    url = f"sqlite:///{tmp_path / 'log.db'}"
    s = settings.model_copy(update={"log_store_url": url})
    ids = []
    with TestClient(create_app(s)) as client:
        for i in range(40):
            ids.append(client.post("/predict", json={**good_record, "sched_dep_time": 600 + i}).json()["prediction_id"])
        batch = client.post("/predict/batch", json={"records": [good_record] * 25}).json()["predictions"]
        ids += [p["prediction_id"] for p in batch]
        client.post("/feedback/batch", json={"labels": [{"prediction_id": p, "label": i % 2} for i, p in enumerate(ids)]})
    from features.pipeline import build_features

    store = LogStore(url, contract, list(build_features(contract).get_feature_names_out()))
    frame = next(store.iter_predictions(None, None))
    assert sorted(frame["prediction_id"]) == sorted(ids)
    assert store.count_labels() == len(ids)
    assert frame["f_dep_hour"].notna().all() and frame["carrier"].eq("UA").all()


def test_no_model_and_no_fallback_means_not_ready_never_500(tmp_path, good_record):
    s = Settings(home=tmp_path, log_store_url=f"sqlite:///{tmp_path / 'log.db'}", fallback="none")
    with TestClient(create_app(s, registry=InMemoryRegistry())) as client:
        r = client.get("/ready")
        # The reason's type, never its text (paths, hosts) without the admin token.
        assert r.status_code == 503 and detail_of(r)[0]["message"].startswith("LookupError (")
        assert client.post("/predict", json=good_record).status_code == 503
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize("token", [None, "an-admin-token-of-some-length"])
@pytest.mark.parametrize("body", ["{not json", '{"version": "x", "unknown": 1}', '{"version": "1"}'])
def test_admin_refuses_before_reading_the_body(tmp_path, token, body):
    """No token configured -> 403; a missing token -> 401; whatever the body (never 400/422 first)."""
    s = Settings(home=tmp_path, admin_token=token, reload_interval=0)
    app = create_app(s, registry=InMemoryRegistry())
    with TestClient(app) as client:
        r = client.post("/admin/promote", content=body, headers={"content-type": "application/json"})
        assert r.status_code == (403 if token is None else 401), r.text
        assert detail_of(r)[0]["field"] == "authorization"
        if token is not None:  # with the token, the body is read and judged
            ok = {"authorization": f"Bearer {token}", "content-type": "application/json"}
            assert client.post("/admin/promote", content="{not json", headers=ok).status_code == 400


def test_request_metrics_are_labelled_by_the_served_routes(served, good_record):
    """The endpoint label comes from the app's routes: every route has its series, others are 'other'."""
    client, _ = served
    client.post("/predict/batch", json={"records": [good_record]})
    client.get("/no-such-route")
    text = client.get("/metrics").text
    for path in ("/predict", "/predict/batch", "/feedback", "/feedback/batch", "/ready", "/status", "/admin/promote"):
        assert f'driftlight_requests_total{{endpoint="{path}",outcome="ok"}}' in text, path
    assert 'driftlight_requests_total{endpoint="other",outcome="client_error"}' in text
