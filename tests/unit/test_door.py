"""The door refuses what the log cannot hold: bounded event time, no epoch numbers, printable text;
error bodies can always be encoded."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from data_contracts.contract import ContractError, load_contract, parse_contract
from data_contracts.request_model import request_model
from service.errors import error_response

CONTRACT = load_contract()
GOOD = {
    "time_hour": "2013-04-01T14:00:00Z",
    "sched_dep_time": 1000,
    "sched_arr_time": 1300,
    "carrier": "UA",
    "origin": "EWR",
    "dest": "IAH",
    "distance": 1400.0,
    "temp": None,
    "dewp": None,
    "humid": None,
    "wind_dir": None,
    "wind_speed": None,
    "wind_gust": None,
    "precip": None,
    "pressure": None,
    "visib": None,
}


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("time_hour", "0001-01-01T00:00:00+14:00", "time_out_of_range"),
        ("time_hour", "9999-12-31T23:59:59-14:00", "time_out_of_range"),
        ("time_hour", "2300-01-01T00:00:00Z", "time_out_of_range"),
        ("time_hour", "1969-12-31T23:59:59Z", "time_out_of_range"),
        ("time_hour", 0, "timestamp_type"),
        ("time_hour", 1e10, "timestamp_type"),
        ("time_hour", True, "timestamp_type"),
        ("carrier", "U\x00", "unprintable_text"),
        ("dest", "A\x1bB", "unprintable_text"),
        ("carrier", "\ud800", "string_unicode"),
    ],
)
def test_the_request_model_refuses_what_the_log_cannot_hold(field: str, value: object, error: str) -> None:
    with pytest.raises(ValidationError) as err:
        request_model(CONTRACT).model_validate({**GOOD, field: value})
    (e,) = err.value.errors()
    assert e["type"] == error and e["loc"] == (field,)


def test_the_edges_of_the_event_time_range_are_accepted() -> None:
    model = request_model(CONTRACT)
    for ts in ("1970-01-01T00:00:00Z", "2100-01-01T00:00:00Z", "2099-12-31T18:00:00-05:00"):
        model.model_validate({**GOOD, "time_hour": ts})


def test_a_contract_with_a_bad_timestamp_range_is_refused() -> None:
    raw = json.loads(json.dumps({"name": "x", "version": "1", "timestamp_field": "t", "target": {
        "name": "y", "description": "d", "source_column": "c", "threshold_minutes": 1}}))  # fmt: skip
    for lo, hi, message in (
        ("2020-01-01", "2010-01-01", "min < max"),
        ("1900-01-01", None, "must lie within"),
        ("soon", None, "ISO-8601"),
    ):
        field = {"name": "t", "type": "timestamp", "description": "d", "min": lo, "max": hi}
        with pytest.raises(ContractError, match=message):
            parse_contract({**raw, "fields": [field]})


def test_an_error_body_echoing_a_lone_surrogate_is_encodable() -> None:
    detail = [{"field": "\ud800", "kind": "invalid_value", "expected": "x", "received": "a\udfffb", "message": "m"}]
    resp = error_response(422, "contract_violation", "bad \ud800", detail)
    body = json.loads(resp.body)
    assert body["detail"][0]["received"] == "a\\udfffb" and body["message"] == "bad \\ud800"
