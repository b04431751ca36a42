"""The label-free estimate on a real model trained the README's way and loaded back from MLflow:
its prior travels with the model, past errors widen its interval and the model-hurt signal reads
the widened interval; the window's own error is recorded for the next windows."""

from __future__ import annotations

import math

from data_contracts.windows import local_dates
from drills.calibrate import log_frame
from monitoring.monitor import ModelContext, compute_signals
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
