"""Lost traffic and partial batches through the API (issue 11, item 4).

- a control day sent whole is not a volume alarm; the same day with one origin's feed gone is red
  with `volume_change` first, naming the origin;
- /predict/batch serves the valid records and reports each invalid one (index, field, expected,
  received); refused records are counted at the door by event hour, so the light sees them;
  `?atomic=true` keeps all-or-nothing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from core.monitor_job import Monitor
from data_contracts.contract import REJECTED_BY_EVENT, REJECTED_RECORDS
from data_contracts.windows import on_days, select_window
from drills.replay import replay_frame

DAY = date(2013, 1, 3)  # a held-out control day (seed 0), an ordinary Thursday: 904 flights


@pytest.fixture(scope="module")
def day_rows(contract, flights, bundle):
    assert DAY.isoformat() in bundle.metadata["monitoring"]["control_days"]
    return on_days(contract, select_window(flights, contract, DAY, DAY), [DAY]).sort_values("time_hour")


def logged(settings, contract) -> int:
    from core.logstore import LogStore
    from features.pipeline import build_features

    return LogStore(settings.log_store_url, contract, list(build_features(contract).get_feature_names_out())).count_predictions()


def send_and_judge(client, settings, contract, frame):
    res = replay_frame("", frame, contract, batch_size=500, client=client)
    assert res.rejected == 0 and res.failed_requests == 0, res.errors
    assert client.app.state.ctx.log.flush(10.0)
    return Monitor(settings).run_days(DAY, DAY, html=False)


def test_a_whole_day_is_no_volume_alarm_and_without_an_origin_it_is_red(served, contract, day_rows):
    s, client = served
    res = send_and_judge(client, s, contract, day_rows)
    assert not [r for r in res.verdict.reasons if r.signal == "volume_change"], [r.message for r in res.verdict.reasons]


def test_an_origins_feed_gone_is_red_with_volume_change_first(served, contract, day_rows):
    s, client = served
    res = send_and_judge(client, s, contract, day_rows[day_rows["origin"] != "JFK"])
    top = res.verdict.reasons[0]
    assert res.verdict.status == "red" and top.signal == "volume_change", [r.message for r in res.verdict.reasons]
    assert top.feature == "origin=JFK" and top.question == "data_broken" and "expected" in top.message


def test_a_batch_serves_the_valid_records_and_counts_the_refused_ones(served, contract, good_record):
    s, client = served
    ctx = client.app.state.ctx
    bad = {**good_record, "visib": -1.0, "time_hour": "2013-01-03T15:00:00Z"}
    r = client.post("/predict/batch", json={"records": [good_record, bad, good_record, {**bad, "temp": 500.0}]})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["served"], doc["refused"]) == (2, 2) and [p["index"] for p in doc["predictions"]] == [0, 2]
    first = doc["errors"][0]
    assert (first["index"], first["field"], first["kind"], first["received"]) == (1, "records[1].visib", "out_of_range", -1.0)
    assert first["expected"] and {(e["index"], e["field"]) for e in doc["errors"]} >= {(3, "records[3].temp")}
    assert ctx.log.flush(10.0)
    assert logged(s, contract) == 2  # the valid ones are logged ...
    assert ctx.violations.flush()
    runs = ctx.run_store()
    v = runs.violations_between(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    assert v[REJECTED_RECORDS] == 2 and v[REJECTED_BY_EVENT] == 2  # ... the invalid ones reach the light
    assert v[("visib", "out_of_range")] == 2 and v[("temp", "out_of_range")] == 1
    text = client.get("/metrics").text
    assert 'driftlight_contract_violations_total{field="visib",kind="out_of_range"} 2.0' in text


def test_an_atomic_batch_is_all_or_nothing(served, contract, good_record):
    s, client = served
    ctx = client.app.state.ctx
    r = client.post("/predict/batch?atomic=true", json={"records": [good_record, {**good_record, "visib": -1.0}]})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "records[1].visib"
    ok = client.post("/predict/batch?atomic=true", json={"records": [good_record]})
    assert ok.status_code == 200 and ok.json()["errors"] == [] and ok.json()["refused"] == 0
    assert ctx.log.flush(10.0) and logged(s, contract) == 1
    assert ctx.violations.flush()
    v = ctx.run_store().violations_between(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    assert v[REJECTED_RECORDS] == 2 and v[REJECTED_BY_EVENT] == 2  # both records of the refused batch
