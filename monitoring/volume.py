"""Volume (pure): did the window get the traffic its hours of the week normally carry?

Lost traffic (an origin's feed gone, part of a day missing, a gap of hours) and spikes (a feed sent
twice) never show in a drift statistic: the rows that did arrive look normal. The schedule is very
regular, so the expected number of records of any span of event time follows from the training
period: at training time the reference days' records are counted per local hour of the day and per
segment (origin airport) and frozen with the model (`VolumeReference`, from `count_by_day`).

For a window, the expected count of each (local weekday, hour, segment) is the *median* over the
reference days of that weekday (a blizzard day in the reference does not lower the expectation),
summed over the window's hours. The window's arrived records (served + refused at the door) are
compared on the log scale, log((observed + 1) / (expected + 1)), and judged against the no-drift
null of that same ratio: every reference day held out in turn against the median of the other days
of its weekday (leave-one-out), centred on the median and scaled by the MAD. The signal is the
absolute z; its detail says arrived vs expected, the ratio and whether it is a drop or a spike. A
view that moved by less than `MIN_CHANGE` (a quarter of its records) is reported with value 0,
however unlikely under the null: storms and holidays move real traffic by 15-20 %, a lost or
doubled feed by 30 % or more.

Three views of one window, each with its own null: the total (`feature` None), each segment
(`origin=EWR`: which feed lost traffic) and each 6-hour block of the local day (`local 06-12`:
a gap of hours that the day's total would dilute). A window of several days is judged against the
1-day null (multi-day totals vary less than single days, so this is conservative).

Only event time can be judged (a replay posts 2013 traffic at any wall-clock speed), and only the
hours the feed has reached: a window still open (its end after the watermark, the latest event the
log holds, or after now) is judged through the watermark's hour, never called a drop for the hours
that have not happened yet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from monitoring.policy import Signal

BLOCK_HOURS = 6
MIN_EXPECTED = 30.0  # a view expecting fewer records is not judged (5 flights at 05:00 say nothing)
MIN_SCALE = 0.02  # a floor on the null's log-ratio scale (a reference with identical days)
# A window with less than this share of the expected records is read as a sample of the feed (tests,
# demos and drills replay a few thousand rows of months): its level is not judged, only its mix
# (per segment and per block, as shares of what arrived), which a sample keeps.
SAMPLE_BELOW = 0.10
SIGNAL = "volume_change"
# A change smaller than this share of a view's expected records is not judged, however unlikely
# under the null: the faults the signal is for lose a third of a day (one of three origins), 30-40 %
# of the records or a 6-hour block, or double them; weather and the calendar move real traffic by
# up to ~20 % (cancellations in a storm, a Saturday evening). On the 51 reference days, each held
# out against the others, the largest change of any view but the blizzard's (Feb 8, -99.5 % in the
# evening) is -21.9 % (Sat Jan 19, 18-24 local, z -3.3); the smallest fault is 30 % (a sampling sd
# of ~3 % on a 300-record view). 25 % sits between. Symmetric on the log scale (a spike of +33 %).
MIN_CHANGE = 0.25


def _log_ratio(observed: np.ndarray | float, expected: np.ndarray | float) -> np.ndarray:
    return np.log((np.asarray(observed, dtype="float64") + 1.0) / (np.asarray(expected, dtype="float64") + 1.0))


def _centre_scale(values: np.ndarray) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return 0.0, math.inf
    med = float(np.median(v))
    return med, max(1.4826 * float(np.median(np.abs(v - med))), MIN_SCALE)


@dataclass(frozen=True)
class VolumeReference:
    """Records per reference day, local hour and segment (frozen at training time).

    `counts` has shape (days, 24, segments); `weekdays` is each day's weekday (Monday 0)."""

    timezone: str
    segment_field: str
    segments: tuple[str, ...]
    days: tuple[str, ...]
    weekdays: np.ndarray
    counts: np.ndarray

    @classmethod
    def from_dict(cls, d: Mapping[str, object] | None) -> VolumeReference | None:
        if not d:
            return None
        days = tuple(str(x) for x in d["days"])  # type: ignore[attr-defined]
        return cls(
            timezone=str(d["timezone"]),
            segment_field=str(d["segment_field"]),
            segments=tuple(str(s) for s in d["segments"]),  # type: ignore[attr-defined]
            days=days,
            weekdays=np.array([datetime.fromisoformat(x).weekday() for x in days], dtype="int64"),
            counts=np.asarray(d["counts"], dtype="float64").reshape(len(days), 24, -1),
        )

    def table(self, exclude: int | None = None) -> np.ndarray:
        """Expected records per (weekday, local hour, segment): the median over reference days of
        that weekday (leaving day `exclude` out); NaN for a weekday with no reference day."""
        out = np.full((7, 24, len(self.segments)), np.nan)
        keep = np.ones(len(self.days), dtype=bool)
        if exclude is not None:
            keep[exclude] = False
        for wd in range(7):
            sel = keep & (self.weekdays == wd)
            if sel.any():
                out[wd] = np.median(self.counts[sel], axis=0)
        return out

    def null(self) -> dict[str, tuple[float, float]]:
        """(centre, scale) of the log ratio of every view, from each reference day held out in turn."""
        views: dict[str, list[float]] = {}
        for i in range(len(self.days)):
            exp = self.table(exclude=i)[self.weekdays[i]]
            if np.isnan(exp).any():
                continue
            for name, (o, e) in self._views(self.counts[i], exp).items():
                if e >= MIN_EXPECTED:
                    views.setdefault(name, []).append(float(_log_ratio(o, e)))
        return {name: _centre_scale(np.array(v)) for name, v in views.items()}

    def _views(self, observed: np.ndarray, expected: np.ndarray) -> dict[str, tuple[float, float]]:
        """(observed, expected) per view of (hours, segments) arrays: total, segments, 6-hour blocks."""
        out: dict[str, tuple[float, float]] = {"": (float(observed.sum()), float(expected.sum()))}
        for j, s in enumerate(self.segments):
            out[f"{self.segment_field}={s}"] = (float(observed[:, j].sum()), float(expected[:, j].sum()))
        for b in range(0, 24, BLOCK_HOURS):
            name = f"local {b:02d}-{b + BLOCK_HOURS:02d}"
            out[name] = (float(observed[b : b + BLOCK_HOURS].sum()), float(expected[b : b + BLOCK_HOURS].sum()))
        return out


def judged_span(start: datetime, end: datetime, watermark: datetime | None) -> tuple[datetime, datetime, bool]:
    """[start, end) clipped to the hours the feed has reached (`watermark`: the latest event the log
    holds, or now; its hour counts as reached). Returns (start, judged end, still open)."""
    if watermark is None or watermark >= end:
        return start, end, False
    reached = watermark.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return start, max(start, min(end, reached)), True


def volume_signals(
    ref: VolumeReference,
    arrivals: Mapping[tuple[datetime, str], int],
    refused: int,
    start: datetime,
    end: datetime,
    *,
    watermark: datetime | None = None,
) -> tuple[list[Signal], dict[str, object]]:
    """The volume signals of the event-time window [start, end) (UTC-aware).

    `arrivals`: served records per (UTC hour, segment value); `refused`: records refused at the door
    whose event time falls in the window (added to the total only: the door keeps no segment).
    Returns (signals, details for the run record)."""
    s, e, still_open = judged_span(start, end, watermark)
    tz = ZoneInfo(ref.timezone)
    first = s.replace(minute=0, second=0, microsecond=0)
    hours = []
    t = first
    while t < e:
        hours.append(t)
        t += timedelta(hours=1)
    details: dict[str, object] = {"judged_from": s.isoformat(), "judged_to": e.isoformat(), "open": still_open}
    if not hours:
        return [], {**details, "note": "no hour of the window has been reached yet"}
    table = ref.table()
    seg_index = {v: j for j, v in enumerate(ref.segments)}
    obs = np.zeros((24, len(ref.segments)))
    exp = np.zeros((24, len(ref.segments)))
    other = 0.0  # served records of a segment the reference never saw (counted in the total)
    for h in hours:
        local = h.astimezone(tz)
        row = table[local.weekday(), local.hour]
        if np.isnan(row).any():
            return [], {**details, "note": f"the reference has no {local:%A}"}
        exp[local.hour] += row
    for (h, seg), n in arrivals.items():
        if not (first <= h < e):
            continue
        j = seg_index.get(seg)
        if j is None:
            other += n
        else:
            obs[h.astimezone(tz).hour, j] += n
    null = ref.null()
    views = ref._views(obs, exp)
    total_o, total_e = views[""]
    if still_open and refused:
        # the door books refused records by event hour but the window only by its total: in a window
        # judged through its watermark they cannot be placed before or after it, so they are left out
        details["refused_not_placed"] = int(refused)
        refused = 0
    views[""] = (total_o + other + refused, total_e)
    share = views[""][0] / total_e if total_e else math.inf
    level = share >= SAMPLE_BELOW
    details.update(arrived=int(views[""][0]), expected=round(total_e, 1), refused=int(refused), level_judged=level)
    what = f"{len(hours)} h from {s.astimezone(tz):%a %Y-%m-%d %H:%M} local" + (" (window still open)" if still_open else "")
    if not level:
        # a sample: each view against its share of what arrived (served: the door keeps no segment
        # or hour), with the sample's own Poisson noise on top of the null
        details["note"] = f"{share:.1%} of the expected records: read as a sample, its level not judged"
        what += f", as shares of a sample ({share:.1%} of the expected)"
        k = total_o / total_e if total_e else 0.0
        views = {n: (o, x * k) for n, (o, x) in views.items() if n}
    out = []
    for name, (o, x) in views.items():
        if x < MIN_EXPECTED or name not in null:
            continue
        centre, scale = null[name]
        if not level:
            scale = math.hypot(scale, 1.0 / math.sqrt(x + 1.0))
        lr = float(_log_ratio(o, x))
        z = (lr - centre) / scale
        kind = "drop" if z < 0 else "spike"
        served = f" (incl. {refused} refused at the door)" if not name and refused else ""
        detail = (
            f"{kind}: {o:.0f} records arrived{served} vs {x:.0f} expected over {what}, ratio {math.exp(lr):.2f}; "
            f"no-drift log ratio {centre:+.3f} +- {scale:.3f} (reference days held out), z {z:+.1f}"
        )
        value = abs(z)
        if abs(lr - centre) < -math.log(1.0 - MIN_CHANGE):
            value = 0.0
            detail += f"; a change under {MIN_CHANGE:.0%} is not judged (monitoring.volume.MIN_CHANGE)"
        out.append(Signal(SIGNAL, name or None, value, detail))
    return out, details
