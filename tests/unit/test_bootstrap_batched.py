"""The two bootstraps computed per score bin (issue 15) against the row-by-row definition they
replaced: bit-identical while every bin is one run of tied scores, within the stated bound when
adjacent runs are merged."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitoring import performance
from monitoring.performance import (
    Interval,
    _binned_aucs,
    _prepare,
    _score_bins,
    _sorted_auc,
    auc_block_bootstrap,
    binning_error_bound,
    expected_auc,
    expected_auc_interval,
)


def rowwise_block_bootstrap(p, y, g, n_boot=200, level=0.9, seed=0):
    """The definition: one weighted pass over every row per replicate (the code before issue 15)."""
    have = ~np.isnan(y) & np.isfinite(p)
    p, y, g = p[have], y[have], g[have]
    order, s, starts, ends, codes, k = _prepare(p, g)
    ys = y[order]
    est = _sorted_auc(s, ys, np.ones_like(s), starts, ends)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, k, size=k), minlength=k).astype("float64")[codes]
        a = _sorted_auc(s, ys, w, starts, ends)
        if not math.isnan(a):
            boots.append(a)
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(est, float(lo), float(hi), level, k), np.array(boots)


def rowwise_expected_interval(p, g, block_sd=0.0, n_boot=200, level=0.9, seed=0):
    """The definition: labels drawn row by row, one AUC pass per replicate (before issue 15)."""
    _, s, starts, ends, codes, k = _prepare(p, g)
    logit = np.log(np.clip(s, 1e-6, 1 - 1e-6) / (1 - np.clip(s, 1e-6, 1 - 1e-6)))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        shock = rng.normal(0.0, block_sd, size=k)[codes] if block_sd > 0 else 0.0
        q = 1.0 / (1.0 + np.exp(-(logit + shock)))
        yy = (rng.random(s.size) < q).astype("float64")
        a = _sorted_auc(s, yy, np.ones_like(s), starts, ends)
        if not math.isnan(a):
            boots.append(a)
    est = float(np.mean(boots)) if block_sd > 0 else expected_auc(p)
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(est, float(lo), float(hi), level, k)


def window(n, k, *, decimals=None, unlabelled=0.1, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, k, n)
    p = rng.beta(2.0, 6.0, n)
    if decimals is not None:  # many ties
        p = np.round(p, decimals)
    y = (rng.random(n) < p).astype("float64")
    y[rng.random(n) < unlabelled] = np.nan
    return p, y, g


CASES = [
    (300, 20, None, 0.0),
    (5_000, 300, None, 0.4),
    (20_000, 600, 3, 0.3),  # heavy ties: runs of many rows
    (30_000, 900, None, 0.25),  # the largest windows calibration and drills judge
    (3_000, 3_000, None, 0.0),  # (nearly) every row its own block
]


@pytest.mark.parametrize(("n", "k", "decimals", "sd"), CASES)
def test_small_windows_are_bit_identical_to_the_rowwise_definition(n, k, decimals, sd):
    p, y, g = window(n, k, decimals=decimals, seed=n)
    assert auc_block_bootstrap(p, y, g).as_dict() == rowwise_block_bootstrap(p, y, g)[0].as_dict()
    for seed in (0, 7):
        got = expected_auc_interval(p, g, block_sd=sd, seed=seed, n_boot=60)
        assert got.as_dict() == rowwise_expected_interval(p, g, block_sd=sd, seed=seed, n_boot=60).as_dict()


def test_replicates_where_one_class_vanishes_are_dropped_as_before():
    # 30 blocks, 3 with positives: many resamples draw none of them (an undefined AUC)
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(30), 10)
    p = rng.random(g.size)
    y = np.where(g < 3, 1.0, 0.0)
    got = auc_block_bootstrap(p, y, g, n_boot=100)
    want, boots = rowwise_block_bootstrap(p, y, g, n_boot=100)
    assert boots.size < 100  # the case is exercised
    assert got.as_dict() == want.as_dict()


def test_bins_never_split_a_run_and_stay_runs_below_the_limit():
    s = np.sort(np.round(np.random.default_rng(0).random(10_000), 3))
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    assert np.array_equal(_score_bins(starts, s.size), starts)
    merged = _score_bins(starts, s.size, max_bins=64)
    assert merged.size <= 64 and np.isin(merged, starts).all() and merged[0] == 0


def test_merged_bins_stay_within_the_stated_bound(monkeypatch):
    """Above EXACT_RUNS distinct scores each replicate is within `binning_error_bound` of the exact
    replicate with the same draws; so are the interval's ends. Shown with a lowered limit."""
    p, y, g = window(40_000, 800, seed=5)
    exact_ci, exact_boots = rowwise_block_bootstrap(p, y, g, n_boot=50)
    monkeypatch.setattr(performance, "EXACT_RUNS", 1024)
    binned = auc_block_bootstrap(p, y, g, n_boot=50)
    # the per-replicate bound, from the same multiplicities
    have = ~np.isnan(y)
    order, s, starts, _, codes, k = _prepare(p[have], g[have])
    ys = y[have][order]
    b = _score_bins(starts, s.size)
    assert 512 < b.size <= 1024
    rows = np.repeat(np.arange(b.size), np.diff(np.r_[b, s.size]))
    rng = np.random.default_rng(0)
    pos, neg = np.zeros((b.size, 50)), np.zeros((b.size, 50))
    for j in range(50):
        w = np.bincount(rng.integers(0, k, size=k), minlength=k).astype("float64")[codes]
        pos[:, j] = np.bincount(rows, weights=w * ys, minlength=b.size)
        neg[:, j] = np.bincount(rows, weights=w * (1 - ys), minlength=b.size)
    bound = binning_error_bound(pos, neg)
    assert (np.abs(_binned_aucs(pos, neg) - exact_boots) <= bound + 1e-15).all()
    rate = float(np.nanmean(y))
    assert bound.max() <= 1.5 / (8 * 1024 * rate * (1 - rate))  # the docstring's figure, bins ~even
    assert binned.estimate == exact_ci.estimate  # the estimate itself is never binned
    assert abs(binned.low - exact_ci.low) <= bound.max() and abs(binned.high - exact_ci.high) <= bound.max()
    assert binned.low != exact_ci.low or binned.high != exact_ci.high  # the merged path did run
    # (the expected-AUC interval draws in float32 once bins merge: compared in distribution below)


@pytest.mark.parametrize("sd", [0.0, 0.4])
def test_large_windows_float32_draws_agree_with_the_rowwise_definition_in_distribution(sd):
    """Above EXACT_RUNS distinct scores the expected-AUC simulation draws its labels in float32 (a
    different random stream): over 30 seeds, the mean of each interval end must lie within Monte
    Carlo error (4 standard errors of the difference of two means) of the float64 row-level
    definition's, and the ends must spread alike. A simulation that lost the block shock, or drew
    with the wrong probabilities, is far outside (see the last assertions)."""
    p, _, g = window(34_000, 700, seed=11)
    assert np.unique(p).size > performance.EXACT_RUNS  # the float32 path runs
    seeds = range(30)
    fast = np.array([_ends(expected_auc_interval(p, g, block_sd=sd, n_boot=40, seed=100 + i)) for i in seeds])
    ref = np.array([_ends(rowwise_expected_interval(p, g, block_sd=sd, n_boot=40, seed=i)) for i in seeds])
    se = np.sqrt(fast.var(axis=0, ddof=1) / len(fast) + ref.var(axis=0, ddof=1) / len(ref))
    assert (np.abs(fast.mean(axis=0) - ref.mean(axis=0)) <= 4 * se).all(), (fast.mean(axis=0), ref.mean(axis=0), se)
    ratio = fast[:, 1:].std(axis=0, ddof=1) / ref[:, 1:].std(axis=0, ddof=1)  # the ends (no shock: a fixed estimate)
    assert ((ratio > 0.5) & (ratio < 2.0)).all(), ratio
    # the test can fail: a shock-free or a shifted simulation is many standard errors away
    other = 0.4 if sd == 0 else 0.0
    wrong = np.array([_ends(rowwise_expected_interval(p, g, block_sd=other, n_boot=40, seed=i)) for i in range(6)])
    assert (np.abs(wrong.mean(axis=0)[1:] - ref.mean(axis=0)[1:]) > 8 * se[1:]).any()
    skewed = np.array([_ends(expected_auc_interval(np.clip(p * 1.3, 0, 1), g, block_sd=sd, n_boot=40, seed=i)) for i in range(6)])
    assert (np.abs(skewed.mean(axis=0)[1:] - ref.mean(axis=0)[1:]) > 8 * se[1:]).any()


def _ends(ci):
    return ci.estimate, ci.low, ci.high


def test_the_bound_at_the_real_limit_is_far_below_an_interval():
    """At the real limit (32,768 bins) a 200k-row window's replicates are within ~2e-5 of exact."""
    p, y, g = window(200_000, 5_000, unlabelled=0.0, seed=9)
    order, s, starts, _, _, _ = _prepare(p, g)
    b = _score_bins(starts, s.size)
    assert b.size <= performance.EXACT_RUNS < starts.size
    ys = y[order]
    size = np.diff(np.r_[b, s.size]).astype("float64")
    pos = np.add.reduceat(ys, b)[:, None]
    bound = float(binning_error_bound(pos, size[:, None] - pos)[0])
    ci = auc_block_bootstrap(p, y, g, n_boot=50)
    assert bound < 3e-5 < (ci.high - ci.low) / 10
    assert abs(float(_binned_aucs(pos, size[:, None] - pos)[0]) - ci.estimate) <= bound


# --- one sort of the window's scores, shared (issue 15) ---------------------------------------------


def expected_auc_definition(p):
    """`expected_auc` as written before the shared sort (np.unique + searchsorted for the runs)."""
    p = p[np.isfinite(p)]
    s = p[np.argsort(p, kind="mergesort")]
    neg = 1.0 - s
    uniq, start = np.unique(s, return_index=True)
    neg_cum = np.concatenate([[0.0], np.cumsum(neg)])
    group_end = np.append(start[1:], s.size)
    below = neg_cum[start]
    tied_neg = neg_cum[group_end] - neg_cum[start]
    idx = np.searchsorted(uniq, s)
    num = np.sum(s * (below[idx] + 0.5 * (tied_neg[idx] - neg)))
    den = s.sum() * neg.sum() - np.sum(s * neg)
    return float(num / den)


def ranked_window(n, k, decimals, seed, nan_scores=0):
    p, y, g = window(n, k, decimals=decimals, seed=seed)
    g = g * 7919 + 10**12  # block labels need not be dense codes
    if nan_scores:  # rows without a finite score: never ranked (here unlabelled, as the log has them)
        bad = np.random.default_rng(seed).choice(n, nan_scores, replace=False)
        p[bad], y[bad] = np.nan, np.nan
    return p, y, g


SHARED = [*CASES, (40_000, 800, None, 0.4)]  # the last: above EXACT_RUNS, the float32 draws


@pytest.mark.parametrize(("n", "k", "decimals", "sd"), SHARED)
@pytest.mark.parametrize("nan_scores", [0, 17])
def test_one_shared_sort_gives_the_same_results_bit_for_bit(n, k, decimals, sd, nan_scores):
    p, y, g = ranked_window(n, k, decimals, seed=n + nan_scores, nan_scores=nan_scores)
    lag = np.random.default_rng(1).random(n) * 1e5
    r = performance.rank_scores(p, g)
    perf, shared = performance.window_performance, {"ranked": r}
    assert str(perf(p, y, 0.3, label_lag_s=lag, **shared)) == str(perf(p, y, 0.3, label_lag_s=lag))
    assert auc_block_bootstrap(p, y, g, n_boot=30, **shared) == auc_block_bootstrap(p, y, g, n_boot=30)
    for seed in (0, 5):
        assert expected_auc_interval(p, g, block_sd=sd, n_boot=30, seed=seed, **shared) == expected_auc_interval(
            p, g, block_sd=sd, n_boot=30, seed=seed
        )
    assert expected_auc(p) == expected_auc_definition(p)


def test_a_subset_of_the_shared_sort_is_what_sorting_the_subset_gives():
    p, y, g = ranked_window(20_000, 600, 3, seed=2)
    y[np.isin(g, np.unique(g)[::7])] = np.nan  # some blocks have no label yet
    r = performance.rank_scores(p, g)
    keep = ~np.isnan(y[r.order])
    _, s, starts, ends, codes, k = _prepare(p[~np.isnan(y)], g[~np.isnan(y)])
    got = r.subset(keep)
    for a, b in zip(got, (s, starts, ends, codes, k), strict=True):
        assert np.array_equal(a, b)
    assert got[4] < r.k  # the subset lost some blocks: the codes were renumbered


def test_the_shared_sort_of_another_window_is_refused():
    p, y, g = window(1_000, 30)
    other = performance.rank_scores(p[:-1], g[:-1])
    with pytest.raises(ValueError, match="rank this window's own"):
        auc_block_bootstrap(p, y, g, ranked=other)


# --- the float32 replicates on several threads (issue 15) -------------------------------------------


@pytest.mark.parametrize("sd", [0.0, 0.6])
def test_float32_replicates_do_not_depend_on_the_thread_count(sd, monkeypatch):
    """Each batch of replicates has its own child stream and its own slot: 1, 2 or 3 threads (and
    a last, partial batch) give the same interval, bit for bit."""
    monkeypatch.setattr(performance, "EXACT_RUNS", 2048)  # the merged-bin (float32) path, on a small window
    p, _, g = window(20_000, 500, seed=4)
    got = [expected_auc_interval(p, g, block_sd=sd, n_boot=85, seed=3, threads=t) for t in (1, 2, 3)]
    assert got[0] == got[1] == got[2]
    assert math.isfinite(got[0].low) and got[0].low < got[0].high
    # a different seed is a different stream (the test above could not pass with one fixed draw)
    assert expected_auc_interval(p, g, block_sd=sd, n_boot=85, seed=4, threads=2) != got[0]


def test_the_exact_path_stays_one_stream_whatever_the_threads():
    p, _, g = window(5_000, 300, seed=8)
    want = rowwise_expected_interval(p, g, block_sd=0.4, n_boot=60, seed=2).as_dict()
    for t in (1, 2, 4):
        assert expected_auc_interval(p, g, block_sd=0.4, n_boot=60, seed=2, threads=t).as_dict() == want


def test_the_default_thread_count_is_capped():
    assert 1 <= performance.replicate_threads() <= performance.MAX_REPLICATE_THREADS


@pytest.mark.parametrize(
    "groups",
    [
        np.random.default_rng(0).integers(-(2**62), 2**62, 5_000) // 10**15,  # negative and large, repeated
        np.random.default_rng(1).integers(0, 2**64 - 1, 3_000, dtype=np.uint64, endpoint=True) % 97 + 2**63,
        np.random.default_rng(2).integers(0, 30, 4_000).astype(np.int32),
        np.random.default_rng(3).random(1_000) < 0.3,
        np.array(["b", "a", "c", "a"], dtype=object),  # not integers: np.unique's path
    ],
)
def test_group_codes_are_np_uniques_inverse(groups):
    uniq, inverse = np.unique(groups, return_inverse=True)
    codes, k = performance.group_codes(groups)
    assert k == uniq.size and codes.dtype == np.int64 and np.array_equal(codes, inverse)


@pytest.mark.parametrize("decimals", [None, 3])
def test_window_performance_is_sklearn_on_the_labelled_rows_in_log_order(decimals):
    """With the shared sort and int8 labels, the same numbers, bit for bit, as sklearn's metrics over
    the labelled rows in the log's order with int64 labels (what window_performance computed before)."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    p, y, g = window(20_000, 300, decimals=decimals, seed=1)
    have = ~np.isnan(y)
    yl, pl = y[have].astype(int), p[have]
    for ranked in (None, performance.rank_scores(p, g)):
        perf = performance.window_performance(p, y, 0.3, ranked=ranked)
        assert perf.roc_auc == roc_auc_score(yl, pl) and perf.pr_auc == average_precision_score(yl, pl)
        assert perf.brier == brier_score_loss(yl, pl)
        assert perf.calibration_gap == float(pl.mean() - yl.mean()) and perf.label_rate == float(yl.mean())
        assert perf.expected_roc_auc == expected_auc_definition(p)
