"""Great Expectations and the vectorised batch check must return identical verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_contracts.batch import expectations, validate_frame, validate_with_gx


@pytest.fixture(scope="module")
def sample(contract, good_record_base):
    rows = []
    rng = np.random.default_rng(0)
    for i in range(200):
        r = dict(good_record_base)
        r["time_hour"] = pd.Timestamp("2013-04-01T14:00:00Z") + pd.Timedelta(hours=i)
        r["temp"] = float(rng.normal(50, 10))
        r["wind_gust"] = None if i % 3 else 25.0
        rows.append(r)
    return pd.DataFrame(rows)


def corrupt(frame: pd.DataFrame) -> pd.DataFrame:
    bad = frame.copy()
    bad.loc[3, "temp"] = 400.0
    bad.loc[5, "sched_arr_time"] = 1275
    bad.loc[7, "carrier"] = "ZZ"
    bad.loc[9, "origin"] = None
    bad.loc[11, "humid"] = -1.0
    return bad.drop(columns=["visib"])


def test_suite_covers_every_field(contract):
    cols = {e.column for e in expectations(contract)}
    assert cols == set(contract.field_names)


def test_clean_batch_passes_both(contract, sample):
    assert validate_frame(contract, sample).success
    assert validate_with_gx(contract, sample).success


def test_broken_batch_same_verdicts_and_a_readable_summary(contract, sample):
    bad = corrupt(sample)
    fast, gx = validate_frame(contract, bad), validate_with_gx(contract, bad)
    assert not fast.success and fast.verdicts() == gx.verdicts()
    assert {c for c, _ in fast.verdicts()} == {"temp", "sched_arr_time", "carrier", "origin", "humid", "visib"}
    counts = {f.column: f.unexpected_count for f in fast.failures}
    assert counts["temp"] == 1 and counts["carrier"] == 1
    text = fast.summary()
    assert "temp: expected values between -40.0 and 130.0; 1 rows" in text and "400.0" in text
