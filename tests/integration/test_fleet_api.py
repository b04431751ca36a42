"""The API with a fleet file: each request goes to its route's champion (or the global model), every
response and logged row names that model, a batch mixes models, GET /fleet says what is loaded."""

from __future__ import annotations

import dataclasses
import time
from datetime import date

import pytest
from fastapi.testclient import TestClient

from core.registry import InMemoryRegistry
from core.settings import Settings
from data_contracts.fleet import default_fleet_path, load_fleet
from drills.replay import to_record
from service.app import create_app
from training.fleet import train_fleet


class ListLog:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def log_prediction(self, row) -> None:  # type: ignore[no-untyped-def]
        self.rows.append(row)

    def log_label(self, row) -> None:  # type: ignore[no-untyped-def]
        pass

    def pending(self) -> int:
        return 0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


@pytest.fixture(scope="module")
def trained_fleet(contract, flights):
    spec = load_fleet(contract=contract)
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, start=date(2013, 2, 15), null_resamples=20))
    registry = InMemoryRegistry()
    result = train_fleet(contract, registry, spec, frame=flights, workers=1, limit=4)
    return spec, registry, result


@pytest.fixture(scope="module")
def fleet_app(trained_fleet, tmp_path_factory):
    spec, registry, result = trained_fleet
    settings = Settings(home=tmp_path_factory.mktemp("fleet-home"), fleet_file=default_fleet_path(), reload_interval=0)
    log = ListLog()
    with TestClient(create_app(settings, registry=registry, prediction_log=log)) as client:
        holder = client.app.state.ctx.holder  # type: ignore[attr-defined]
        holder.fleet.wait(60)
        yield client, log, spec, result


def test_requests_go_to_their_route_and_name_it(fleet_app, contract, flights) -> None:
    client, log, spec, result = fleet_app
    own = sorted(s["segment"] for s in result.segments if s["served_by"] == "own")
    assert own, result.segments
    april = flights[(flights["month"] == 4) & (flights["day"] == 2)]
    route = april["origin"] + "-" + april["dest"]
    mine = april[route == own[0]].head(1)
    other = april[~route.isin(own)].head(1)
    for frame, expected in ((mine, spec.model_name(own[0])), (other, spec.global_model)):
        body = client.post("/predict", json=to_record(frame.iloc[0].to_dict(), contract)).json()
        assert body["model_name"] == expected and body["served_by"] == "model"
        assert log.rows[-1]["model_name"] == expected
    batch = [to_record(r, contract) for r in [*mine.to_dict("records"), *other.to_dict("records")]]
    out = client.post("/predict/batch", json={"records": batch}).json()
    assert [p["model_name"] for p in out["predictions"]] == [spec.model_name(own[0]), spec.global_model]


def test_get_fleet_and_ready_say_what_is_loaded(fleet_app) -> None:
    client, _, spec, result = fleet_app
    for _ in range(50):
        serving = client.get("/fleet").json()["serving"]
        if serving["loaded_in_s"] is not None:
            break
        time.sleep(0.1)
    assert serving["loaded"] == result.own_champions == serving["segment_champions"]
    assert serving["global_model"] == spec.global_model
    ready = client.get("/ready").json()
    assert ready["model_name"] == spec.global_model and ready["fleet"]["loaded"] == result.own_champions


def test_shadow_scoring_works_per_fleet_model(trained_fleet, contract, flights, tmp_path) -> None:
    """A challenger registered for one route is scored on that route's traffic only, stored against
    the served prediction with the challenger's version, never returned; other routes and the global
    model (no challenger) are not shadow-scored."""
    from core.runs import RunStore

    spec, registry, result = trained_fleet
    own = sorted(s["segment"] for s in result.segments if s["served_by"] == "own")
    name = spec.model_name(own[0])
    champion = registry.alias_version(name, spec.alias)
    assert champion is not None
    bundle = registry.load(name, champion)
    challenger = registry.register(name, bundle, params={}, metrics={}, artifacts={}).version
    registry.set_alias(name, "challenger", challenger)
    settings = Settings(home=tmp_path, fleet_file=default_fleet_path(), reload_interval=0, shadow_alias="challenger")
    april = flights[(flights["month"] == 4) & (flights["day"] == 3)]
    route = april["origin"] + "-" + april["dest"]
    mine = [to_record(r, contract) for r in april[route == own[0]].head(5).to_dict("records")]
    other = [to_record(r, contract) for r in april[~route.isin(own)].head(5).to_dict("records")]
    try:
        with TestClient(create_app(settings, registry=registry)) as client:
            client.app.state.ctx.holder.fleet.wait(60)  # type: ignore[attr-defined]
            assert client.get("/fleet").json()["serving"]["shadows"] == {name: challenger}
            out = client.post("/predict/batch", json={"records": mine + other}).json()["predictions"]
            assert [p["model_name"] for p in out] == [name] * 5 + [spec.global_model] * 5
            assert all("shadow" not in str(p) for p in out)
        # leaving the client stops the scorer, which scores what was queued before it returns
        scores = RunStore(settings.resolved_log_store_url).shadow_scores([p["prediction_id"] for p in out])
        assert set(scores) == {p["prediction_id"] for p in out[:5]}
        assert {v for v, _ in scores.values()} == {challenger}
        for p in out[:5]:  # the same fitted model under another version: the same probability
            assert abs(scores[p["prediction_id"]][1] - p["probability"]) < 1e-12
    finally:
        registry.delete_alias(name, "challenger")
