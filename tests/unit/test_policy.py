"""The policy: thresholds map to colours, hysteresis stops flapping, the file is validated."""

from __future__ import annotations

import dataclasses

import pytest

from monitoring.policy import (
    QUESTIONS,
    PolicySettings,
    Rule,
    Signal,
    decide,
    load_policy,
    parse_policy,
    question_of,
    retrain_hold,
    worst,
)

# The threshold mechanics (colours, first match, hysteresis) on rules that answer "is the data
# broken?", whose critical is red on its own; the world-moved cap has its own tests below.
RULES = (
    Rule("psi", warning=0.1, critical=0.25, features="temp", question="data_broken"),
    Rule("psi", warning=0.2, critical=0.5, question="data_broken"),
    Rule("roc_auc", warning=0.70, critical=0.65, direction="below", question="model_hurt"),
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
        ({"rules": [{"signal": "psi", "warning": 0.1, "question": "is_it_bad"}]}, "question must be one of"),
    ],
)
def test_bad_policy_files_are_refused(doc, message):
    with pytest.raises(ValueError, match=message):
        parse_policy(doc)


def test_worst():
    assert worst(["green", "not_enough_data", "yellow"]) == "yellow"
    assert worst(["not_enough_data"]) == "not_enough_data"


# --- red means act: every reason says which question fired -----------------------------------
Q = PolicySettings(
    rules=(
        Rule("unit_change", critical=0.5),
        Rule("psi_vs_null", warning=3.0, critical=5.0),
        Rule("roc_auc_drop", warning=0.01, critical=0.03),
        Rule("model_age_days", warning=60, critical=120, question="model_hurt"),
    ),
    min_rows=1,
)


def test_signals_map_to_their_questions_by_default():
    assert question_of("unit_change") == "data_broken"
    assert question_of("missing_rate_increase_vs_null") == "data_broken"
    assert question_of("contract_violation_rate") == "data_broken"
    assert question_of("stuck_run_ratio") == "data_broken"  # a frozen feed, not the weather
    assert next(r for r in load_policy().rules if r.signal == "stuck_run_ratio").asks == "data_broken"
    assert question_of("roc_auc_drop") == "model_hurt"
    assert question_of("expected_roc_auc_drop") == "model_hurt"
    assert question_of("psi_vs_null") == "world_moved"
    assert question_of("label_rate_shift_vs_null") == "world_moved"
    assert set(QUESTIONS) == {"data_broken", "model_hurt", "world_moved"}


def test_reasons_carry_the_question_and_a_rule_can_declare_it():
    v = decide([Signal("unit_change", "temp", 1.0), Signal("model_age_days", None, 70)], Q)
    assert {(r.signal, r.question) for r in v.reasons} == {("unit_change", "data_broken"), ("model_age_days", "model_hurt")}
    assert v.as_dict()["reasons"][0]["question"] == "data_broken"  # additive field, in the JSON form


def test_data_broken_is_red_on_its_own():
    v = decide([Signal("unit_change", "temp", 1.0)], Q)
    assert v.status == "red" and v.reasons[0].question == "data_broken"


def test_world_moved_alone_is_yellow_even_beyond_its_critical_threshold():
    v = decide([Signal("psi_vs_null", "temp", 7.5)], Q)
    assert v.status == "yellow" and v.raw_status == "yellow"
    assert v.reasons[0].severity == "warning" and v.reasons[0].question == "world_moved"
    assert any("no model_hurt reason" in n for n in v.notes)


def test_world_moved_with_a_hurt_model_is_red_a_mere_dip_is_not_enough():
    hurt = decide([Signal("psi_vs_null", "temp", 7.5), Signal("roc_auc_drop", None, 0.05)], Q)
    assert hurt.status == "red"
    assert {r.question for r in hurt.reasons if r.severity == "critical"} == {"world_moved", "model_hurt"}
    dip = decide([Signal("psi_vs_null", "temp", 7.5), Signal("roc_auc_drop", None, 0.02)], Q)
    assert dip.status == "yellow"


def test_default_policy_declares_only_known_questions_and_judges_against_the_nulls():
    policy = load_policy()
    assert all(r.asks in QUESTIONS for r in policy.rules)
    signals = {r.signal: r for r in policy.rules}
    for name in ("psi_vs_null", "label_rate_shift_vs_null", "stuck_value_share_vs_null", "block_inconsistency"):
        assert name in signals
    assert signals["psi_vs_null"].asks == "world_moved"
    for name in ("block_inconsistency", "missing_rate_increase", "unit_change", "contract_violation_rate"):
        assert signals[name].asks == "data_broken"
    assert signals["roc_auc_drop"].asks == "model_hurt"


def test_a_cadence_rule_holds_single_days_to_their_own_threshold() -> None:
    """The shipped policy: a z of 3.5 against the 1-day null is within a single day's wobble
    (warning z 4), the same z against the 7-day null is a warning; a rule without a cadence
    still catches a signal that carries none."""
    from monitoring.policy import Signal, decide, load_policy

    policy = load_policy()
    day = Signal("psi_vs_null", "temp", 3.5, cadence_days=1)
    week = Signal("psi_vs_null", "temp", 3.5, cadence_days=7)
    bare = Signal("psi_vs_null", "temp", 3.5)
    assert decide([day], policy).raw_status == "green"
    assert decide([Signal("psi_vs_null", "temp", 4.2, cadence_days=1)], policy).raw_status == "yellow"
    assert decide([week], policy).raw_status == "yellow"
    assert decide([bare], policy).raw_status == "yellow"
    assert decide([Signal("label_rate_shift_vs_null", None, 3.5, cadence_days=1)], policy).raw_status == "green"
    assert decide([Signal("label_rate_shift_vs_null", None, 3.5, cadence_days=7)], policy).raw_status == "yellow"
    # a steady day (Jan 12 pressure scored z 3.0 held back from the reference) is no stuck sensor;
    # a frozen one is far beyond, and stays red with the broken-data reason
    for signal in ("stuck_value_share_vs_null", "beyond_reference_rate_vs_null"):
        assert decide([Signal(signal, "pressure", 3.5, cadence_days=1)], policy).raw_status == "green"
        assert decide([Signal(signal, "pressure", 3.5, cadence_days=7)], policy).raw_status == "yellow"
    frozen = decide([Signal("stuck_value_share_vs_null", "humid", 8.0, cadence_days=1)], policy)
    assert frozen.raw_status == "red" and frozen.reasons[0].question == "data_broken"


def test_broken_data_withholds_the_retrain_a_hurt_model_alone_does_not() -> None:
    """Red on broken data pages the owner but asks for no retrain (a model fitted on the broken feed
    learns the fault), even when the model looks hurt too; red on model-hurt evidence alone retrains.
    The policy can restore retraining on broken data."""
    broken = decide([Signal("unit_change", "temp", 1.0), Signal("roc_auc_drop", None, 0.05)], Q)
    assert broken.status == "red"
    why = retrain_hold(broken.reasons, Q)
    assert why is not None and "unit_change:temp" in why and "when_data_broken" in why
    hurt = decide([Signal("roc_auc_drop", None, 0.05), Signal("psi_vs_null", "temp", 7.5)], Q)
    assert hurt.status == "red" and retrain_hold(hurt.reasons, Q) is None
    dup = dataclasses.replace(Q, rules=(*Q.rules, Rule("duplicate_share", warning=0.01, critical=0.05)))
    warned = decide([Signal("duplicate_share", None, 0.02)], dup)  # a data-broken *warning* is yellow: nothing to withhold
    assert warned.status == "yellow" and retrain_hold(warned.reasons, dup) is None
    anyway = dataclasses.replace(Q, retrain_when_data_broken=True)
    assert retrain_hold(broken.reasons, anyway) is None
    assert load_policy().retrain_when_data_broken is False
    with pytest.raises(ValueError, match="when_data_broken"):
        parse_policy({"rules": [], "retrain": {"when_broken": True}})
