"""The nested check of the nulls on the reference itself (monitoring.null.held_back_scores): a
held-back block is never part of the null it is scored under, so a reference whose days all come
from one process alarms at about the nominal rate, and one broken day is found."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from monitoring.null import alarm_share, held_back_scores
from tests.unit.test_null import day_counts


def labels(rng: np.random.Generator, n_days: int, rate: float = 0.2, rows: int = 900) -> tuple[np.ndarray, np.ndarray]:
    n = np.full(n_days, float(rows))
    day_rate = np.clip(rate + rng.normal(0.0, 0.05, size=n_days), 0.01, 0.99)
    return rng.binomial(rows, day_rate).astype("float64"), n


def test_days_from_one_process_alarm_near_the_nominal_rate_and_never_include_themselves():
    rng = np.random.default_rng(3)
    counts = {"a": day_counts(rng), "b": day_counts(rng)}
    scores = held_back_scores(counts, labels(rng, 60), cadence=1)
    assert len(scores) == 60
    assert set(scores[0]) == {"psi:a", "psi:b", "label_rate_shift"}
    # three statistics at z >= 2 (p ~ 2.3 % each): ~6.7 % of blocks if the tail is right
    nominal = 1 - (1 - stats.norm.sf(2.0)) ** 3
    assert alarm_share(scores, 2.0) <= 3 * nominal
    assert alarm_share(scores, 5.0) == 0.0


def test_the_calibration_gap_is_scored_nested_and_finds_a_day_whose_labels_moved():
    from tests.unit.test_null import calibrated_days

    rng = np.random.default_rng(6)
    late, n, predicted = calibrated_days(rng)
    late[23] += 0.15 * (n[23] - late[23])  # 15 % of the day's on-time flights late; inputs unchanged
    scores = held_back_scores({"a": day_counts(rng)}, (late, n), 1, predicted)
    assert set(scores[0]) == {"psi:a", "label_rate_shift", "calibration_gap"}
    gap = np.array([row["calibration_gap"] for row in scores])
    assert int(np.argmax(gap)) == 23 and gap[23] >= 4.0
    others = [{"g": z} for i, z in enumerate(gap) if i != 23]
    assert alarm_share(others, 3.0) <= 0.05
    # the label-rate shift of the same day stays within what weather alone does to a day
    assert scores[23]["label_rate_shift"] < 3.0


def test_a_broken_day_scores_far_beyond_the_others():
    rng = np.random.default_rng(4)
    a = day_counts(rng)
    a[17] = a[17][::-1]  # one day's distribution reversed
    scores = held_back_scores({"a": a}, None, cadence=1)
    z = np.array([row["psi:a"] for row in scores])
    assert int(np.argmax(z)) == 17 and z[17] >= 5.0
    assert np.median(z) < 1.0


def test_seven_day_blocks_and_an_empty_scores_list():
    rng = np.random.default_rng(5)
    scores = held_back_scores({"a": day_counts(rng, n_days=40)}, None, cadence=7)
    assert len(scores) == 40 - 7 + 1
    assert all("psi:a" in row for row in scores)
    assert math.isnan(alarm_share([], 3.0))


def test_stuck_and_beyond_reference_values_are_scored_nested_and_find_a_frozen_day():
    """The value nulls (stuck-value share, share beyond the reference range) are checked the same
    way: each day against nulls and a range from the other days only; a frozen day stands out, and a
    categorical column is not scored (a category mix moving is the world, not a stuck sensor)."""
    rng = np.random.default_rng(8)
    n_days, values = 60, 40
    base = np.exp(-0.5 * ((np.arange(values) - 20) / 6.0) ** 2)
    counts = np.stack([rng.multinomial(900, np.roll(base, int(rng.integers(-3, 4))) / base.sum()) for _ in range(n_days)]).astype(
        "float64"
    )
    counts[31] = 0.0
    counts[31, 20] = 900.0  # one day frozen at the usual value
    day_values = {"x": (counts, True), "carrier": (counts.copy(), False)}
    scores = held_back_scores({"a": day_counts(rng)}, None, 1, day_values=day_values)
    assert set(scores[0]) == {"psi:a", "stuck_value_share:x", "beyond_reference_rate:x"}
    stuck = np.array([row["stuck_value_share:x"] for row in scores])
    assert int(np.argmax(stuck)) == 31 and stuck[31] >= 5.0
    assert np.median(stuck) < 1.0
