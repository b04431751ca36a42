"""The dataset as driftlight reads it: offline, labelled as documented, leak-free."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from data_contracts.batch import validate_frame
from data_contracts.windows import select_window, window_bounds
from features.pipeline import build_pipeline
from features.transformers import LeakageError
from training.data import contract_frame, load_report
from training.train import DEFAULT_END, DEFAULT_START, TrainConfig, split


def test_all_2013_flights_load_offline(flights):
    assert len(flights) == 336_776
    rep = load_report()
    assert rep.cancelled == 8_255 and rep.diverted == 1_175 and rep.wind_errors_nulled == 1
    assert flights["time_hour"].is_monotonic_increasing


def test_labels_follow_the_documented_rule(flights):
    flown = flights[~flights["cancelled"] & flights["arr_delay"].notna()]
    assert (flown["late"] == (flown["arr_delay"] > 15).astype(float)).all()
    assert flights.loc[flights["cancelled"], "late"].isna().all()
    diverted = flights[~flights["cancelled"] & flights["arr_delay"].isna()]
    assert (diverted["late"] == 1.0).all()
    assert 0.2 < flights["late"].mean() < 0.25  # ~22 % late: accuracy is the wrong headline


def test_weather_join_covers_most_flights(flights):
    assert flights["temp"].notna().mean() > 0.99


def test_training_window_passes_the_contract(contract, flights):
    window = select_window(flights, contract, DEFAULT_START, DEFAULT_END)
    report = validate_frame(contract, contract_frame(contract, window))
    assert report.success, report.summary()


def test_the_raw_sensor_error_would_break_the_contract(contract):
    import pandas as pd

    from training.data import dataset_dir

    weather = pd.read_csv(dataset_dir() / "weather.csv")
    assert weather["wind_speed"].max() > contract.field("wind_speed").max  # why the loader nulls it


def test_windows_are_local_days(contract):
    lo, hi = window_bounds(date(2013, 4, 1), date(2013, 4, 30), contract.timezone)
    assert lo.isoformat() == "2013-04-01T04:00:00+00:00" and hi.isoformat() == "2013-05-01T04:00:00+00:00"


def test_split_is_by_time_and_disjoint(contract, flights):
    fit, val = split(contract, flights, TrainConfig())
    assert fit["time_hour"].max() < val["time_hour"].min()
    assert fit["late"].notna().all() and val["late"].notna().all()


def test_no_post_event_column_reaches_the_features(contract, flights):
    """The leakage test: fails if dep_delay & co. are ever configured as feature inputs."""
    pipe = build_pipeline(contract)
    used = set(pipe.named_steps["features"].input_columns())
    assert used <= set(contract.field_names)
    assert not used & set(contract.post_event_columns)
    # And the guard fires when one is put in (a negative control: this test can fail).
    feats = pipe.named_steps["features"]
    feats.set_params(numeric=(*feats.numeric, "dep_delay"))
    sample = flights.head(500)
    with pytest.raises(LeakageError):
        pipe.fit(sample, np.zeros(len(sample)))
