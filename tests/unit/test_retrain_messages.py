"""The retrain's words to the person running it: what the challenger is fitted on, and a cooldown
that says when the next retrain may run (found walking the README: "92996 rows (2013-03-27..
2013-04-16)" hid the 65,272 original rows, and "less than 1 day, 0:00:00" named no next step)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from training.retrain import cooldown_reason, fit_line


def test_the_fit_line_counts_the_original_window_apart_from_the_log():
    window = (date(2013, 3, 27), date(2013, 4, 16))
    line = fit_line({"fit": 27724, "validation": 6334, "holdout": 6478, "fit_original": 65272}, window)
    assert line == (
        "fitting a challenger on 92996 rows (27724 from the log's 2013-03-27..2013-04-16"
        " + 65272 of the original 2013-01-01..2013-03-31 window), validating on 6334 ..."
    )
    alone = fit_line({"fit": 27724, "validation": 6334, "holdout": 6478}, window)
    assert alone.startswith("fitting a challenger on 27724 rows (27724 from the log's 2013-03-27..2013-04-16)")


def test_the_cooldown_says_when_the_next_retrain_may_run():
    last = datetime(2026, 12, 1, 10, 6, tzinfo=UTC)
    why = cooldown_reason(last, last + timedelta(minutes=2), timedelta(hours=24))
    assert why.startswith("cooldown: the last retrain was decided at 2026-12-01 10:06 UTC, less than 24 h")
    assert "DRIFTLIGHT_RETRAIN_COOLDOWN_HOURS" in why and "after 2026-12-02 10:06 UTC" in why
    assert "driftlight retrain" in why and "day," not in why


def test_retrain_on_an_untrained_or_unserved_home_says_what_to_run(tmp_path, contract):
    """`driftlight retrain` on a fresh home failed with sqlite's "no such table: predictions"."""
    from core.logstore import log_store_from_settings
    from core.registry import InMemoryRegistry
    from core.runs import RunStore
    from core.settings import Settings
    from training.gate import GateConfig
    from training.retrain import RetrainConfig, retrain

    settings = Settings(home=tmp_path)
    store, runs = log_store_from_settings(settings, contract), RunStore(settings.resolved_log_store_url)
    registry = InMemoryRegistry()
    args = (contract, registry, store, runs, RetrainConfig(), GateConfig())
    out = retrain(*args, model_name="flights-late")
    assert out.status == "refused" and out.reasons == [
        "no labelled predictions in the log yet: run `driftlight train` first (there is no flights-late@champion),"
        " then serve traffic (`driftlight serve`, `driftlight replay`) and send its labels to /feedback first"
    ]
    registry.register("flights-late", object(), params={}, metrics={}, artifacts={})
    registry.set_alias("flights-late", "champion", "1")
    out = retrain(*args, model_name="flights-late")  # trained, never served: the log has no table yet
    assert out.status == "refused" and out.reasons[0].startswith("no labelled predictions in the log yet: serve traffic")
    assert "driftlight replay" in out.reasons[0] and "/feedback" in out.reasons[0]
