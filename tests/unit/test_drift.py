"""Drift statistics: properties (hypothesis), hand-computed answers, and behaviour on known shifts."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.drift import chi2_test, compute_drift, jensen_shannon, ks_statistic, psi, psi_excess
from monitoring.profile import UNSEEN, ReferenceProfile, build_profile, category_counts, numeric_counts

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
values = st.lists(st.one_of(finite, st.just(math.nan), st.just(math.inf), st.just(-math.inf)), min_size=1, max_size=200)
shares = st.lists(st.floats(0.0, 1.0), min_size=2, max_size=12).filter(lambda v: sum(v) > 0).map(lambda v: np.asarray(v) / sum(v))


@pytest.fixture(scope="module")
def profile():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"x": rng.normal(0, 1, 5000), "h": rng.integers(0, 24, 5000).astype(float), "c": rng.choice(["a", "b", "c"], 5000)}
    )
    frame.loc[::10, "x"] = np.nan
    return build_profile(frame, ["x", "h"], ["c"])


@settings(max_examples=60, deadline=None)
@given(shares)
def test_psi_of_identical_shares_is_zero(p):
    assert psi(p, p) == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(shares, shares)
def test_psi_is_non_negative_and_js_bounded_symmetric(p, q):
    if len(p) != len(q):
        q = np.resize(q, len(p))
        q = q / q.sum() if q.sum() else np.full(len(p), 1 / len(p))
    assert psi(p, q) >= -1e-12
    js = jensen_shannon(p, q)
    assert 0.0 <= js <= 1.0 and js == pytest.approx(jensen_shannon(q, p), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(values)
def test_every_value_lands_in_exactly_one_bin_and_nan_is_missing(profile, vals):
    prof = profile.column("x")
    v = np.asarray(vals, dtype="float64")
    counts = numeric_counts(v, prof)
    assert counts.sum() == len(v)  # none dropped, none counted twice
    assert counts[0] == np.isnan(v).sum()  # NaN counted as missing
    assert counts[1] == np.sum(v < prof.ref_min) and counts[-1] == np.sum(v > prof.ref_max)


@settings(max_examples=30, deadline=None)
@given(st.lists(finite, min_size=300, max_size=600), st.randoms(use_true_random=False))
def test_row_order_does_not_matter(profile, vals, rnd):
    frame = pd.DataFrame({"x": vals, "h": [1.0] * len(vals), "c": ["a"] * len(vals)})
    shuffled = frame.sample(frac=1.0, random_state=rnd.randint(0, 10**6))
    a, b = compute_drift(profile, frame, min_rows=1), compute_drift(profile, shuffled, min_rows=1)
    for fa, fb in zip(a.features, b.features, strict=True):
        assert fa.psi == fb.psi and fa.cur_shares == fb.cur_shares
        assert fa.ks_d == fb.ks_d


def test_profile_json_round_trip_is_exact(profile):
    assert ReferenceProfile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile


def test_known_psi():
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.25 ln 2 + 0.25 ln 1.5 = 0.274653...
    assert psi(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))


def test_known_ks_and_chi2():
    d, _ = ks_statistic(np.array([1.0, 2.0, 3.0, 4.0]), np.array([3.0, 4.0, 5.0, 6.0, np.nan]))
    assert d == pytest.approx(0.5)  # at x in [2, 3): F_ref = 0.5, F_cur = 0
    stat, p = chi2_test(np.array([0.5, 0.5]), np.array([30.0, 70.0]))
    assert stat == pytest.approx((30 - 50) ** 2 / 50 + (70 - 50) ** 2 / 50) and p < 0.001


def test_psi_excess_removes_the_sampling_bias():
    ref = np.full(100, 0.01)
    assert psi_excess(0.2, ref, 500) == pytest.approx(0.2 - 99 / 500)
    assert psi_excess(0.05, ref, 500) == 0.0


def test_edges_and_explicit_bins(profile):
    prof = profile.column("x")
    e = prof.edges[3]
    counts = numeric_counts(np.array([e]), prof)
    assert counts[3 + 3] == 1  # a value on an interior edge goes to the upper bin (side="right")
    assert numeric_counts(np.array([prof.ref_min - 1, prof.ref_max + 1]), prof)[[1, -1]].tolist() == [1, 1]


def test_ties_never_make_duplicate_edges(profile):
    h = profile.column("h")  # integer hours: many ties
    assert list(h.edges) == sorted(set(h.edges))


def test_unseen_and_missing_categories(profile):
    prof = profile.column("c")
    counts = category_counts(pd.Series(["a", "z", None, "b"]), prof)
    assert counts.tolist() == [1, 1, 0, 1, 1]  # a, b, c, __missing__, __unseen__
    drift = compute_drift(profile, pd.DataFrame({"c": ["z"] * 300}), min_rows=1)
    [f] = drift.features
    assert f.cur_shares[-1] == 1.0 and f.drifted
    assert UNSEEN == "__unseen__"


def test_small_windows_are_not_judged(profile):
    r = compute_drift(profile, pd.DataFrame({"x": [0.0] * 10}), min_rows=200)
    assert r.status == "not_enough_data" and not r.features


@pytest.fixture(scope="module")
def clean_profile():
    """A fully observed N(0, 1) reference (missing values would count in PSI: they are a bin)."""
    return build_profile(pd.DataFrame({"x": np.random.default_rng(0).normal(0, 1, 5000)}), ["x"], [])


def test_half_sd_shift_flagged_identical_not(clean_profile):
    profile = clean_profile
    rng = np.random.default_rng(5)
    same = pd.DataFrame({"x": rng.normal(0, 1, 5000)})
    shifted = pd.DataFrame({"x": rng.normal(0.5, 1, 5000)})
    assert compute_drift(profile, same).features[0].psi_excess < 0.02
    assert compute_drift(profile, shifted).features[0].psi_excess > 0.15


def equal_width_psi(ref: np.ndarray, cur: np.ndarray, bins: int = 13) -> float:
    """Evidently-style PSI: equal-width bins over reference + current, empty shares floored, no renormalising."""
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins=bins)
    p = np.histogram(ref, edges)[0] / len(ref)
    q = np.histogram(cur, edges)[0] / len(cur)
    p, q = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
    return float(np.sum((q - p) * np.log(q / p)))


def test_one_outlier_neither_hides_a_shift_nor_raises_an_alarm(clean_profile):
    """0.1 % of a column set to 1,040: frozen bins put it in 'above max' and carry on."""
    profile = clean_profile
    rng = np.random.default_rng(7)
    ref = rng.normal(0, 1, 5000)
    base = rng.normal(0, 1, 5000)
    shifted = base + 0.5
    with_outlier = lambda a: np.where(np.arange(a.size) < 5, 1040.0, a)  # noqa: E731
    # ours: the outlier alone is no drift; the shift is still found with the outlier present
    assert compute_drift(profile, pd.DataFrame({"x": with_outlier(base)})).features[0].psi_excess < 0.02
    assert compute_drift(profile, pd.DataFrame({"x": with_outlier(shifted)})).features[0].psi_excess > 0.15
    # equal-width bins over ref + cur: the outlier stretches the range, everything lands in one bin
    assert equal_width_psi(ref, shifted) > 0.15
    assert equal_width_psi(ref, with_outlier(shifted)) < 0.02
