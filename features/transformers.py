"""The shared feature code: raw contract fields -> the numeric matrix the model sees.

`FlightFeatures` is the first step of the served sklearn Pipeline, so training and serving run the
same fitted object (Zinkevich rule #32). It has two paths over the same fitted state:

- `transform(frame)`: vectorised pandas/numpy, used by `Pipeline.fit` / `predict_proba` on batches;
- `transform_record(record)`: plain Python over one mapping, used by the service's single-record
  hot path (a ColumnTransformer on a one-row DataFrame costs ~3 ms; this costs a few µs).

A parity test runs both over every 2013 flight and requires bit-identical output.

Features (see `feature_names_out`):
- schedule: departure and arrival time of day in hours (local hhmm -> h + m/60), overnight arrival;
- calendar (local date of the UTC `time_hour`): day of week, weekend, days to the nearest US federal
  holiday (capped). Month is deliberately not a feature: a model trained on one season cannot learn
  a month effect it has never seen, and trees would extrapolate March into July;
- distance and the origin weather as given (NaN kept: the booster handles missing values natively),
  plus missingness indicators (a missing gust means "no gusts", a missing pressure a sensor outage);
- categories (carrier, origin, dest, route = origin-dest) as integer codes learned in `fit`:
  categories seen fewer than `min_category_count` times, or beyond `max_categories`, and categories
  never seen in training all map to NaN ("unknown") - the high-cardinality answer for `dest`/route.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

HOLIDAY_CAP_DAYS = 14.0


class LeakageError(ValueError):
    """A column known only after the event was configured as a feature input."""


@lru_cache(maxsize=1)
def _holiday_ordinals() -> tuple[int, ...]:
    from pandas.tseries.holiday import USFederalHolidayCalendar

    days = USFederalHolidayCalendar().holidays(start="2000-01-01", end="2040-12-31")
    return tuple(int(d.toordinal()) for d in days.date)


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _days_to_holiday(ordinal: int) -> float:
    hol = _holiday_ordinals()
    i = bisect.bisect_left(hol, ordinal)
    best = HOLIDAY_CAP_DAYS
    if i < len(hol):
        best = min(best, float(hol[i] - ordinal))
    if i > 0:
        best = min(best, float(ordinal - hol[i - 1]))
    return best


def _days_to_holiday_vec(ordinals: np.ndarray) -> np.ndarray:
    hol = np.asarray(_holiday_ordinals(), dtype=np.int64)
    i = np.searchsorted(hol, ordinals, side="left")
    nxt = np.where(i < len(hol), hol[np.minimum(i, len(hol) - 1)] - ordinals, np.inf)
    prv = np.where(i > 0, ordinals - hol[np.maximum(i - 1, 0)], np.inf)
    return np.minimum(np.minimum(nxt, prv).astype("float64"), HOLIDAY_CAP_DAYS)


def _known_codes(codes: np.ndarray, lookup: np.ndarray | None) -> np.ndarray:
    """Codes (-1 = NA) mapped through `lookup` (distinct value -> learned code, -1 = unknown) as
    floats with NaN for missing or unknown."""
    mapped = codes if lookup is None else np.where(codes >= 0, lookup[codes] if len(lookup) else -1, -1)
    out = mapped.astype("float64")
    out[mapped < 0] = np.nan
    return out


# Features that are functions of the event date alone: their distribution in a window is the
# window's calendar (which days it covers), not a property of the data, so the monitor does not
# test them for drift (a week of control days always "drifts" in days-to-holiday).
CALENDAR_FEATURES = ("day_of_week", "weekend", "days_to_holiday")


class FlightFeatures(TransformerMixin, BaseEstimator):
    """Derive model features from raw contract fields.

    Parameters (set from the contract by `features.pipeline.build_pipeline`):
        timestamp: name of the UTC event-time field (`time_hour`).
        dep_hhmm, arr_hhmm: local scheduled departure / arrival times as hhmm integers.
        numeric: numeric fields passed through (distance and weather), NaN kept.
        categorical: category fields encoded as learned integer codes.
        missing_indicators: fields that also get a 0/1 "is missing" feature.
        route: pair of category fields combined into one route category, or None.
        timezone: IANA zone of the local calendar.
        forbidden: columns known only after the event; using one raises `LeakageError` in `fit`.
        min_category_count, max_categories: rare-category handling (booster limit is 255 codes).
    """

    def __init__(
        self,
        timestamp: str = "time_hour",
        dep_hhmm: str = "sched_dep_time",
        arr_hhmm: str = "sched_arr_time",
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        missing_indicators: Sequence[str] = (),
        route: tuple[str, str] | None = None,
        timezone: str = "UTC",
        forbidden: Sequence[str] = (),
        min_category_count: int = 10,
        max_categories: int = 250,
    ) -> None:
        self.timestamp = timestamp
        self.dep_hhmm = dep_hhmm
        self.arr_hhmm = arr_hhmm
        self.numeric = numeric
        self.categorical = categorical
        self.missing_indicators = missing_indicators
        self.route = route
        self.timezone = timezone
        self.forbidden = forbidden
        self.min_category_count = min_category_count
        self.max_categories = max_categories

    # -- what goes in and out -------------------------------------------------------------
    def input_columns(self) -> list[str]:
        """Raw columns this transformer reads, in a stable order."""
        cols = [self.timestamp, self.dep_hhmm, self.arr_hhmm, *self.numeric, *self.categorical]
        cols += [c for c in self.missing_indicators if c not in cols]
        return list(dict.fromkeys(cols))

    def _category_names(self) -> list[str]:
        names = list(self.categorical)
        if self.route is not None:
            names.append("route")
        return names

    def _feature_names(self) -> list[str]:
        names = ["dep_hour", "arr_hour", "overnight", "day_of_week", "weekend", "days_to_holiday"]
        names += list(self.numeric)
        names += [f"{c}_missing" for c in self.missing_indicators]
        names += self._category_names()
        return names

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self._feature_names(), dtype=object)

    def categorical_mask(self) -> list[bool]:
        """Which output columns are category codes (for the booster's `categorical_features`)."""
        cats = set(self._category_names())
        return [n in cats for n in self._feature_names()]

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: Any = None) -> FlightFeatures:
        if not isinstance(X, pd.DataFrame):
            raise TypeError("FlightFeatures is fitted on a DataFrame of contract fields")
        leaked = sorted(set(self.input_columns()) & set(self.forbidden))
        if leaked:
            raise LeakageError(f"post-event columns configured as feature inputs: {leaked}")
        missing = [c for c in self.input_columns() if c not in X.columns]
        if missing:
            raise ValueError(f"columns missing from the training frame: {missing}")
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        self.n_features_in_ = len(X.columns)
        cats: dict[str, list[str]] = {}
        for name, values in self._category_series(X).items():
            counts = values.value_counts(dropna=True)
            counts = counts[counts >= self.min_category_count]
            # Most frequent first, ties by name: deterministic for the same data.
            order = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[: self.max_categories]
            cats[name] = [str(k) for k, _ in order]
        self.categories_ = cats
        self.category_index_ = {name: {v: float(i) for i, v in enumerate(vals)} for name, vals in cats.items()}
        self.n_features_out_ = len(self._feature_names())
        return self

    def _category_series(self, X: pd.DataFrame) -> dict[str, pd.Series]:
        out = {c: X[c].astype("object") for c in self.categorical}
        if self.route is not None:
            a, b = self.route
            out["route"] = X[a].astype("object") + "-" + X[b].astype("object")
        return out

    # -- vectorised path ------------------------------------------------------------------------
    def transform(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "categories_")
        if not isinstance(X, pd.DataFrame):
            raise TypeError("FlightFeatures.transform takes a DataFrame of contract fields")
        n = len(X)
        out = np.empty((n, self.n_features_out_), dtype="float64")
        dep = X[self.dep_hhmm].to_numpy(dtype="float64")
        arr = X[self.arr_hhmm].to_numpy(dtype="float64")
        out[:, 0] = np.floor(dep / 100.0) + np.mod(dep, 100.0) / 60.0
        out[:, 1] = np.floor(arr / 100.0) + np.mod(arr, 100.0) / 60.0
        out[:, 2] = (arr < dep).astype("float64")
        stamps = X[self.timestamp]
        # An already tz-aware column converts directly: pd.to_datetime would first walk every value
        # to decide whether to cache its parsing (~1/6 of this method's time at 50k rows).
        aware = isinstance(stamps.dtype, pd.DatetimeTZDtype)
        local = (stamps if aware else pd.to_datetime(stamps, utc=True)).dt.tz_convert(self.timezone)
        dow = local.dt.dayofweek.to_numpy(dtype="float64")
        out[:, 3] = dow
        out[:, 4] = (dow >= 5).astype("float64")
        # Proleptic Gregorian ordinal of the local date (date.toordinal(): 1970-01-01 is 719163).
        days = local.dt.tz_localize(None).to_numpy().astype("datetime64[D]").astype("int64") + 719163
        out[:, 5] = _days_to_holiday_vec(days)
        j = 6
        for c in self.numeric:
            out[:, j] = pd.to_numeric(X[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            j += 1
        for c in self.missing_indicators:
            out[:, j] = X[c].isna().to_numpy().astype("float64")
            j += 1
        for codes in self._category_codes(X):
            out[:, j] = codes
            j += 1
        return out

    def _category_codes(self, X: pd.DataFrame) -> list[np.ndarray]:
        """The learned code of each category feature (NaN = unknown), in `_category_names` order.

        The same codes as `pd.Categorical(values, categories=self.categories_[name]).codes` over the
        `_category_series` values (tests/unit/test_features.py checks it), with each raw column hashed
        once: the values are factorized, only the distinct ones are looked up, and the route is built
        from the distinct (origin, dest) pairs instead of one string concatenation per row."""
        seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}

        def factorized(col: str) -> tuple[np.ndarray, np.ndarray]:
            if col not in seen:
                codes, uniques = pd.factorize(X[col].astype("object").to_numpy())  # NA -> -1
                seen[col] = (codes, np.asarray(uniques, dtype=object))
            return seen[col]

        out = []
        for name in self.categorical:
            codes, uniques = factorized(name)
            out.append(_known_codes(codes, pd.Index(self.categories_[name]).get_indexer(uniques)))
        if self.route is not None:
            a, b = self.route
            (ca, ua), (cb, ub) = factorized(a), factorized(b)
            pair = np.full(len(X), -1, dtype="int64")
            both = (ca >= 0) & (cb >= 0)  # a missing end makes the route missing, as NaN + "-" does
            pair[both] = ca[both].astype("int64") * len(ub) + cb[both]
            pairs, inverse = np.unique(pair[both], return_inverse=True)
            width = max(len(ub), 1)
            names = pd.Series(ua[pairs // width], dtype=object) + "-" + pd.Series(ub[pairs % width], dtype=object)
            route = np.full(len(X), -1, dtype="int64")
            route[both] = pd.Index(self.categories_["route"]).get_indexer(names.to_numpy())[inverse]
            out.append(_known_codes(route, None))
        return out

    # -- single-record path ------------------------------------------------------------------------
    def transform_record(self, record: Mapping[str, Any]) -> np.ndarray:
        """The same features for one record (a mapping of contract fields), shape (n_features,)."""
        out = np.empty(self.n_features_out_, dtype="float64")
        dep = float(record[self.dep_hhmm])
        arr = float(record[self.arr_hhmm])
        out[0] = math.floor(dep / 100.0) + math.fmod(dep, 100.0) / 60.0
        out[1] = math.floor(arr / 100.0) + math.fmod(arr, 100.0) / 60.0
        out[2] = 1.0 if arr < dep else 0.0
        ts = record[self.timestamp]
        if isinstance(ts, str):
            ts = datetime.fromisoformat(ts)
        elif isinstance(ts, pd.Timestamp):
            ts = ts.to_pydatetime()
        local_date: date = ts.astimezone(_zone(self.timezone)).date()
        dow = float(local_date.weekday())
        out[3] = dow
        out[4] = 1.0 if dow >= 5 else 0.0
        out[5] = _days_to_holiday(local_date.toordinal())
        j = 6
        for c in self.numeric:
            v = record[c]
            out[j] = math.nan if v is None else float(v)
            j += 1
        for c in self.missing_indicators:
            v = record[c]
            out[j] = 1.0 if v is None or (isinstance(v, float) and math.isnan(v)) else 0.0
            j += 1
        index = self.category_index_
        for c in self.categorical:
            out[j] = index[c].get(record[c], math.nan)
            j += 1
        if self.route is not None:
            a, b = self.route
            out[j] = index["route"].get(f"{record[a]}-{record[b]}", math.nan)
        return out
