"""The label-free estimate on a real model trained the README's way and loaded back from MLflow:
its prior travels with the model, past errors widen its interval and the model-hurt signal reads
the widened interval; the window's own error is recorded for the next windows."""

from __future__ import annotations

import math

import numpy as np

from data_contracts.windows import local_dates
from drills.calibrate import log_frame
from monitoring.monitor import ModelContext, compute_signals
from monitoring.performance import estimate_correction
from training.train import TrainConfig, split


def test_past_errors_widen_the_estimate_and_its_model_hurt_signal(contract, flights, bundle):
    rms = bundle.metadata["monitoring"]["estimate_error_rms_by_cadence"]
    assert set(rms) >= {"1", "7"} and all(0 < v < 0.2 for v in rms.values())
    _, val = split(contract, flights, TrainConfig())
    days = local_dates(val, contract)
    week = log_frame(bundle, contract, val[days.isin(sorted(set(days))[:7])])
    ctx = ModelContext.from_bundle("flights-late", "test", bundle)
    assert ctx.estimate_wobble(7) == max(rms["1"], rms["7"]) and ctx.estimate_wobble(1) == rms["1"]

    def run(past):
        ws = compute_signals(ctx, contract, week, past_errors=past)
        iv = ws.details["intervals"]["expected_roc_auc"]
        drop = next(s.value for s in ws.signals if s.signal == "expected_roc_auc_drop")
        return ws, iv["high"] - iv["low"], drop

    first, w0, d0 = run([])
    est = first.details["estimate"]
    assert est["past_windows"] == 0 and math.isclose(w0 / 2, est["prior_half_width"])
    assert est["span_days"] == 7 and est["label_coverage"] == 1.0
    assert math.isclose(est["error"], est["estimate"] - first.performance.roc_auc)  # recorded for later windows
    bad, w1, d1 = run([0.15, -0.14, 0.16, 0.15, -0.15, 0.14])
    assert w1 > w0 and d1 < d0  # a wider interval is sure of a smaller drop
    assert not bad.details["estimate_trusted"] and "recent labelled windows" in bad.details["estimate_untrusted_why"]


def test_the_correction_reads_past_windows_only_never_the_judged_windows_labels(contract, flights, bundle):
    _, val = split(contract, flights, TrainConfig())
    days = local_dates(val, contract)
    week = log_frame(bundle, contract, val[days.isin(sorted(set(days))[7:14])])
    ctx = ModelContext.from_bundle("flights-late", "test", bundle)
    past = [0.06, 0.05, 0.07, 0.04]  # the last 4 weeks all too high: the estimate is moved down by 0.055
    labelled = compute_signals(ctx, contract, week, past_errors=past)
    blind = compute_signals(ctx, contract, week.assign(label=np.nan), past_errors=past)
    a, b = labelled.details["estimate"], blind.details["estimate"]
    # the judged week's own labels change nothing but the realised side (a leak would move the estimate)
    assert a["estimate"] == b["estimate"] and a["correction"] == b["correction"] == estimate_correction(past)
    assert labelled.details["intervals"]["expected_roc_auc"] == blind.details["intervals"]["expected_roc_auc"]
    assert math.isclose(a["estimate"], a["uncorrected"] - 0.055)
    iv = labelled.details["intervals"]["expected_roc_auc"]
    assert math.isclose(iv["high"] - iv["estimate"], iv["estimate"] - iv["low"])  # centred on the corrected estimate
    auc = labelled.performance.roc_auc
    assert math.isclose(a["error"], a["estimate"] - auc) and math.isclose(a["uncorrected_error"], a["uncorrected"] - auc)
    assert math.isnan(b["error"]) and math.isnan(b["uncorrected_error"])  # no labels: nothing to learn from yet
    # no past window: the uncorrected estimate with the prior interval, as before the correction
    first = compute_signals(ctx, contract, week, past_errors=[]).details
    sampling, est = first["intervals"]["expected_roc_auc_sampling"], first["estimate"]
    assert est["correction"] == 0.0 and est["estimate"] == est["uncorrected"] == sampling["estimate"]
