"""No-drift nulls: estimated from whole days held back, a draw from the null is green ~all the
time, a shifted statistic is flagged, the summary survives JSON, the cadence is the nearest."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from monitoring.null import (
    NullBook,
    NullSummary,
    blocks,
    effective_blocks,
    estimate_nulls,
    estimate_value_nulls,
    nearest_cadence,
    summarise,
)

N_DAYS = 60
BINS = 10


def day_counts(rng: np.random.Generator, n_days: int = N_DAYS, rows: int = 900, day_sd: float = 0.4) -> np.ndarray:
    """Per-day bin counts where each day is one 'weather regime': the day's shares are the base
    shares tilted by a random day effect, then `rows` rows are drawn (rows are not independent)."""
    base = np.geomspace(1.0, 20.0, BINS) / np.geomspace(1.0, 20.0, BINS).sum()
    out = []
    for _ in range(n_days):
        logits = np.log(base) + rng.normal(0.0, day_sd, size=BINS)
        p = np.exp(logits) / np.exp(logits).sum()
        out.append(rng.multinomial(rows, p))
    return np.asarray(out, dtype="float64")


def psi_excess(rest: np.ndarray, cur: np.ndarray) -> float:
    from monitoring.null import _psi_excess

    return _psi_excess(rest, cur)


def test_blocks_slide_over_consecutive_days_and_count_effective_blocks():
    assert blocks(5, 2) == [(0, 2), (1, 3), (2, 4), (3, 5)]
    assert effective_blocks(51, 1) == 51
    assert effective_blocks(51, 7) == 10  # 7 independent weeks, overlapping ones worth 1.5x
    assert effective_blocks(51, 28) == 2  # too few for a null (MIN_BLOCKS = 3)


def test_a_statistic_drawn_from_the_null_is_green_about_95_percent_of_the_time():
    """Days from the same process as the reference: the score stays below the z of the 95th
    percentile in ~95 % of fresh days (the day-level noise is what the null measures)."""
    rng = np.random.default_rng(0)
    ref = day_counts(rng)
    (null,) = [s for s in estimate_nulls({"x": ref}, cadences=(1,)) if s.signal == "psi"]
    total = ref.sum(axis=0)
    fresh = day_counts(np.random.default_rng(1), n_days=400)
    z = np.array([null.score(psi_excess(total, day)) for day in fresh])
    share_below = float(np.mean(z < 1.645))
    assert 0.90 <= share_below <= 0.99, share_below
    assert float(np.mean(z >= 3.0)) <= 0.02  # the policy's warning: ~0.1 % nominal


def test_a_row_count_threshold_would_flag_every_normal_day():
    """Why the null: with day-level noise, the classic PSI 0.1 band flags ordinary days that the
    null calls typical."""
    rng = np.random.default_rng(0)
    ref = day_counts(rng, day_sd=0.6)
    (null,) = [s for s in estimate_nulls({"x": ref}, cadences=(1,)) if s.signal == "psi"]
    total = ref.sum(axis=0)
    values = [psi_excess(total, d) for d in day_counts(np.random.default_rng(2), n_days=200, day_sd=0.6)]
    assert np.mean(np.asarray(values) > 0.1) > 0.8  # the classic "slight drift" band
    assert np.mean([null.score(v) >= 3.0 for v in values]) <= 0.03


def test_a_shifted_window_is_flagged():
    rng = np.random.default_rng(0)
    ref = day_counts(rng)
    (null,) = [s for s in estimate_nulls({"x": ref}, cadences=(1,)) if s.signal == "psi"]
    total = ref.sum(axis=0)
    # the whole (uneven) distribution moved by three bins: beyond any day-to-day regime change
    shifted = np.roll(day_counts(np.random.default_rng(3), n_days=50), 3, axis=1)
    z = np.array([null.score(psi_excess(total, d)) for d in shifted])
    assert float(np.mean(z >= 3.0)) >= 0.95


def test_longer_cadences_have_tighter_nulls():
    rng = np.random.default_rng(0)
    ref = day_counts(rng)
    nulls = {s.cadence_days: s for s in estimate_nulls({"x": ref}, cadences=(1, 7)) if s.signal == "psi"}
    assert set(nulls) == {1, 7}
    assert nulls[7].quantiles[2] < nulls[1].quantiles[2]  # a week of days averages the regimes out
    assert nulls[7].n_blocks < nulls[1].n_blocks


def test_label_rate_shift_null_and_missing_rate_null():
    rng = np.random.default_rng(0)
    n = np.full(N_DAYS, 900.0)
    late = rng.binomial(900, np.clip(rng.normal(0.2, 0.08, N_DAYS), 0.02, 0.9)).astype("float64")
    counts = day_counts(rng)
    counts[:, 0] = rng.binomial(900, 0.05, N_DAYS)  # bin 0 = missing
    nulls = estimate_nulls({"x": counts}, (late, n), cadences=(1,))
    lr = next(s for s in nulls if s.signal == "label_rate_shift")
    assert lr.transform == "halfnormal"
    assert lr.score(0.01) < 1.0 < 3.0 < lr.score(0.45)  # a 45-point jump is beyond any ordinary day
    miss = next(s for s in nulls if s.signal == "missing_rate_increase")
    assert miss.score(0.03) <= 0.0  # below the smallest effect worth a flag
    assert miss.score(0.95) >= 4.0  # a dead field


def calibrated_days(rng: np.random.Generator, n_days: int = N_DAYS, rows: int = 900) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(late, labelled, predicted) per day: each day's late rate swings with its weather (7-47 %),
    and a calibrated model sees that weather: its probabilities sum to the day's expected late
    count, up to a small error of its own (sd 1.5 points of rate)."""
    n = np.full(n_days, float(rows))
    rate = np.clip(rng.normal(0.22, 0.08, n_days), 0.07, 0.47)
    late = rng.binomial(rows, rate).astype("float64")
    predicted = n * np.clip(rate + rng.normal(0.0, 0.015, n_days), 0.01, 0.99)
    return late, n, predicted


def test_calibration_gap_null_is_tight_for_a_calibrated_model_and_fires_on_a_label_shift():
    rng = np.random.default_rng(1)
    late, n, predicted = calibrated_days(rng)
    nulls = estimate_nulls({"x": day_counts(rng)}, (late, n), cadences=(1, 7), day_predicted=predicted)
    for c in (1, 7):
        gap = next(s for s in nulls if s.signal == "calibration_gap" and s.cadence_days == c)
        shift = next(s for s in nulls if s.signal == "label_rate_shift" and s.cadence_days == c)
        assert gap.transform == "halfnormal"
        # the weather moves the late rate and the probabilities together: the gap's spread is far tighter
        assert gap.scale < shift.scale / 2
    # a window where 15 % of on-time flights became late, the inputs (and so the probabilities) unchanged
    week = slice(10, 17)
    shifted = late[week].sum() + 0.15 * (n[week].sum() - late[week].sum())
    gap_value = abs(shifted - predicted[week].sum()) / n[week].sum()
    shift_value = abs(shifted / n[week].sum() - late.sum() / n.sum())
    gap7 = next(s for s in nulls if s.signal == "calibration_gap" and s.cadence_days == 7)
    shift7 = next(s for s in nulls if s.signal == "label_rate_shift" and s.cadence_days == 7)
    assert gap7.score(gap_value) >= 5.0 > shift7.score(shift_value)
    assert gap7.score(abs(late[week].sum() - predicted[week].sum()) / n[week].sum()) < 3.0  # the same week unshifted
    # no probabilities: no calibration-gap null (an in-sample one would be too tight)
    assert not [s for s in estimate_nulls({"x": day_counts(rng)}, (late, n), cadences=(1,)) if s.signal == "calibration_gap"]


def test_value_nulls_stuck_and_beyond():
    rng = np.random.default_rng(0)
    counts = day_counts(rng, day_sd=0.2)
    nulls = estimate_value_nulls({"x": (counts, True)}, cadences=(1,))
    assert {s.signal for s in nulls} == {"stuck_value_share", "beyond_reference_rate"}
    stuck = next(s for s in nulls if s.signal == "stuck_value_share")
    top = counts.sum(axis=0).max() / counts.sum()
    assert stuck.score(0.02) <= 0.0
    assert stuck.score(1.0 - top) >= 4.0  # a frozen sensor: one value on every row
    beyond = next(s for s in nulls if s.signal == "beyond_reference_rate")
    assert beyond.score(0.1) <= 0.0 < 3.0 < beyond.score(0.99)


def test_few_blocks_give_no_null_and_wider_thresholds():
    assert summarise("psi", "x", 28, [0.1, 0.2], n_blocks=2) is None
    vals = list(np.random.default_rng(0).gamma(2.0, 0.05, size=40))
    many = summarise("psi", "x", 1, vals, n_blocks=40)
    few = summarise("psi", "x", 7, vals, n_blocks=4)
    assert many is not None and few is not None
    assert few.value_at(3.0) > many.value_at(3.0)  # fewer blocks: the prediction interval widens


def test_score_and_value_at_are_inverse():
    s = summarise("psi", "x", 1, list(np.random.default_rng(0).gamma(2.0, 0.2, size=50)), n_blocks=50)
    assert s is not None
    for z in (2.0, 3.0, 4.0):
        assert s.score(s.value_at(z)) == pytest.approx(z, abs=1e-3)
    assert math.isnan(s.score(float("nan")))


def test_nearest_cadence_in_ratio():
    assert nearest_cadence(1, [1, 7]) == 1
    assert nearest_cadence(2, [1, 7]) == 1
    assert nearest_cadence(2.6, [1, 7]) == 1  # the boundary is sqrt(7) ~ 2.65 days
    assert nearest_cadence(3, [1, 7]) == 7  # 7/3 < 3/1
    assert nearest_cadence(30, [1, 7, 28]) == 28
    assert nearest_cadence(0, [1, 7]) is None
    assert nearest_cadence(5, []) is None


def test_null_book_round_trips_through_json():
    rng = np.random.default_rng(0)
    book = NullBook(tuple(estimate_nulls({"x": day_counts(rng)}, cadences=(1, 7))))
    back = NullBook.from_dict(json.loads(json.dumps(book.to_dict())))
    assert back == book
    assert back.cadences() == [1, 7]
    found = back.find("psi", "x", 7)
    assert isinstance(found, NullSummary) and found.cadence_days == 7
    assert back.find("psi", "y", 7) is None
    assert NullBook.from_dict(None) is None and NullBook.from_dict({"null_version": 99}) is None


def test_a_version_1_book_loses_its_in_sample_calibration_gap_null():
    rng = np.random.default_rng(2)
    late, n, predicted = calibrated_days(rng)
    book = NullBook(tuple(estimate_nulls({"x": day_counts(rng)}, (late, n), cadences=(1,), day_predicted=predicted)))
    assert book.find("calibration_gap", None, 1) is not None
    old = {**book.to_dict(), "null_version": 1}  # models trained before the out-of-fold null
    back = NullBook.from_dict(json.loads(json.dumps(old)))
    assert back is not None and back.find("calibration_gap", None, 1) is None
    assert back.find("psi", "x", 1) == book.find("psi", "x", 1)
    assert back.find("label_rate_shift", None, 1) == book.find("label_rate_shift", None, 1)


def test_block_consistency_is_zero_for_one_reading_per_block_and_catches_a_sprinkled_spike():
    import pandas as pd

    from monitoring.null import BlockConsistency, block_constant_fields

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(200), 8)
    reading = rng.normal(30.0, 1.0, 200)[groups]
    reading[groups % 10 == 0] = np.nan  # whole hours without a reading: natural
    frame = pd.DataFrame({"pressure": reading, "distance": rng.normal(1000, 300, groups.size)})
    assert block_constant_fields(frame, groups, ["pressure", "distance"]) == ["pressure"]

    acc = BlockConsistency(["pressure"])
    half = groups.size // 2  # chunk boundaries may split a block: it is merged across chunks
    acc.add(frame.iloc[: half + 3], groups[: half + 3])
    acc.add(frame.iloc[half + 3 :], groups[half + 3 :])
    assert acc.shares()["pressure"] == (0.0, 200)

    spiked = frame.copy()
    spiked.loc[rng.random(len(frame)) < 0.4, "pressure"] = np.nan
    acc = BlockConsistency(["pressure"])
    acc.add(spiked, groups)
    share, n = acc.shares()["pressure"]
    assert share > 0.8 and n == 200

    two_sources = frame.copy()
    two_sources.loc[::2, "pressure"] = two_sources["pressure"] * 33.8639  # inHg -> hPa on half the rows
    acc = BlockConsistency(["pressure"])
    acc.add(two_sources, groups)
    assert acc.shares()["pressure"][0] > 0.8
    assert BlockConsistency(["pressure"]).shares() == {}


def test_out_of_fold_auc_spread_is_the_block_to_block_sd_where_blocks_suffice() -> None:
    """The model-hurt interval's allowance for a hard week, from the reference days scored out of
    fold: one sd per cadence with >= MIN_BLOCKS independent blocks (51 days: 1 and 7, not 28); a
    block with one class only, and unlabelled rows, are left out, not counted as AUC 0.5."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from data_contracts.contract import load_contract
    from training.reference import out_of_fold_auc_spread

    contract = load_contract()
    rng = np.random.default_rng(3)
    n_days, per_day = 51, 120
    start = pd.Timestamp("2013-01-01 17:00", tz="UTC")  # noon in New York: one local day per block
    times = np.repeat([start + pd.Timedelta(days=d) for d in range(n_days)], per_day)
    p = rng.uniform(0.05, 0.6, size=times.size)
    # each day its own concept wobble: some days the score ranks well, some barely
    noise = np.repeat(rng.uniform(0.0, 3.0, size=n_days), per_day)
    logit = np.log(p / (1 - p)) + noise * rng.normal(size=times.size)
    y = (rng.uniform(size=times.size) < 1 / (1 + np.exp(-logit))).astype(float)
    y[:per_day] = 0.0  # day 1: nobody late, no AUC
    y[per_day + 5 : per_day + 15] = np.nan  # unlabelled rows on day 2
    ref = pd.DataFrame({contract.timestamp_field: times, "late": y})

    spread = out_of_fold_auc_spread(contract, ref, p)
    assert set(spread) == {"1", "7"}
    days = np.repeat(np.arange(n_days), per_day)
    ok = ~np.isnan(y)
    by_day = [roc_auc_score(y[ok & (days == d)], p[ok & (days == d)]) for d in range(1, n_days)]
    assert spread["1"] == pytest.approx(float(np.std(by_day, ddof=1)))
    assert spread["7"] < spread["1"]
    assert out_of_fold_auc_spread(contract, ref.iloc[: 2 * per_day], p[: 2 * per_day]) == {}  # 2 days: no block suffices
