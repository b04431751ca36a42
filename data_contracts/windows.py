"""Windows of event time: the contract's UTC timestamp seen as local calendar days.

Windows are local days ("April" means April in New York) while the event time is UTC, so every
"rows on these days" question goes through `local_dates` and one mask here.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from data_contracts.contract import Contract


def window_bounds(start: date, end: date, timezone: str) -> tuple[datetime, datetime]:
    """UTC instants of the half-open window [start 00:00, end+1 00:00) in local `timezone`."""
    tz = ZoneInfo(timezone)
    lo = datetime(start.year, start.month, start.day, tzinfo=tz).astimezone(ZoneInfo("UTC"))
    nxt = end + timedelta(days=1)
    hi = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(ZoneInfo("UTC"))
    return lo, hi


def local_dates(frame: pd.DataFrame, contract: Contract) -> pd.Series:
    """The local calendar date of each row's event time."""
    return frame[contract.timestamp_field].dt.tz_convert(contract.timezone).dt.date


def rows_on_days(
    frame: pd.DataFrame,
    contract: Contract,
    *,
    first: date | None = None,
    last: date | None = None,
    days: Collection[date | str] | None = None,
) -> pd.DataFrame:
    """Rows whose event time falls on local days `first`..`last` (inclusive), or on any of `days`
    (dates or ISO strings). The one implementation behind `select_window` and `on_days`."""
    if days is not None:
        wanted = {d if isinstance(d, str) else d.isoformat() for d in days}
        mask = local_dates(frame, contract).map(lambda d: d.isoformat() in wanted).to_numpy(dtype=bool)
        return frame[mask]
    if first is None or last is None:
        raise ValueError("rows_on_days needs first and last, or days")
    lo, hi = window_bounds(first, last, contract.timezone)
    ts = frame[contract.timestamp_field]
    return frame[(ts >= lo) & (ts < hi)]


def select_window(frame: pd.DataFrame, contract: Contract, start: date, end: date) -> pd.DataFrame:
    """Rows whose event time falls on local days `start`..`end` inclusive."""
    return rows_on_days(frame, contract, first=start, last=end)


def on_days(contract: Contract, frame: pd.DataFrame, days: Collection[date | str]) -> pd.DataFrame:
    """Rows whose event time falls on any of `days` (the reference / control day lists)."""
    return rows_on_days(frame, contract, days=days)
