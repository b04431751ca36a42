"""The calibration command's cheap parts (no training): the model-days choice is checked before
anything loads, and a saved --json file reads back with its numeric keys as numbers, so the doc can
be re-rendered from it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
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


def test_a_fault_that_leaves_a_window_unchanged_is_counted_apart_and_named():
    from drills.calibrate import FAULTS, untouched_windows

    mm = next(c for c in FAULTS if c.name == "precip inches -> mm")
    rng = np.random.default_rng(0)
    dry = pd.DataFrame({"precip": [0.0, 0.0, np.nan], "temp": [40.0, 41.0, 42.0]})
    wet = dry.assign(precip=[0.0, 0.02, np.nan])
    assert mm.fault(dry, rng).equals(dry)  # 0 in every unit: nothing a monitor could see
    assert not mm.fault(wet, rng).equals(wet)
    faults = {
        "precip inches -> mm": {
            1: {"judged": 38, "changed": 12, "success_changed": 11 / 12},
            7: {"judged": 21, "changed": 21, "success_changed": 0.9},
        },
        "F -> C (temp)": {1: {"judged": 38, "changed": 38, "success_changed": 1.0}},
    }
    assert untouched_windows(faults) == ["precip inches -> mm: 1 d 26 of 38 windows unchanged, success on the 12 it changed 92%"]


def test_a_false_alarm_rate_comes_with_its_exact_interval():
    """2 of 24 control days is 8.3 %, and the exact 95 % interval says how little 24 days can tell:
    it holds both 5 % and 20 % (the bounds are the Beta quantiles of Clopper-Pearson: beta.ppf(0.025, 2,
    23) = 0.0103, beta.ppf(0.975, 3, 22) = 0.2700)."""
    from drills.calibrate import rate_interval

    assert rate_interval(2, 24) == "1.0-27.0 %"
    assert rate_interval(0, 14) == "0.0-23.2 %"  # no alarm in 14 days still allows 23 %
    assert rate_interval(24, 24).endswith("-100.0 %")
    assert rate_interval(0, 0) == "-"


def test_the_nested_check_counts_a_score_at_the_policy_rule_that_would_judge_it():
    """A held-back block's score counts as the policy's warning only at the threshold of the rule a
    window of that cadence would meet: z 3.5 of a stuck-value share is a warning for a week, not a day."""
    from drills.calibrate import nested, policy_warns
    from monitoring.policy import load_policy

    policy = load_policy()
    assert not policy_warns(policy, "stuck_value_share:pressure", 3.5, 1)
    assert policy_warns(policy, "stuck_value_share:pressure", 3.5, 7)
    assert policy_warns(policy, "stuck_value_share:pressure", 4.5, 1)
    assert not policy_warns(policy, "psi:temp", 3.9, 1) and policy_warns(policy, "psi:temp", 3.1, 7)
    assert policy_warns(policy, "calibration_gap", 3.1, 1)  # no 1-day rule: the nested check gave no reason for one
    assert not policy_warns(policy, "no_such_statistic", 9.0, 1)
    res = {"null_coverage": {1: {"share": {3.0: 0.118}, "share_policy": 0.059}}}
    assert (nested(res, 1, 3.0), nested(res, 1, None), nested(res, 7, 3.0)) == ("11.8 %", "5.9 %", "-")
