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


def test_the_fleet_monitor_reports_each_models_shadow_comparison(trained_fleet, contract, flights, tmp_path) -> None:
    """Two routes shadowed by their own challengers (one a different model, one the champion's own
    fit under another version), served and labelled through the API: the fleet run reports, for
    exactly those two models, the single model's comparison (`monitoring.shadow.compare`) of their
    own rows with their own threshold, recorded with the run and shown by GET /fleet, the status
    page's fleet table and `fleet status`."""
    import pandas as pd
    from typer.testing import CliRunner

    from core.fleet import FleetRunStore, load_refs
    from core.fleet_monitor import run_fleet
    from core.logstore import log_store_from_settings
    from core.runs import RunStore
    from driftlight.cli import app as cli
    from monitoring.policy import load_policy
    from monitoring.shadow import compare, describe

    spec, registry, result = trained_fleet
    own = sorted(s["segment"] for s in result.segments if s["served_by"] == "own")
    assert len(own) >= 2, own
    names = [spec.model_name(s) for s in own[:2]]
    champions = [registry.alias_version(n, spec.alias) for n in names]
    # own[0]'s challenger is own[1]'s model (other probabilities); own[1]'s is its champion re-registered.
    for name, source in ((names[0], names[1]), (names[1], names[1])):
        bundle = registry.load(source, registry.alias_version(source, spec.alias))  # type: ignore[arg-type]
        registry.set_alias(name, "challenger", registry.register(name, bundle, params={}, metrics={}, artifacts={}).version)
    settings = Settings(home=tmp_path, fleet_file=default_fleet_path(), reload_interval=0, shadow_alias="challenger")
    april = flights[(flights["month"] == 4) & (flights["day"] <= 14) & flights["late"].notna()]
    route = april["origin"] + "-" + april["dest"]
    picked = pd.concat([april[route == own[0]].head(150), april[route == own[1]].head(120), april[~route.isin(own)].head(60)])
    records = [to_record(r, contract) for r in picked.to_dict("records")]
    out = []
    try:
        with TestClient(create_app(settings, registry=registry)) as client:
            client.app.state.ctx.holder.fleet.wait(60)  # type: ignore[attr-defined]
            for lo in range(0, len(records), 100):
                out += client.post("/predict/batch", json={"records": records[lo : lo + 100]}).json()["predictions"]
            labels = [{"prediction_id": p["prediction_id"], "label": int(y)} for p, y in zip(out, picked["late"], strict=True)]
            assert client.post("/feedback/batch", json={"labels": labels}).status_code == 202
    finally:
        for name in names:
            registry.delete_alias(name, "challenger")
    refs = load_refs(registry, spec)
    res = run_fleet(
        refs=refs, spec=spec, policy=load_policy(), store=log_store_from_settings(settings, contract), day=date(2013, 4, 14),
        timezone=contract.timezone, runs=FleetRunStore(settings.resolved_log_store_url),
    )  # fmt: skip
    assert sorted(res.shadow) == sorted(names)
    # The expected comparison, built from what the API returned and the shadow table, not the log's join.
    scores = RunStore(settings.resolved_log_store_url).shadow_scores([p["prediction_id"] for p in out])
    for name, champion in zip(names, champions, strict=True):
        mine = [(p, int(y)) for p, y in zip(out, picked["late"], strict=True) if p["model_name"] == name]
        assert {p["model_version"] for p, _ in mine} == {champion}
        frame = pd.DataFrame(
            {
                "probability": [p["probability"] for p, _ in mine],
                "shadow_probability": [scores[p["prediction_id"]][1] for p, _ in mine],
                "shadow_version": [scores[p["prediction_id"]][0] for p, _ in mine],
                "label": pd.array([y for _, y in mine], dtype="Int64"),
            }
        )
        expected = compare(frame, refs[name].threshold)
        assert expected is not None and expected["champion_roc_auc"] is not None
        got = res.shadow[name]
        assert got.keys() == expected.keys() and got["rows"] == expected["rows"] == len(mine)
        for key in expected:
            assert got[key] == pytest.approx(expected[key], abs=1e-12), key
    same = res.shadow[names[1]]  # the champion's own fit in shadow: identical scores
    assert same["decision_agreement"] == 1.0 and same["mean_abs_difference"] < 1e-12
    assert res.shadow[names[0]]["mean_abs_difference"] > 0.01
    doc = res.as_dict()
    by_name = {v["name"]: v for v in doc["verdicts"]}
    assert {n for n, v in by_name.items() if v["shadow"] is not None} == set(names)
    assert doc["summary"]["shadow_models"] == sorted(names)

    with TestClient(create_app(settings, registry=registry)) as client:
        body = client.get("/fleet").json()
        page = client.get("/").text
    assert page.count('class="msg shadow"') == 2 and describe(res.shadow[names[0]]) in page
    shown = {v["name"]: v["shadow"] for v in body["latest_run"]["verdicts"]}
    assert {n for n, s in shown.items() if s} == set(names)
    assert shown[names[0]]["decision_agreement"] == pytest.approx(res.shadow[names[0]]["decision_agreement"])
    text = CliRunner().invoke(cli, ["fleet", "status", "--home", str(tmp_path)]).output
    assert "champion vs challenger in shadow (2 models" in text, text
    for seg in own[:2]:
        assert any(line.strip().startswith(seg) and "agreement" in line for line in text.splitlines()), text
