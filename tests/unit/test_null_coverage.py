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
