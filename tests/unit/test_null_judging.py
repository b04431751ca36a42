"""Judging against the nulls and the model-hurt intervals: block bootstrap over airport-hours,
the label-free interval, the span -> cadence lookup, the trust flag."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from monitoring.monitor import airport_hours, estimate_trust, judge_against_null, model_hurt_signal, widen
from monitoring.null import NullBook, summarise
from monitoring.performance import Interval, auc_block_bootstrap, block_logit_sd, expected_auc, expected_auc_interval
from monitoring.policy import Signal


def blocky(n_blocks: int = 300, per: int = 12, shock_sd: float = 0.0, seed: int = 0):
    """Scores and labels in blocks (airport-hours) whose outcomes share a logit shock."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_blocks), per)
    # scores share a block component too (one weather reading per airport-hour)
    p = 1 / (1 + np.exp(-(rng.normal(-1.2, 0.8, size=n_blocks)[g] + rng.normal(0.0, 0.6, size=g.size))))
    logit = np.log(p / (1 - p)) + rng.normal(0.0, shock_sd, size=n_blocks)[g]
    y = (rng.random(g.size) < 1 / (1 + np.exp(-logit))).astype("float64")
    return p, y, g


def test_block_bootstrap_auc_matches_sklearn_and_brackets_it():
    p, y, g = blocky()
    ci = auc_block_bootstrap(p, y, g, n_boot=200)
    assert ci.estimate == __import__("pytest").approx(roc_auc_score(y, p), abs=1e-12)
    assert ci.low < ci.estimate < ci.high and ci.blocks == 300


def test_shared_shocks_widen_the_block_interval():
    p, y, g = blocky(shock_sd=1.5)
    blocks = auc_block_bootstrap(p, y, g, n_boot=300)
    rows = auc_block_bootstrap(p, y, np.arange(p.size), n_boot=300)  # every row its own block
    assert (blocks.high - blocks.low) > 1.15 * (rows.high - rows.low)


def test_unlabelled_rows_are_ignored_and_one_class_gives_nan():
    p, y, g = blocky()
    y2 = y.copy()
    y2[::2] = np.nan
    ci = auc_block_bootstrap(p, y2, g, n_boot=50)
    have = ~np.isnan(y2)
    assert math.isclose(ci.estimate, roc_auc_score(y2[have], p[have]))
    assert math.isnan(auc_block_bootstrap(p, np.zeros_like(p), g).estimate)


def test_label_free_interval_covers_a_calibrated_model_about_90_percent():
    covered = 0
    for seed in range(40):
        p, y, g = blocky(n_blocks=80, shock_sd=0.8, seed=seed)
        sd = 0.8
        est = expected_auc_interval(p, g, block_sd=sd, n_boot=150, seed=seed)
        assert est.low < est.estimate < est.high
        assert est.estimate < expected_auc(p)  # shared shocks make a calibrated model rank worse
        if seed == 0:
            plain = expected_auc_interval(p, g, n_boot=50, seed=seed)
            assert math.isclose(plain.estimate, expected_auc(p))
        covered += est.low <= roc_auc_score(y, p) <= est.high
    assert 30 <= covered <= 40  # nominal 36 of 40


def test_block_logit_sd_finds_the_shared_shock():
    p, y, g = blocky(n_blocks=2000, per=15, shock_sd=0.0, seed=1)
    assert block_logit_sd(p, y, g) < 0.3
    p, y, g = blocky(n_blocks=2000, per=15, shock_sd=1.0, seed=1)
    assert 0.5 < block_logit_sd(p, y, g) < 1.6


def test_model_hurt_signal_is_the_drop_the_interval_is_sure_of():
    ci = Interval(0.60, 0.55, 0.65, 0.9, 100)
    s = model_hurt_signal("roc_auc_drop", 0.70, ci, "x")
    assert math.isclose(s.value, 0.05)
    wide = widen(ci, 0.03)
    assert wide.high > ci.high and wide.low < ci.low and wide.estimate == ci.estimate
    assert model_hurt_signal("roc_auc_drop", 0.70, wide, "x").value < s.value


def test_airport_hours_group_by_origin_and_hour():
    t = pd.to_datetime(["2013-03-01T10:05Z", "2013-03-01T10:55Z", "2013-03-01T11:00Z", "2013-03-01T10:30Z"], utc=True)
    g = airport_hours(pd.DataFrame({"event_time": t, "origin": ["EWR", "EWR", "EWR", "JFK"]}))
    assert g[0] == g[1] and g[1] != g[2] and g[0] != g[3]


def _book() -> NullBook:
    rng = np.random.default_rng(0)
    return NullBook(
        (
            summarise("psi", "temp", 1, list(rng.gamma(2.0, 1.0, 50)), 50),
            summarise("psi", "temp", 7, list(rng.gamma(2.0, 0.2, 40)), 10),
        )
    )


def test_signals_are_judged_against_the_null_of_the_nearest_cadence():
    book = _book()
    sig = [Signal("psi", "temp", 5.0), Signal("psi", "dest", 0.5), Signal("unit_change", "temp", 0.0)]
    day, c1 = judge_against_null(sig, book, 1)
    week, c7 = judge_against_null(sig, book, 6)
    assert (c1, c7) == (1, 7)
    d, w = day[0], week[0]
    assert d.signal == w.signal == "psi_vs_null" and d.feature == "temp"
    assert d.value < 3.0 < w.value  # PSI 5 is a rough day but an abnormal week
    assert "psi 5 " in d.detail and "1-day null" in d.detail
    # no null for dest: the absolute signal stays, as do signals that are never null-judged
    assert day[1] == sig[1] and day[2] == sig[2]


def test_estimate_trust_flags_moved_output_inputs_or_extrapolation():
    assert estimate_trust([Signal("psi_vs_null", "temp", 3.5)]) == (True, "")
    ok, why = estimate_trust([Signal("psi_vs_null", "probability", 4.0)])
    assert not ok and "output" in why
    ok, why = estimate_trust([Signal("psi_vs_null", "temp", 4.0), Signal("psi_vs_null", "dewp", 3.2)])
    assert not ok and "temp" in why
    ok, why = estimate_trust([Signal("beyond_reference_rate_vs_null", "temp", 8.0)])
    assert not ok and "outside" in why
