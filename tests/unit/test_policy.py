"""The policy: thresholds map to colours, hysteresis stops flapping, the file is validated."""

from __future__ import annotations

import pytest

from monitoring.policy import PolicySettings, Rule, Signal, decide, load_policy, parse_policy, worst

RULES = (
    Rule("psi", warning=0.1, critical=0.25, features="temp"),
    Rule("psi", warning=0.2, critical=0.5),
    Rule("roc_auc", warning=0.70, critical=0.65, direction="below"),
)
P = PolicySettings(rules=RULES, clear_after=2, min_rows=100)


def test_green_yellow_red():
    assert decide([Signal("psi", "temp", 0.05)], P).status == "green"
    v = decide([Signal("psi", "temp", 0.15)], P)
    assert v.status == "yellow" and v.reasons[0].severity == "warning" and v.reasons[0].threshold == 0.1
    v = decide([Signal("psi", "temp", 0.3), Signal("psi", "dewp", 0.3)], P)
    assert v.status == "red" and [r.feature for r in v.reasons] == ["temp", "dewp"]  # critical first


def test_first_matching_rule_wins():
    # dewp uses the generic rule (0.2 / 0.5), temp its own (0.1 / 0.25)
    assert decide([Signal("psi", "dewp", 0.15)], P).status == "green"
    assert decide([Signal("psi", "temp", 0.15)], P).status == "yellow"


def test_direction_below_and_nan_is_not_a_breach():
    assert decide([Signal("roc_auc", None, 0.60)], P).status == "red"
    assert decide([Signal("roc_auc", None, float("nan"))], P).status == "green"


def test_too_small_a_window_is_not_judged():
    v = decide([Signal("psi", "temp", 9.0)], P, rows=99)
    assert v.status == "not_enough_data" and not v.reasons


def test_escalation_is_immediate_de_escalation_needs_calm_windows():
    red = [Signal("psi", "temp", 0.3)]
    calm: list[Signal] = []
    assert decide(red, P, ["green", "green"]).status == "red"
    held = decide(calm, P, ["green", "red"])
    assert held.status == "red" and held.raw_status == "green" and held.held_by_hysteresis
    assert decide(calm, P, ["red", "red"]).status == "red"
    # one calm window already passed (raw green, shown red): the second calm one steps down
    assert decide(calm, P, ["red", "green"]).status == "green"


def test_flapping_input_gives_a_steady_light():
    """Noisy windows alternating warning / calm: the shown light stays yellow."""
    shown: list[str] = []
    raw: list[str] = []
    for i in range(8):
        sig = [Signal("psi", "temp", 0.15 if i % 2 == 0 else 0.0)]
        v = decide(sig, P, raw)
        raw.append(v.raw_status)
        shown.append(v.status)
    assert shown == ["yellow"] * 8


def test_default_policy_file_loads_and_is_consistent():
    policy = load_policy()
    signals = {r.signal for r in policy.rules}
    assert {"unit_change", "missing_rate_increase", "unseen_category_rate", "roc_auc_drop", "model_age_days"} <= signals
    assert policy.min_rows >= 200 and policy.clear_after >= 1


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"rules": [{"signal": "psi"}]}, "needs a warning or a critical"),
        ({"rules": [{"signal": "psi", "warning": 0.5, "critical": 0.1}]}, "beyond the critical"),
        ({"rules": [{"signal": "psi", "warning": 0.1, "colour": "red"}]}, "unknown keys"),
        ({"rules": [{"signal": "psi", "warning": 0.1, "direction": "sideways"}]}, "direction"),
    ],
)
def test_bad_policy_files_are_refused(doc, message):
    with pytest.raises(ValueError, match=message):
        parse_policy(doc)


def test_worst():
    assert worst(["green", "not_enough_data", "yellow"]) == "yellow"
    assert worst(["not_enough_data"]) == "not_enough_data"
