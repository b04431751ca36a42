"""The challenger gate's pure parts: the paired block bootstrap and the checks."""

from __future__ import annotations

from datetime import date

import numpy as np

from training.evaluate import Metrics
from training.gate import GateConfig, ModelScore, judge, paired_block_bootstrap


def synthetic(n_blocks: int = 300, per_block: int = 20, seed: int = 0):
    """Blocks share a latent 'weather' effect, as flights in one airport-hour do."""
    rng = np.random.default_rng(seed)
    blocks = np.repeat(np.arange(n_blocks), per_block)
    shared = rng.normal(size=n_blocks)[blocks]
    signal = rng.normal(size=len(blocks))
    y = (signal + shared + rng.normal(scale=1.5, size=len(blocks)) > 1.0).astype(int)
    return y, signal, shared, blocks, rng


def test_a_real_gain_has_a_positive_lower_bound():
    y, signal, shared, blocks, rng = synthetic()
    champion = signal + rng.normal(scale=2.0, size=len(y))  # sees the signal badly
    challenger = signal + shared + rng.normal(scale=0.5, size=len(y))  # sees it well, and the weather
    gains = paired_block_bootstrap(y, champion, challenger, blocks, 200)
    assert len(gains) == 200 and np.quantile(gains, 0.05) > 0


def test_no_gain_is_not_mistaken_for_one():
    y, signal, shared, blocks, rng = synthetic(seed=1)
    base = signal + shared
    champion = base + rng.normal(scale=1.0, size=len(y))
    challenger = base + rng.normal(scale=1.0, size=len(y))  # equally good: any gain is noise
    gains = paired_block_bootstrap(y, champion, challenger, blocks, 200)
    assert np.quantile(gains, 0.05) < 0 < np.quantile(gains, 0.95)


def test_blocks_count_dependent_rows_once():
    """Extreme dependence: each of 300 flights copied 20 times (one airport-hour, one outcome).
    Resampling rows would pretend to have 6,000 observations; resampling blocks sees 300."""
    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.3).astype(int)
    champion = y + rng.normal(scale=1.5, size=300)
    challenger = y + rng.normal(scale=1.2, size=300)
    unique = paired_block_bootstrap(y, champion, challenger, np.arange(300), 300)
    rep = np.repeat(np.arange(300), 20)
    by_block = paired_block_bootstrap(y[rep], champion[rep], challenger[rep], rep, 300)
    by_row = paired_block_bootstrap(y[rep], champion[rep], challenger[rep], np.arange(6000), 300)
    assert 0.7 < np.std(by_block) / np.std(unique) < 1.4
    assert np.std(by_block) > 3 * np.std(by_row)


def m(auc: float, pr: float = 0.4, brier: float = 0.15, mean: float = 0.22) -> Metrics:
    return Metrics(6000, 0.22, auc, pr, brier, 0.4, 0.4, 0.4, 0.3, mean)


def s(version: str, auc: float, through: date, **kw) -> ModelScore:
    return ModelScore(version, m(auc, **kw), {}, 0.15, True, through)


def checks_of(champion, challenger, bound=0.01, **cfg):
    out = judge(
        champion,
        challenger,
        holdout_start=date(2013, 7, 1),
        holdout_label_rate=0.22,
        contract_version="1.0.0",
        challenger_contract_version="1.0.0",
        config=GateConfig(**cfg),
        gain_lower_bound=bound,
    )
    return {c.name: c.passed for c in out}


def test_every_check_can_refuse():
    k = s("1", 0.70, date(2013, 3, 31))
    assert all(checks_of(k, s("2", 0.72, date(2013, 6, 30))).values())
    assert not checks_of(k, s("2", 0.703, date(2013, 6, 30)))["primary_roc_auc"]  # under the margin
    assert not checks_of(k, s("2", 0.72, date(2013, 6, 30)), bound=-0.002)["primary_roc_auc"]  # noise
    assert not checks_of(k, s("2", 0.72, date(2013, 6, 30), pr=0.38))["guard_pr_auc"]
    assert not checks_of(k, s("2", 0.72, date(2013, 6, 30), brier=0.16))["guard_brier"]
    assert not checks_of(k, s("2", 0.72, date(2013, 7, 2)))["challenger_did_not_train_on_holdout"]
    assert not checks_of(k, s("2", 0.72, date(2013, 6, 30), mean=0.40))["prediction_mean_plausible"]
