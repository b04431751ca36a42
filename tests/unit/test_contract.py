"""The contract file and what is derived from it."""

from __future__ import annotations

import copy
import math

import pytest
import yaml
from pydantic import ValidationError

from data_contracts.contract import ContractError, contract_path, parse_contract
from data_contracts.request_model import request_model


def raw_contract() -> dict:
    return yaml.safe_load(contract_path().read_text())


def test_every_field_is_fully_specified(contract):
    assert contract.version and contract.timestamp_field == "time_hour"
    for f in contract.fields:
        assert f.description, f.name
        if f.is_numeric:
            assert f.min is not None and f.max is not None and f.min <= f.max and f.unit, f.name
        if f.type == "category":
            assert f.categories and f.unseen in ("reject", "flag"), f.name
    # the names are the dataset's own
    assert {"carrier", "origin", "dest", "sched_dep_time", "time_hour", "distance", "temp", "wind_speed"} <= set(
        contract.field_names
    )


def test_no_post_event_column_is_a_field(contract):
    assert not set(contract.post_event_columns) & set(contract.field_names)
    assert {"dep_delay", "arr_delay", "dep_time", "arr_time", "air_time"} <= set(contract.post_event_columns)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["fields"].append({"name": "dep_delay", "type": "number", "min": 0, "max": 1, "description": "x"}),
            "leakage",
        ),
        (lambda d: d["fields"][1].update(type="float"), "type must be one of"),
        (lambda d: d["fields"][1].pop("min"), "need min and max"),
        (lambda d: d["fields"][1].pop("description"), "description is required"),
        (lambda d: d["fields"][3].update(unseen="ignore"), "unseen must be reject or flag"),
        (lambda d: d["fields"][3].update(colour="red"), "unknown keys"),
        (lambda d: d.update(timestamp_field="carrier"), "timestamp_field"),
        (lambda d: d["fields"].append(copy.deepcopy(d["fields"][1])), "duplicate field names"),
    ],
)
def test_a_broken_contract_is_refused_with_the_reason(mutate, message):
    doc = raw_contract()
    mutate(doc)
    with pytest.raises(ContractError, match=message):
        parse_contract(doc)


def test_request_model_accepts_a_good_record(contract, good_record):
    rec = request_model(contract).model_validate(good_record)
    assert rec.time_hour.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    ("patch", "field", "error_type"),
    [
        ({"temp": "hot"}, "temp", "float_type"),
        ({"temp": True}, "temp", "float_type"),
        ({"distance": math.nan}, "distance", "finite_number"),
        ({"distance": math.inf}, "distance", "finite_number"),
        ({"humid": 101.0}, "humid", "less_than_equal"),
        ({"sched_dep_time": 1260}, "sched_dep_time", "value_error"),
        ({"sched_dep_time": 10.5}, "sched_dep_time", "int_type"),
        ({"origin": "BOS"}, "origin", "literal_error"),
        ({"time_hour": "2013-04-01T14:00:00"}, "time_hour", "timezone_aware"),
        ({"carrier": "X" * 40}, "carrier", "string_too_long"),
        ({"surprise": 1}, "surprise", "extra_forbidden"),
    ],
)
def test_request_model_names_the_field_and_the_problem(contract, good_record, patch, field, error_type):
    with pytest.raises(ValidationError) as exc:
        request_model(contract).model_validate({**good_record, **patch})
    errs = exc.value.errors()
    assert [(e["loc"][0], e["type"]) for e in errs] == [(field, error_type)]


def test_missing_field_is_an_error_even_when_nullable(contract, good_record):
    rec = dict(good_record)
    del rec["wind_gust"]  # nullable: must be sent as null, not omitted
    with pytest.raises(ValidationError) as exc:
        request_model(contract).model_validate(rec)
    assert exc.value.errors()[0]["loc"] == ("wind_gust",)


def test_unseen_flagged_category_passes_validation(contract, good_record):
    # carrier's policy is "flag": accepted by the model, warned and counted by the service
    assert contract.field("carrier").unseen == "flag"
    request_model(contract).model_validate({**good_record, "carrier": "ZZ"})
