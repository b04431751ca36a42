"""The label-free estimate's interval: a prior, then the errors of past labelled windows (adaptive
conformal); it covers a concept wobble that sampling theory leaves out, uses only past windows,
and the run store hands it only windows that ended before the judged one starts."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np

from core.runs import RunStore
from monitoring.monitor import estimate_trust
from monitoring.performance import (
    Interval,
    aci_half_widths,
    corrected_errors,
    estimate_correction,
    estimate_prior_half_width,
    online_estimate_interval,
    recent_estimate_error,
    shifted,
)
from monitoring.policy import Signal

SAMPLING = Interval(0.70, 0.68, 0.72, 0.9, 500)  # +-0.02: what sampling alone says


def simulate(wobble: np.ndarray, prior_rms: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weeks whose realised AUC = estimate + concept wobble (sd per week) + sampling noise; the
    interval of each week learns online from the weeks before it. Returns (covered, half-widths, errors)."""
    rng = np.random.default_rng(seed)
    real = SAMPLING.estimate - rng.normal(0.0, wobble) - rng.normal(0.0, 0.012, size=wobble.size)
    errors = SAMPLING.estimate - real
    path = aci_half_widths(errors, estimate_prior_half_width(SAMPLING, prior_rms))
    half = np.maximum([h for h, _ in path[:-1]], (SAMPLING.high - SAMPLING.low) / 2)
    return np.abs(errors) <= half, half, errors


def test_online_interval_covers_a_known_concept_wobble_that_sampling_misses():
    covered, half, errors = simulate(np.full(400, 0.05), prior_rms=0.01)  # a prior that underrates the wobble
    assert np.mean(np.abs(errors) <= 0.02) < 0.45  # the wobble is real: sampling's +-0.02 covers a third
    assert 0.85 <= covered[10:].mean() <= 0.95, covered[10:].mean()
    assert 0.06 < np.median(half) < 0.12  # 1.645 x sqrt(0.05^2 + 0.012^2) = 0.085


def test_online_interval_adapts_when_the_wobble_grows():
    covered, half, _ = simulate(np.r_[np.full(150, 0.02), np.full(250, 0.07)], prior_rms=0.02, seed=3)
    assert covered[200:].mean() >= 0.82  # after the change, coverage comes back near 90 %
    assert np.median(half[250:]) > 2 * np.median(half[50:150])


def test_each_step_uses_only_the_errors_before_it():
    errors = list(np.random.default_rng(1).normal(0, 0.05, 40))
    path = aci_half_widths(errors, 0.03)
    for i in (0, 5, 20, 40):
        iv, level = online_estimate_interval(SAMPLING, errors[:i], 0.03)
        assert math.isclose(iv.high - iv.estimate, max(path[i][0], 0.02)) and level == path[i][1]
    # rewriting the future (errors from step 20 on) changes nothing before it
    future = errors[:20] + [0.5] * 20
    assert aci_half_widths(future, 0.03)[:21] == path[:21]
    assert aci_half_widths(future, 0.03)[25] != path[25]


def test_no_past_window_gives_the_prior_and_never_narrower_than_sampling():
    prior = estimate_prior_half_width(SAMPLING, 0.064)
    assert math.isclose(prior, 1.6448536 * 0.064, rel_tol=1e-5)
    iv, level = online_estimate_interval(SAMPLING, [], prior)
    assert math.isclose(iv.high - iv.estimate, prior) and level == SAMPLING.level - 0.8  # alpha 0.1 unchanged
    tiny, _ = online_estimate_interval(SAMPLING, [0.0] * 50, 0.0)
    assert math.isclose(tiny.high - tiny.low, SAMPLING.high - SAMPLING.low)
    wide, _ = online_estimate_interval(Interval(0.99, 0.98, 1.0, 0.9, 10), [0.2] * 20, 0.1)
    assert wide.high == 1.0 and wide.low >= 0.0  # an AUC interval stays in [0, 1]


def test_recent_misses_lower_the_miscoverage_level_more_than_old_ones():
    calm, big = [0.005] * 20, [0.15] * 5
    _, recent = online_estimate_interval(SAMPLING, calm + big, 0.03)
    _, old = online_estimate_interval(SAMPLING, big + calm, 0.03)
    assert recent < 0.1 < old  # misses just now: aim wider than 90 %; long ago: calm since


def test_trust_flag_distrusts_an_estimate_that_just_failed():
    assert math.isnan(recent_estimate_error([]))
    assert math.isclose(recent_estimate_error([0.5, 0.01, -0.02, 0.04, -0.05]), 0.03)  # the last 4 only
    assert estimate_trust([], [0.01, -0.02, 0.01, 0.0]) == (True, "")
    ok, why = estimate_trust([Signal("psi_vs_null", "temp", 1.0)], [0.01, 0.09, -0.08, 0.1])
    assert not ok and "recent labelled windows" in why


def test_the_estimate_is_corrected_only_after_recent_failure_and_only_by_recent_windows():
    assert estimate_correction([]) == 0.0  # no past window: the estimate as it was
    assert estimate_correction([0.01, -0.02, 0.02, 0.0, 0.03]) == 0.0  # within tolerance: left alone
    assert math.isclose(estimate_correction([0.5, 0.05, 0.06, 0.04, 0.07]), 0.055)  # the last 4's mean, not the 0.5
    assert estimate_correction([0.5, 0.5, 0.5, 0.5, 0.01, 0.0, -0.01, 0.02]) == 0.0  # old failures are forgotten
    assert math.isclose(estimate_correction([-0.06, -0.05, -0.07, 0.02]), -0.04)  # an estimate too low is raised
    assert estimate_correction([float("nan"), 0.01]) == 0.0


def test_corrected_errors_replay_each_window_with_the_correction_it_got_from_earlier_windows():
    errors = [0.06, 0.05, 0.07, 0.04, 0.06, 0.01, 0.09]
    got = corrected_errors(errors)
    want = [e - estimate_correction(errors[:i]) for i, e in enumerate(errors)]
    assert got == want and got[0] == 0.06 and math.isclose(got[4], 0.06 - 0.055)
    # a window's corrected error depends on it and the windows before it, never on later ones
    future = [*errors[:4], -0.5, 0.5, -0.5]
    assert corrected_errors(future)[:4] == got[:4] and corrected_errors(future)[5] != got[5]
    calm = [0.01, -0.02, 0.02, 0.0, -0.01]
    assert corrected_errors(calm) == calm  # nothing corrected: the errors are the estimate's own


def test_the_online_interval_centres_on_the_corrected_estimate():
    past = [0.06, 0.05, 0.07, 0.04]
    c = estimate_correction(past)
    iv, _ = online_estimate_interval(shifted(SAMPLING, -c), corrected_errors(past), 0.03)
    assert math.isclose(iv.estimate, 0.70 - 0.055) and math.isclose(iv.high - iv.estimate, iv.estimate - iv.low)
    assert shifted(SAMPLING, 0.0) is SAMPLING and shifted(Interval(0.99, 0.97, 1.0, 0.9, 5), 0.05).high == 1.0


def _record(store: RunStore, start: datetime, error: float, *, version: str = "3", span: int = 7, **kw) -> None:
    estimate = {"error": error, "span_days": span, "label_coverage": kw.pop("coverage", 1.0), **kw.pop("more", {})}
    store.record_run(
        window_start=start,
        window_end=start + timedelta(days=span),
        window_by="event_time",
        model_version=version,
        rows=6000,
        labelled=6000,
        status="green",
        raw_status="green",
        reasons=[],
        summary={"estimate": estimate},
        drill=kw.pop("drill", None),
    )


def test_run_store_hands_over_only_windows_that_ended_before_the_judged_one(tmp_path):
    store = RunStore(f"sqlite:///{tmp_path / 'runs.db'}")
    t0 = datetime(2013, 4, 1, 4, tzinfo=UTC)
    week = timedelta(days=7)
    for i, e in enumerate([0.01, -0.02, 0.03, 0.04, 0.05, 0.06]):
        _record(store, t0 + i * week, e)
    _record(store, t0 - week, 0.9, version="2")  # another model
    _record(store, t0 - week, 0.9, drill="heat wave")  # a drill
    _record(store, t0 - week, float("nan"))  # judged before its labels arrived
    _record(store, t0 - 2 * week, 0.9, coverage=0.3)  # most labels still missing
    _record(store, t0 - 3 * week, 0.9, span=1)  # another span
    judged = t0 + 3 * week  # the fourth week
    assert store.estimate_errors("3", 7, judged) == [0.01, -0.02, 0.03]
    # the judged week and later ones may change (new runs, new labels): nothing changes for it
    _record(store, judged, 0.7)
    _record(store, t0 + 4 * week, -0.7)
    assert store.estimate_errors("3", 7, judged) == [0.01, -0.02, 0.03]
    # a past window judged again with its labels in replaces its earlier error, once
    _record(store, t0 + week, -0.04)
    assert store.estimate_errors("3", 7, judged) == [0.01, -0.04, 0.03]
    assert store.estimate_errors("3", 7, judged, limit=2) == [-0.04, 0.03]
    store.dispose()


def test_run_store_hands_over_the_uncorrected_errors_the_correction_is_computed_from(tmp_path):
    store = RunStore(f"sqlite:///{tmp_path / 'runs.db'}")
    t0 = datetime(2013, 4, 1, 4, tzinfo=UTC)
    week = timedelta(days=7)
    _record(store, t0, 0.05)  # judged before the correction existed: its error is the uncorrected one
    _record(store, t0 + week, 0.01, more={"uncorrected_error": 0.06, "correction": 0.05})
    assert store.estimate_errors("3", 7, t0 + 2 * week) == [0.05, 0.06]
    store.dispose()


def _week(i: int, error: float, covered: bool, trusted: bool) -> dict:
    alt = {
        "uncorrected": 0.7, "bias_corrected": 0.7, "median_last_4": 0.7, "last_realised": 0.69, "average_with_last": 0.7,
        "platt_last_4": 0.71,
    }  # fmt: skip
    return {
        "week": f"2013-04-{1 + 7 * i:02d}", "rows": 6000, "estimate": 0.7, "low": 0.62, "high": 0.78, "realised": 0.7 - error,
        "error": error, "uncorrected": 0.7, "correction": 0.0, "uncorrected_error": error,
        "covered": covered, "past_weeks": i, "sampling_covered": False, "sampling_half": 0.02,
        "prior_covered": covered, "prior_half": 0.1, "late_labels_covered": covered, "half": 0.08, "alternatives": alt,
        "trusted": trusted, "why": "" if trusted else "recent labelled windows off by 0.05 (median |error|)",
        "trusted_inputs": True, "trusted_recent": trusted,
    }  # fmt: skip


def test_only_the_estimate_section_of_the_doc_is_rewritten():
    from drills.calibrate import ESTIMATE_HEADING, estimate_markdown, splice_estimate

    rows = [_week(i, e, abs(e) < 0.08, i % 2 == 0) for i, e in enumerate([0.01, -0.03, 0.09, 0.02, -0.01])]
    bias = {"validation": {"weeks": 8, "mean_error": -0.005}, "control": {"weeks": 19, "mean_error": 0.011}}
    section = estimate_markdown(rows, {"estimate_error_rms_by_cadence": {"1": 0.064, "7": 0.016}, "estimate_bias_jan_mar": bias})
    assert section.startswith(ESTIMATE_HEADING) and "--only-estimate" in section
    assert "median |estimated - realised| **0.020**" in section and "coverage **80%**" in section
    assert "validation 8: mean error -0.005; control 19: mean error +0.011" in section
    # the candidates replayed on the weeks (all in April: the choosing half), the kept one marked
    assert "| none (the uncorrected estimate) | 0.0200 | - | 0.0200 |" in section
    assert "(kept: `estimate_correction`)** | 0.0200 |" in section  # never beyond 0.03 over the last 4: no correction
    assert "weeks with ≥ 4 labelled past weeks (1): coverage **100%**" in section
    assert "| **the flag (either)** | 3: 0.010, 67% | 2: 0.025, 100% |" in section
    head = "# Thresholds\n\n## Power\n\n| a | b |\n"
    doc = head + ESTIMATE_HEADING + "\n\nold table\n\nRun time: 1456.7 s on this machine.\n"
    new = splice_estimate(doc, section)
    assert new.startswith(head) and new.endswith("Run time: 1456.7 s on this machine.\n")
    assert "old table" not in new and section in new
    assert splice_estimate(new, section) == new  # idempotent
    # a doc without the section gets it before the run-time line
    bare = head + "\nRun time: 1 s on this machine.\n"
    assert splice_estimate(bare, section).index(ESTIMATE_HEADING) < splice_estimate(bare, section).index("Run time")
