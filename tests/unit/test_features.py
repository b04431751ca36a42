"""FlightFeatures follows scikit-learn's conventions and computes what its docstring says."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from features.pipeline import build_features
from features.transformers import FlightFeatures, LeakageError


@pytest.fixture
def frame(good_record_base):
    rows = []
    for i, carrier in enumerate(["UA"] * 12 + ["AA"] * 12 + ["B6"] * 2):
        r = dict(good_record_base)
        r.update(
            carrier=carrier,
            time_hour=pd.Timestamp("2013-01-04T03:00:00Z") + pd.Timedelta(days=i),
            temp=None if i == 0 else 40.0 + i,
        )
        rows.append(r)
    return pd.DataFrame(rows)


def fitted(contract, frame):
    return build_features(contract).set_params(min_category_count=2).fit(frame)


def test_params_only_in_init_and_clone(contract):
    f = build_features(contract)
    g = clone(f)
    assert g.get_params() == f.get_params() and g is not f
    assert not hasattr(f, "categories_")


def test_fit_returns_self_and_learns_state_with_trailing_underscore(contract, frame):
    f = build_features(contract).set_params(min_category_count=2)
    assert f.fit(frame) is f
    assert list(f.feature_names_in_) == list(frame.columns)
    assert f.categories_["carrier"] == ["AA", "UA", "B6"] or f.categories_["carrier"][:2] == ["AA", "UA"]


def test_transform_before_fit_raises(contract, frame):
    with pytest.raises(NotFittedError):
        build_features(contract).transform(frame)


def test_post_event_column_as_input_raises_leakage(contract, frame):
    f = build_features(contract)
    f.set_params(numeric=(*f.numeric, "dep_delay"))
    with pytest.raises(LeakageError, match="dep_delay"):
        f.fit(frame.assign(dep_delay=1.0))


def test_calendar_uses_the_local_date_not_utc(contract, frame):
    f = fitted(contract, frame)
    # 2013-01-04T03:00Z is Thursday 2013-01-03 22:00 in New York (UTC would say Friday).
    x = f.transform(frame.iloc[[0]])[0]
    names = list(f.get_feature_names_out())
    assert x[names.index("day_of_week")] == 3.0
    assert x[names.index("weekend")] == 0.0


def test_schedule_and_missingness_features(contract, frame):
    f = fitted(contract, frame)
    names = list(f.get_feature_names_out())
    row = frame.iloc[[0]].assign(sched_dep_time=2330, sched_arr_time=115)
    x = f.transform(row)[0]
    assert x[names.index("dep_hour")] == 23.5 and x[names.index("arr_hour")] == 1.25
    assert x[names.index("overnight")] == 1.0
    assert x[names.index("temp_missing")] == 1.0 and math.isnan(x[names.index("temp")])
    assert x[names.index("wind_gust_missing")] == 1.0


def test_days_to_holiday(contract, frame):
    f = fitted(contract, frame)
    names = list(f.get_feature_names_out())
    # 2013-07-04 15:00 local is Independence Day; 2013-07-01 is three days before.
    rows = frame.iloc[[0, 0]].assign(time_hour=pd.to_datetime(["2013-07-04T19:00:00Z", "2013-07-01T19:00:00Z"], utc=True))
    x = f.transform(rows)
    assert list(x[:, names.index("days_to_holiday")]) == [0.0, 3.0]


def test_rare_and_unseen_categories_are_unknown(contract, frame):
    f = build_features(contract).set_params(min_category_count=5).fit(frame)
    names = list(f.get_feature_names_out())
    assert "B6" not in f.categories_["carrier"]  # seen twice: rare
    x = f.transform(frame.assign(carrier=["B6"] + ["ZZ"] * (len(frame) - 1)))
    assert np.isnan(x[:, names.index("carrier")]).all()


def test_record_path_equals_frame_path(contract, frame):
    f = fitted(contract, frame)
    batch = f.transform(frame)
    one = np.stack([f.transform_record(r) for r in frame.to_dict("records")])
    np.testing.assert_array_equal(batch, one)


def test_categorical_mask_matches_names(contract):
    f = build_features(contract)
    names = list(f.get_feature_names_out())
    mask = f.categorical_mask()
    assert [n for n, m in zip(names, mask, strict=True) if m] == ["carrier", "origin", "dest", "route"]


def test_fit_needs_a_dataframe(contract, frame):
    with pytest.raises(TypeError):
        FlightFeatures().fit(frame.to_numpy())


def categorical_definition(f, X):
    """The category codes as `transform` computed them before issue 15: one `pd.Categorical` per
    feature over the `_category_series` values (the route as a string per row)."""
    cols = []
    for name, values in f._category_series(X).items():
        codes = pd.Categorical(values, categories=f.categories_[name]).codes.astype("float64")
        codes[codes < 0] = np.nan
        cols.append(codes)
    return np.column_stack(cols)


@pytest.mark.parametrize("as_dtype", ["object", "string", "category"])
def test_category_codes_equal_the_categorical_definition(contract, frame, as_dtype):
    f = fitted(contract, frame)
    names = list(f.get_feature_names_out())
    cats = [names.index(n) for n in ("carrier", "origin", "dest", "route")]
    rng = np.random.default_rng(0)
    n = 400
    X = frame.sample(n, replace=True, random_state=0).reset_index(drop=True)
    # known, rare, unseen and missing values (None and NaN), and origin/dest pairs never seen together
    X["carrier"] = rng.choice(np.array(["UA", "AA", "B6", "ZZ", None, np.nan], dtype=object), n)
    X["origin"] = rng.choice(np.array(["EWR", "JFK", "LGA", "XXX", None], dtype=object), n)
    X["dest"] = rng.choice(np.array([*frame["dest"].unique(), "ORD", "QQQ", np.nan], dtype=object), n)
    X = X.astype({c: as_dtype for c in ("carrier", "origin", "dest")})
    got = f.transform(X)[:, cats]
    np.testing.assert_array_equal(got, categorical_definition(f, X))
    assert np.isnan(got).any() and not np.isnan(got).all()
    for empty in (X.iloc[:0], X.assign(origin=None)):
        np.testing.assert_array_equal(f.transform(empty)[:, cats], categorical_definition(f, empty))


def test_timestamps_as_text_or_aware_give_the_same_calendar(contract, frame):
    f = fitted(contract, frame)
    aware = f.transform(frame)
    as_text = f.transform(frame.assign(time_hour=frame["time_hour"].map(lambda t: t.isoformat())))
    np.testing.assert_array_equal(aware, as_text)
