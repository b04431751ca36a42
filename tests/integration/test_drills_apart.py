"""Drill traffic is tagged at the door and kept apart (issue: drills mixed with real traffic).

A drill's rows go into the same log (they are real served predictions), but under drill ids: the
real light never judges them, retraining never trains on them, a drill's run never counts in the
real light's hysteresis, `/status` shows the real light with the latest drill beside it, and a
drill's refusals at the door are stored apart from the real traffic's.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.ids import is_drill, is_ours, new_id
from core.logstore import log_store_from_settings
from core.monitor_job import Monitor
from core.settings import Settings
from data_contracts.windows import on_days, select_window
from drills.replay import replay_frame
from service.app import create_app
from training.promote import labelled_log

pytestmark = pytest.mark.integration


def test_the_drill_mark_is_signed():
    key = b"k"
    real, drill = new_id(key), new_id(key, drill=True)
    assert not is_drill(real) and is_drill(drill) and is_ours(drill, key)
    forged = drill[:12] + "4" + drill[13:]  # a drill id passed off as real traffic
    assert not is_ours(forged, key)


def test_drill_traffic_never_reaches_the_light_or_a_retrain(served, contract, flights, bundle):
    s, client = served
    fit = select_window(flights, contract, date(2013, 1, 1), date(2013, 3, 17))
    days = bundle.metadata["monitoring"]["control_days"]
    rows = on_days(contract, fit, days).sample(1600, random_state=5).sort_values("time_hour")
    real, drilled = rows.iloc[:800], rows.iloc[800:].copy()
    drilled["late"] = np.random.default_rng(0).permutation(drilled["late"].to_numpy())  # shuffled labels

    def new_carrier(rec):
        return {**rec, "carrier": "ZZ"}

    a = replay_frame("", real, contract, batch_size=200, client=client)
    b = replay_frame("", drilled, contract, batch_size=200, client=client, transform=new_carrier, drill="new-carrier")
    assert a.served == 800 and b.served == 800
    assert not any(is_drill(p) for p in a.prediction_ids) and all(is_drill(p) for p in b.prediction_ids)
    assert client.app.state.ctx.log.flush(10.0)

    # Retraining data: the real labelled rows only (no ZZ, no shuffled labels).
    store = log_store_from_settings(s, contract)
    train_rows = labelled_log(store, contract, date(2013, 1, 1), date(2013, 3, 17))
    assert len(train_rows) == a.labels_accepted and "ZZ" not in set(train_rows["carrier"])

    # The real light judges the real rows only: no unseen carrier, although half the log is ZZ.
    mon = Monitor(s)
    res = mon.run_days(date(2013, 1, 1), date(2013, 3, 17), html=False)
    assert res.rows == 800 and res.verdict.status != "red", [r.message for r in res.verdict.reasons]
    assert "carrier" not in {r.feature for r in res.verdict.reasons}

    # The drill's own run (its ids): red with an unseen category, recorded as the drill's.
    start, end = datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(seconds=1)
    drill_run = mon.run(start, end, by="served_at", html=False, history=[], request_retrain=False, drill="new-carrier")
    assert drill_run.verdict.status == "red" and drill_run.retrain_request is None
    assert "unseen_category_rate" in {r.signal for r in drill_run.verdict.top_reasons(3)}
    # ... which neither becomes the light nor holds it: the hysteresis history is the real runs'.
    assert mon.runs.recent_raw_statuses(10) == [res.verdict.raw_status]
    assert mon.runs.latest()["run_id"] == res.run_id and mon.runs.latest(drill=True)["drill"] == "new-carrier"
    status = client.get("/status").json()
    assert status["status"] == res.verdict.status and status["drill"] is None
    assert status["latest_drill"]["drill"] == "new-carrier" and status["latest_drill"]["status"] == "red"


def test_drill_refusals_are_kept_apart_and_prod_refuses_tags(served, good_record, tmp_path):
    s, client = served
    bad = {**good_record, "humid": 140.0}
    assert client.post("/predict", json=bad, headers={"X-Driftlight-Drill": "unit-change"}).status_code == 422
    ctx = client.app.state.ctx
    assert ctx.violations.flush()
    now = datetime.now(UTC)
    drill = ctx.runs.violations_between(now - timedelta(minutes=1), now, drill=True)
    real = ctx.runs.violations_between(now - timedelta(minutes=1), now)
    assert drill.get(("humid", "out_of_range")) == 1 and ("humid", "out_of_range") not in real

    # A bad tag is the caller's mistake; in prod, tags are refused unless DRIFTLIGHT_DRILLS is on.
    assert client.post("/predict", json=good_record, headers={"X-Driftlight-Drill": "Bad Name!"}).status_code == 422
    prod = Settings(
        **{
            **s.model_dump(),
            "profile": "prod",
            "id_secret": "k3Vq-9zR_pL2mX7wB4nT6yHc8sJd0fGa",
            "home": tmp_path / "prod",
            "drills": None,
        }
    )
    with TestClient(create_app(prod)) as c:
        r = c.post("/predict", json=good_record, headers={"X-Driftlight-Drill": "heat-wave"})
        assert r.status_code == 403 and r.json()["detail"][0]["field"] == "X-Driftlight-Drill"
        assert c.post("/predict", json=good_record).status_code == 200
