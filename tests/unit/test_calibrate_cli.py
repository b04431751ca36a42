"""The calibration command's cheap parts (no training): the model-days choice is checked before
anything loads, and a saved --json file reads back with its numeric keys as numbers, so the doc can
be re-rendered from it."""

from __future__ import annotations

import json

import pytest

from drills.calibrate import load_results, setup


def test_an_unknown_model_days_choice_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"reference, all.*'everything'"):
        setup(0, "everything")


def test_saved_results_read_back_with_numeric_keys(tmp_path):
    res = {
        "faults": {"heat wave": {"kind": "world_moved", 1: {"success": 0.5}, 7: {"success": 0.52}}},
        "power": {"temp": {1: {"tried": {0.5: 0.08, 4.0: 1.0}}}},
        "null_coverage": {1: {"share": {3.0: 0.098, 3.5: 0.078}}},
    }
    path = tmp_path / "res.json"
    path.write_text(json.dumps(res), encoding="utf-8")
    back = load_results(path)
    assert back == res
    assert back["power"]["temp"][1]["tried"][0.5] == 0.08
