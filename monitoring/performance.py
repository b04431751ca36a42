"""Performance of a window: measured where labels have arrived, estimated where they have not.

Pure functions over arrays. Labels arrive late (a flight's outcome is known hours later; in a
real system, days), so a window has three kinds of rows: labelled, not yet labelled, and never
labelled (cancelled flights).

The estimate (confidence-based, in the spirit of CBPE) assumes the model is still calibrated:
if P(late) = p for a row, its label is a Bernoulli(p) draw. Under that assumption the expected
ROC AUC of the window is computed exactly from the probabilities (no labels needed). Its blind
spot is stated, not hidden: concept drift that keeps the inputs and the scores but changes what
they mean (the model is confidently wrong) is invisible to it; only real labels catch that.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


@dataclass(frozen=True)
class Performance:
    rows: int
    labelled: int
    label_coverage: float
    label_rate: float
    mean_prediction: float
    roc_auc: float
    pr_auc: float
    brier: float
    f1: float
    calibration_gap: float  # mean prediction - observed late rate, on labelled rows
    expected_roc_auc: float  # estimate from all rows' probabilities, assuming calibration
    median_label_lag_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def expected_auc(p: np.ndarray) -> float:
    """E[ROC AUC] if labels were Bernoulli(p): sum over pairs of p_i (1-p_j) [s_i > s_j] / E-normaliser.

    Computed in O(n log n) by sorting; ties count one half. This is the ratio of expectations
    (a standard, slightly biased but consistent approximation of the expectation of the ratio).
    """
    p = np.asarray(p, dtype="float64")
    p = p[np.isfinite(p)]
    if p.size < 2:
        return math.nan
    s = p[np.argsort(p, kind="mergesort")]
    starts = _runs(s)
    return _expected_auc_sorted(s, starts, np.r_[starts[1:], s.size])


def _runs(s: np.ndarray) -> np.ndarray:
    """Start of each run of tied values in `s` (sorted ascending)."""
    return np.flatnonzero(np.r_[True, s[1:] != s[:-1]])


def _expected_auc_sorted(s: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> float:
    """`expected_auc` of finite scores already sorted ascending (`s`, n >= 2), runs of ties
    `starts`/`ends` (`_runs`)."""
    neg = 1.0 - s
    # For each row i (as a positive), the expected negatives with a strictly lower score, plus
    # half of those tied with it.
    neg_cum = np.concatenate([[0.0], np.cumsum(neg)])
    below = neg_cum[starts]
    tied_neg = neg_cum[ends] - neg_cum[starts]
    idx = np.repeat(np.arange(starts.size), ends - starts)  # the run of each row
    tied_self = neg  # a row is never its own negative
    num = np.sum(s * (below[idx] + 0.5 * (tied_neg[idx] - tied_self)))
    den = s.sum() * neg.sum() - np.sum(s * neg)
    return float(num / den) if den > 0 else math.nan


def window_performance(
    probability: np.ndarray,
    label: np.ndarray,
    threshold: float,
    *,
    label_lag_s: np.ndarray | None = None,
    ranked: RankedScores | None = None,
) -> Performance:
    """Metrics of a window: `probability` (n,), `label` (n,) with NaN where no label has arrived.
    `ranked`: `rank_scores` of this `probability`, when the caller has it (the same result)."""
    p = np.asarray(probability, dtype="float64")
    y = np.asarray(label, dtype="float64")
    have = ~np.isnan(y)
    yl, pl = y[have], p[have]
    # 0/1 labels as int8: the same metrics, and sklearn's label checks (np.unique of the labels,
    # several times per metric) cost a third of what they cost on int64
    yl = yl.astype(np.int8) if bool(np.all((yl == 0) | (yl == 1))) else yl.astype(int)
    both = yl.size > 0 and len(np.unique(yl)) == 2
    pred = pl >= threshold
    tp = int((pred & (yl == 1)).sum())
    fp = int((pred & (yl == 0)).sum())
    fn = int((~pred & (yl == 1)).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    lag = np.asarray(label_lag_s, dtype="float64") if label_lag_s is not None else np.array([])
    lag = lag[np.isfinite(lag)]
    if ranked is not None:
        ranked.check(p.size)
    # the metrics that depend on the order of summation, in the log's order
    label_rate = float(yl.mean()) if yl.size else math.nan
    brier = float(brier_score_loss(yl, pl)) if yl.size else math.nan
    gap = float(pl.mean() - yl.mean()) if yl.size else math.nan
    roc = pr = math.nan
    if both:
        if ranked is not None and ranked.finite.all():  # (a NaN score among labelled rows: as before)
            # The ranking metrics sort the scores: given the shared sort, their own (stable) sort
            # finds nothing to do. They depend only on the cumulative counts at the ends of runs of
            # tied scores, exact integers in any order of the rows within a run: the same values.
            # Descending: sklearn sorts descending by flipping, then sorting stably ascending.
            ys = y[ranked.order]
            keep = ~np.isnan(ys)
            yl, pl = ys[keep].astype(yl.dtype)[::-1], ranked.s[keep][::-1]  # (the log-order copies go)
            del ys, keep
        roc = float(roc_auc_score(yl, pl))
        pr = float(average_precision_score(yl, pl))
    if ranked is None:
        expected = expected_auc(p)
    else:
        expected = _expected_auc_sorted(ranked.s, ranked.starts, ranked.ends) if ranked.s.size >= 2 else math.nan
    return Performance(
        rows=int(p.size),
        labelled=int(have.sum()),
        label_coverage=float(have.mean()) if p.size else math.nan,
        label_rate=label_rate,
        mean_prediction=float(p.mean()) if p.size else math.nan,
        roc_auc=roc,
        pr_auc=pr,
        brier=brier,
        f1=float(f1),
        calibration_gap=gap,
        expected_roc_auc=expected,
        median_label_lag_s=float(np.median(lag)) if lag.size else math.nan,
    )


def _sorted_auc(s: np.ndarray, y: np.ndarray, w: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> float:
    """Weighted ROC AUC of scores already sorted ascending (`s`), labels `y` (0/1), row weights `w`;
    `starts`/`ends` delimit runs of tied scores (ties count one half)."""
    pos, neg = w * y, w * (1.0 - y)
    neg_cum = np.concatenate([[0.0], np.cumsum(neg)])
    pos_run = np.add.reduceat(pos, starts)
    neg_run = neg_cum[ends] - neg_cum[starts]
    below = neg_cum[starts]
    wp, wn = pos.sum(), neg.sum()
    if wp <= 0 or wn <= 0:
        return math.nan
    return float(np.sum(pos_run * (below + 0.5 * neg_run)) / (wp * wn))


def _prepare(p: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    order = np.argsort(p, kind="mergesort")
    s = p[order]
    starts = _runs(s)
    ends = np.r_[starts[1:], s.size]
    codes, n_groups = group_codes(groups[order])
    return order, s, starts, ends, codes, n_groups


def group_codes(groups: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense integer codes 0..k-1 of any hashable group labels, in the order of the labels."""
    groups = np.asarray(groups)
    if groups.dtype.kind in "iub":
        # Integer labels (the monitor's airport-hour hashes): hash them, then sort only the k
        # distinct ones; the same codes as np.unique(return_inverse=True), at about half the cost.
        first, uniq = pd.factorize(groups)
        rank = np.empty(uniq.size, dtype="int64")
        rank[np.argsort(uniq, kind="stable")] = np.arange(uniq.size)
        return rank[first], int(uniq.size)
    uniq, codes = np.unique(groups, return_inverse=True)
    return codes.astype("int64"), int(uniq.size)


def _dense(codes: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """`codes` (0..k-1, some possibly absent) renumbered 0..k'-1 in the same order: what
    `group_codes` gives for the labels of the rows kept, without sorting them again."""
    present = np.bincount(codes, minlength=k) > 0
    return (np.cumsum(present) - 1)[codes], int(np.count_nonzero(present))


@dataclass(frozen=True)
class RankedScores:
    """A window's scores sorted once, shared by `window_performance`, `auc_block_bootstrap` and
    `expected_auc_interval` (each would otherwise sort the same scores and code the same blocks
    again: ~0.5-0.8 s of a 1M-row window's judge, measured at load ~4). Built by `rank_scores`;
    the results are the same, bit for bit, as without it."""

    finite: np.ndarray  # (n,) bool: rows with a finite score, the only rows ranked
    order: np.ndarray  # (m,) stable argsort of the finite scores (indices into probability[finite])
    s: np.ndarray  # (m,) the finite scores, ascending
    starts: np.ndarray  # start of each run of tied scores in `s`
    ends: np.ndarray  # end (exclusive) of each run
    codes: np.ndarray  # (m,) dense block code of each sorted row, 0..k-1 in the order of the labels
    k: int

    def check(self, n: int) -> None:
        if self.finite.size != n:
            raise ValueError(f"ranked scores of {self.finite.size} rows given for a window of {n} rows: rank this window's own")

    def subset(self, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """(s, starts, ends, codes, k) of the rows at the sorted positions `keep` (bool (m,)): what
        `_prepare` returns for those rows alone (a stable sort of a subset is the subset of the
        stable sort; block codes renumbered in the same order)."""
        s = self.s[keep]
        starts = _runs(s)
        codes, k = _dense(self.codes[keep], self.k)
        return s, starts, np.r_[starts[1:], s.size], codes, k


def rank_scores(probability: np.ndarray, groups: np.ndarray) -> RankedScores:
    """Sort a window's finite scores once (`probability` (n,), block labels `groups` (n,))."""
    p = np.asarray(probability, dtype="float64")
    finite = np.isfinite(p)
    g = np.asarray(groups)
    if not finite.all():  # (no copies when every score is finite: the usual window)
        p, g = p[finite], g[finite]
    order, s, starts, ends, codes, k = _prepare(p, g)
    return RankedScores(finite, order, s, starts, ends, codes, k)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    level: float
    blocks: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Above this many distinct scores the bootstraps merge adjacent runs of tied scores into this many
# bins (never splitting a run) and count the pairs inside one bin as ties. At or below it (every
# window of up to 32,768 rows) each bin is one run and the replicates are exact.
EXACT_RUNS = 1 << 15
_REPLICATES_AT_ONCE = 25  # replicates computed together (memory: bins x 25 floats per matrix)
# The float32 replicates' batch (one child stream each): smaller, as two run at once (32,768 bins
# x 10 replicates: ~2.6 MB per matrix, 4 matrices per batch).
_FLOAT32_BATCH = 10


def _score_bins(starts: np.ndarray, n: int, max_bins: int | None = None) -> np.ndarray:
    """Start (in sorted order) of each score bin: the runs of tied scores themselves when there are
    at most `max_bins` of them, else adjacent runs merged into `max_bins` bins of about n / max_bins
    rows (a run is never split, so pairs in different bins are ordered exactly as their scores)."""
    max_bins = EXACT_RUNS if max_bins is None else max_bins
    if starts.size <= max_bins:
        return starts
    b = starts * max_bins // n
    return starts[np.r_[True, b[1:] != b[:-1]]]


def _binned_aucs(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """ROC AUC of each column: `pos`/`neg` (bins x replicates) are the positive / negative weight of
    each score bin in ascending score order; pairs inside one bin count one half (NaN where a
    column has no positive or no negative weight). With integer weights (counts) every term is an
    integer or a half below 2**53, so the result does not depend on the order of summation: it is
    bit-identical to `_sorted_auc` over the same runs."""
    # pos x (cumsum(neg) - neg + neg / 2), in place: the same values with two (bins x replicates)
    # arrays instead of five (the float32 batches run two at a time)
    below = np.cumsum(neg, axis=0)
    below -= neg
    below += 0.5 * neg
    below *= pos
    wp, wn = pos.sum(axis=0), neg.sum(axis=0)
    num = below.sum(axis=0)
    ok = (wp > 0) & (wn > 0)
    out = np.full(pos.shape[1], math.nan)
    out[ok] = num[ok] / (wp[ok] * wn[ok])
    return out


def binning_error_bound(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Largest possible |binned AUC - exact AUC| of each column of `_binned_aucs`: every pair inside
    one bin is counted one half where the exact AUC counts 0, 1/2 or 1 (0 when bins are runs)."""
    return 0.5 * np.sum(pos * neg, axis=0) / (pos.sum(axis=0) * neg.sum(axis=0))


def auc_block_bootstrap(
    probability: np.ndarray,
    label: np.ndarray,
    groups: np.ndarray,
    *,
    n_boot: int = 200,
    level: float = 0.9,
    seed: int = 0,
    ranked: RankedScores | None = None,
) -> Interval:
    """Realised ROC AUC with a block-bootstrap interval: whole blocks (airport-hours: every flight of
    one hour at one airport shares its weather, so its outcomes are not independent) are resampled
    with replacement; the interval is the percentile interval of the resampled AUCs.

    A replicate's AUC is a function of each score bin's positive and negative weight, and those are
    linear in the blocks' multiplicities: (bins x blocks) x (blocks x replicates), one sparse
    product for a batch of replicates instead of a pass over every row per replicate. Exact (the
    same values as resampling rows) up to `EXACT_RUNS` distinct scores; above, each replicate is
    within `binning_error_bound` of it (<= 1 / (8 x 32768 x r(1 - r)) for a late rate r at even
    bins: 2.4e-5 at r = 0.2). The estimate itself is always exact. `ranked`: `rank_scores(probability,
    groups)`, when the caller has it (the same result)."""
    from scipy import sparse

    p = np.asarray(probability, dtype="float64")
    y = np.asarray(label, dtype="float64")
    have = ~np.isnan(y) & np.isfinite(p)
    if ranked is not None:
        ranked.check(p.size)
    yh = y[have]
    if yh.size < 2 or not yh.min() < yh.max():  # fewer than 2 rows, or 1 distinct label
        return Interval(math.nan, math.nan, math.nan, level, 0)
    if ranked is None:
        order, s, starts, ends, codes, k = _prepare(p[have], np.asarray(groups)[have])
        ys = yh[order]
    else:
        del yh
        ys = (y if ranked.finite.all() else y[ranked.finite])[ranked.order]
        keep = ~np.isnan(ys)
        s, starts, ends, codes, k = ranked.subset(keep)
        ys = ys[keep]
    est = _sorted_auc(s, ys, np.ones_like(s), starts, ends)
    bstarts = _score_bins(starts, s.size)
    rows = np.repeat(np.arange(bstarts.size), np.diff(np.r_[bstarts, s.size]))
    # Positive and negative counts of each (bin, block): duplicates are summed.
    pos_m = sparse.csr_matrix((ys, (rows, codes)), shape=(bstarts.size, k))
    neg_m = sparse.csr_matrix((1.0 - ys, (rows, codes)), shape=(bstarts.size, k))
    rng = np.random.default_rng(seed)
    aucs = []
    for a in range(0, n_boot, _REPLICATES_AT_ONCE):
        b = min(_REPLICATES_AT_ONCE, n_boot - a)
        mult = np.empty((k, b))
        for j in range(b):  # the same draws, in the same order, as one replicate at a time
            mult[:, j] = np.bincount(rng.integers(0, k, size=k), minlength=k)
        aucs.append(_binned_aucs(pos_m @ mult, neg_m @ mult))
    boots = np.concatenate(aucs) if aucs else np.array([])
    boots = boots[~np.isnan(boots)]
    if not boots.size:
        return Interval(est, math.nan, math.nan, level, k)
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(est, float(lo), float(hi), level, k)


def expected_auc_interval(
    probability: np.ndarray,
    groups: np.ndarray,
    *,
    block_sd: float = 0.0,
    n_boot: int = 200,
    level: float = 0.9,
    seed: int = 0,
    ranked: RankedScores | None = None,
    threads: int | None = None,
) -> Interval:
    """The label-free estimate (`expected_auc`) with the interval of the AUC the window would show
    if the model were calibrated: labels drawn Bernoulli(p) with a shared logit shock N(0, block_sd)
    per block (airport-hour), so outcomes that move together in reality move together here.

    Each replicate draws every row's label and counts the positives of each score bin; the AUC is
    then a pass over the bins. Up to `EXACT_RUNS` distinct scores it is exact and bit-identical to
    drawing row by row in float64 (the draws of the code before issue 15). Above it, where bins
    already merge runs (within `binning_error_bound`), each label is drawn in float32 as
    `u (1 + t) < t` with t = exp(logit + shock) = exp(logit) exp(shock): the same Bernoulli(q)
    up to float32 rounding of q (~1e-7; a 1M-row window's expected positives move by < 0.1 against
    a standard deviation of ~400), with no exp or division per row, at about half the cost. It is
    a different random stream, so its ends agree with the float64 definition in distribution, not
    bit for bit (tests/unit/test_bootstrap_batched.py compares them over many seeds): each batch of
    `_FLOAT32_BATCH` replicates draws from its own child of `np.random.SeedSequence(seed)`, and
    the batches run on `threads` threads (default `replicate_threads()`; numpy releases the GIL
    while it fills and compares these arrays), each placed by its index: the result is the same
    for any thread count. `ranked`: `rank_scores(probability, groups)`, when the caller has it
    (the same result)."""
    p = np.asarray(probability, dtype="float64")
    if ranked is not None:
        ranked.check(p.size)
    ok = np.isfinite(p)
    p = p[ok]
    if p.size < 2:
        return Interval(math.nan, math.nan, math.nan, level, 0)
    if ranked is None:
        ranked = rank_scores(p, np.asarray(groups)[ok])
    s, starts, codes, k = ranked.s, ranked.starts, ranked.codes, ranked.k
    clipped = np.clip(s, 1e-6, 1 - 1e-6)
    logit = np.log(clipped / (1 - clipped))
    bstarts = _score_bins(starts, s.size)
    size = np.diff(np.r_[bstarts, s.size]).astype("float64")
    if bstarts.size == starts.size:
        rng = np.random.default_rng(seed)  # one stream through every batch, in order (the definition's)
        draw = partial(_draw_exact, rng, logit, codes, k, block_sd, bstarts)
        batches = [min(_REPLICATES_AT_ONCE, n_boot - a) for a in range(0, n_boot, _REPLICATES_AT_ONCE)]
        aucs = [_binned_aucs(pos, size[:, None] - pos) for pos in map(draw, batches)]
    else:  # odds <= 1e6 after the clip: no overflow in float32
        odds = np.exp(logit).astype(np.float32)
        batches = [min(_FLOAT32_BATCH, n_boot - a) for a in range(0, n_boot, _FLOAT32_BATCH)]
        streams = np.random.SeedSequence(seed).spawn(len(batches))

        def batch(i: int) -> np.ndarray:
            pos = _draw_float32(np.random.default_rng(streams[i]), odds, codes, k, block_sd, bstarts, batches[i])
            return _binned_aucs(pos, size[:, None] - pos)

        aucs = _in_threads(batch, len(batches), replicate_threads() if threads is None else threads)
    boots = np.concatenate(aucs) if aucs else np.array([])
    boots = boots[~np.isnan(boots)]
    # With a shared shock the calibrated AUC is lower than the shock-free expectation (outcomes
    # of one block move together, which the scores cannot rank): centre on the simulation then.
    est = float(np.mean(boots)) if boots.size and block_sd > 0 else _expected_auc_sorted(s, starts, ranked.ends)
    if not boots.size:
        return Interval(est, math.nan, math.nan, level, k)
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(est, float(lo), float(hi), level, k)


MAX_REPLICATE_THREADS = 4  # the float32 draws are memory-bound: more threads than this gain little


def replicate_threads() -> int:
    """Threads for the expected-AUC replicates above `EXACT_RUNS`: the CPUs this process may run
    on (`os.sched_getaffinity`, else `os.cpu_count()`), at most `MAX_REPLICATE_THREADS`."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_REPLICATE_THREADS, cpus))


def _in_threads(fn: Callable[[int], np.ndarray], n: int, threads: int) -> list[np.ndarray]:
    """[fn(0), ..., fn(n - 1)] computed on up to `threads` threads, in index order."""
    if threads <= 1 or n <= 1:
        return [fn(i) for i in range(n)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(threads, n), thread_name_prefix="driftlight-replicates") as pool:
        return list(pool.map(fn, range(n)))


def _draw_exact(
    rng: np.random.Generator, logit: np.ndarray, codes: np.ndarray, k: int, block_sd: float, bstarts: np.ndarray, b: int
) -> np.ndarray:
    """(bins x b) positives per score bin of `b` replicates, labels drawn row by row in float64:
    the stream and the values of the row-level definition, bit for bit."""
    n = logit.size
    fixed_q = None if block_sd > 0 else 1.0 / (1.0 + np.exp(-(logit + 0.0)))
    neg_logit = -logit
    q, u, y = np.empty(n), np.empty(n), np.empty(n, dtype=bool)
    pos = np.empty((bstarts.size, b))
    for j in range(b):
        if fixed_q is None:
            # 1 / (1 + exp(-(logit + shock))) in place, bit for bit: -(l + z) == -l - z exactly
            np.take(rng.normal(0.0, block_sd, size=k), codes, out=q, mode="clip")  # (see _draw_float32)
            np.subtract(neg_logit, q, out=q)
            np.exp(q, out=q)
            q += 1.0
            np.divide(1.0, q, out=q)
        rng.random(out=u)
        np.less(u, q if fixed_q is None else fixed_q, out=y)
        pos[:, j] = np.add.reduceat(y, bstarts, dtype=np.int64)  # counts: exact in any dtype, int is faster
    return pos


_ROWS_AT_ONCE = 1 << 16  # rows of one float32 replicate drawn together (3 x 256 KiB work arrays)


def _draw_float32(
    rng: np.random.Generator, odds: np.ndarray, codes: np.ndarray, k: int, block_sd: float, bstarts: np.ndarray, b: int
) -> np.ndarray:
    """The same as `_draw_exact` in distribution (to float32 rounding), half the work per row:
    y = [u (1 + t) < t] <=> u < t / (1 + t) = sigmoid(logit + shock), with t = odds x exp(shock)
    (`odds` = exp(logit), float32). The rows go through in slices of `_ROWS_AT_ONCE`: the same
    values as one pass (the generator's stream does not depend on how its fills are split), with
    work arrays that stay small (two batches on two threads held ~25 MB more at 1M rows)."""
    n = odds.size
    m = min(n, _ROWS_AT_ONCE)
    t_buf, a_buf, u_buf = np.empty(m, np.float32), np.empty(m, np.float32), np.empty(m, np.float32)
    y = np.empty(n, dtype=bool)
    pos = np.empty((bstarts.size, b))
    for j in range(b):
        shock = None
        if block_sd > 0:
            # capped so that t stays finite (odds <= 1e6): q is then 1 - 1e-30, as good as 1
            shock = np.minimum(np.exp(rng.normal(0.0, block_sd, size=k)), 1e30).astype(np.float32)
        for lo in range(0, n, m):
            hi = min(lo + m, n)
            a, u = a_buf[: hi - lo], u_buf[: hi - lo]
            if shock is None:
                t = odds[lo:hi]
            else:
                t = t_buf[: hi - lo]
                # mode="clip": codes are in range, so the same values; "raise" would buffer `out`
                np.take(shock, codes[lo:hi], out=t, mode="clip")
                t *= odds[lo:hi]
            rng.random(out=u, dtype=np.float32)
            np.add(t, 1.0, out=a)
            a *= u
            np.less(a, t, out=y[lo:hi])
        pos[:, j] = np.add.reduceat(y, bstarts, dtype=np.int64)  # counts: exact in any dtype, int is faster
    return pos


def block_logit_sd(probability: np.ndarray, label: np.ndarray, groups: np.ndarray) -> float:
    """How much outcomes of one block move together beyond the model's probabilities: the standard
    deviation of a per-block logit shock, by the method of moments on the block mean residuals
    (variance of ybar - pbar beyond the binomial share), mapped to the logit scale at mean p(1-p)."""
    p = np.asarray(probability, dtype="float64")
    y = np.asarray(label, dtype="float64")
    have = ~np.isnan(y)
    p, y = p[have], y[have]
    codes, k = group_codes(np.asarray(groups)[have])
    n = np.bincount(codes, minlength=k).astype("float64")
    keep = n >= 2
    resid = np.bincount(codes, weights=y - p, minlength=k)[keep] / n[keep]
    binom = np.bincount(codes, weights=p * (1 - p), minlength=k)[keep] / n[keep] ** 2
    tau2 = max(0.0, float(np.mean(resid**2 - binom)))
    v = float(np.mean(p * (1 - p)))
    return math.sqrt(tau2) / v if v > 0 else 0.0


# --- the label-free estimate's interval: what sampling-only theory leaves out ----------------------
# `expected_auc_interval` says how much a window's AUC would vary if the model were exactly
# calibrated on it. Real weeks also carry a concept wobble: the same probabilities mean a little
# more or a little less from one week to the next (a calm week's delays are idiosyncratic, a stormy
# week's are the weather's), and the realised AUC swings by far more than sampling alone (2013,
# weekly: 0.57-0.76 against a sampling half-width of ~0.02). The two functions below put that wobble
# back: a prior from the model's validation days, then, as the labels of past windows arrive, the
# errors the estimate actually made (adaptive conformal inference, Gibbs & Candes 2021).

ESTIMATE_TOLERANCE = 0.03  # |estimated - realised| the estimate aims at (TARGETS: median <= 0.03)
ACI_GAMMA = 0.05  # step of the adaptive miscoverage level per labelled window (set a priori)


def estimate_prior_half_width(sampling: Interval, wobble_rms: float) -> float:
    """Half-width of the interval before any past window's labels are in: the larger of the
    sampling half-width and z x the RMS error the estimate made on the model's validation windows
    (`wobble_rms`: out of sample; it already includes the realised AUC's own sampling noise)."""
    from scipy.stats import norm

    half = (sampling.high - sampling.low) / 2 if math.isfinite(sampling.low) and math.isfinite(sampling.high) else 0.0
    z = float(norm.isf((1 - sampling.level) / 2))
    return max(half, z * max(wobble_rms, 0.0))


def _score_quantile(past: np.ndarray, prior_half: float, q: float) -> float:
    """The q-quantile of the past absolute errors with the prior half-width as one more score
    (so a short history cannot collapse the interval); q >= 1 is the unknown: infinite."""
    if q >= 1.0:
        return math.inf
    if q <= 0.0:
        return 0.0
    return float(np.quantile(np.r_[np.abs(past), prior_half], q))


def aci_half_widths(
    past_errors: Any, prior_half: float, level: float = 0.9, *, gamma: float = ACI_GAMMA
) -> list[tuple[float, float]]:
    """Adaptive conformal inference (Gibbs & Candes 2021) replayed over `past_errors` (estimate -
    realised of earlier windows, oldest first): for each step i, the (half-width, miscoverage
    level) the interval had before error i was known, plus one more for the next window. The
    half-width is the (1 - a)-quantile of the |errors| before i, with the prior half-width as one
    more score (a short history cannot collapse the interval); after each step,
    a += gamma (alpha - missed): runs of misses widen the interval, runs of hits narrow it.
    Step i depends only on errors before i (online: nothing is peeked at)."""
    errs = np.asarray(list(past_errors), dtype="float64")
    errs = errs[np.isfinite(errs)]
    alpha = 1.0 - level
    a = alpha
    out = []
    for j in range(errs.size + 1):
        half = _score_quantile(errs[:j], prior_half, 1.0 - a)
        out.append((half, a))
        if j < errs.size:
            a += gamma * (alpha - (0.0 if abs(errs[j]) <= half else 1.0))
    return out


def online_estimate_interval(
    sampling: Interval, past_errors: Any, prior_half: float, *, gamma: float = ACI_GAMMA
) -> tuple[Interval, float]:
    """The label-free estimate's interval widened by the errors it made on earlier windows.

    `past_errors`: estimate - realised AUC of earlier windows of the same model and span whose
    labels are in, oldest first; only these (never the window judged, never a later one) are
    used (`aci_half_widths`). With no past window it is the prior alone; it is never narrower than
    the sampling interval. Returns (interval clipped to [0, 1], the adapted miscoverage level)."""
    half, a = aci_half_widths(past_errors, prior_half, sampling.level, gamma=gamma)[-1]
    if math.isnan(sampling.estimate):
        return sampling, a
    samp_half = (sampling.high - sampling.low) / 2 if math.isfinite(sampling.low) else 0.0
    half = max(half, samp_half)
    lo, hi = max(0.0, sampling.estimate - half), min(1.0, sampling.estimate + half)
    return Interval(sampling.estimate, lo, hi, sampling.level, sampling.blocks), a


def recent_estimate_error(past_errors: Any, last: int = 4) -> float:
    """Median |estimate - realised| over the `last` labelled windows (NaN without any): the trust
    flag's evidence that the calibration assumption has recently failed."""
    errs = np.asarray(list(past_errors), dtype="float64")
    errs = errs[np.isfinite(errs)][-last:]
    return float(np.median(np.abs(errs))) if errs.size else math.nan


# --- the point estimate, corrected by its own recent failures ----------------------------------------
# The estimate assumes the model is still calibrated. When the last labelled windows show that
# assumption failing beyond the tolerance (the trust flag's "recently failed" half: the same last 4
# windows, the same ESTIMATE_TOLERANCE, both fixed before this correction existed), the estimate is
# moved by the mean error of those windows; otherwise it is left alone, since correcting a calibrated
# estimate by the mean of 4 noisy errors only adds their noise. Chosen on April-July 2013 (see
# docs/thresholds.md, where the choice and what was looked at are disclosed).

CORRECTION_LAST = 4  # the trust flag's window (recent_estimate_error's `last`), not tuned


def estimate_correction(past_errors: Any, last: int = CORRECTION_LAST, tolerance: float = ESTIMATE_TOLERANCE) -> float:
    """What to subtract from the label-free estimate of the next window: the mean of the last `last`
    errors (uncorrected estimate - realised AUC of earlier windows, oldest first) when their median
    |error| exceeds `tolerance`, else 0 (also with no past window). Uses only the windows given."""
    errs = np.asarray(list(past_errors), dtype="float64")
    errs = errs[np.isfinite(errs)][-last:]
    if not errs.size or not float(np.median(np.abs(errs))) > tolerance:
        return 0.0
    return float(np.mean(errs))


def corrected_errors(past_errors: Any) -> list[float]:
    """The errors the corrected estimate made on earlier windows, replayed from the uncorrected ones
    (oldest first): error i minus the correction computed from the errors before i (the one that
    window got). The interval's adaptive conformal step runs on these, as it centres on the
    corrected estimate."""
    errs = np.asarray(list(past_errors), dtype="float64")
    errs = errs[np.isfinite(errs)]
    return [float(errs[i] - estimate_correction(errs[:i])) for i in range(errs.size)]


def shifted(interval: Interval, by: float) -> Interval:
    """`interval` moved by `by` (estimate and bounds), clipped to [0, 1]: an AUC stays an AUC."""
    if by == 0.0:
        return interval

    def clip(x: float) -> float:
        return min(1.0, max(0.0, x + by)) if math.isfinite(x) else x

    return Interval(clip(interval.estimate), clip(interval.low), clip(interval.high), interval.level, interval.blocks)
