"""The volume signal on synthetic traffic: a frozen hours-of-week reference, a window's arrivals."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from monitoring.policy import load_policy
from monitoring.volume import VolumeReference, judged_span, volume_signals

TZ = ZoneInfo("America/New_York")
SEGMENTS = ("EWR", "JFK", "LGA")
HOURLY = np.array([0, 0, 0, 0, 0, 5, 60, 55, 70, 50, 40, 40, 45, 50, 50, 60, 65, 60, 55, 55, 40, 27, 7, 2], dtype=float)
WEEKDAY = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.78, 0.92])
SHARE = np.array([0.4, 0.3, 0.3])


def traffic(rng: np.random.Generator, day: date) -> np.ndarray:
    """(24, segments) Poisson counts of one local day."""
    lam = HOURLY[:, None] * WEEKDAY[day.weekday()] * SHARE[None, :] * 1.1
    return rng.poisson(lam).astype(float)


@pytest.fixture(scope="module")
def ref() -> VolumeReference:
    rng = np.random.default_rng(0)
    days = [date(2013, 1, 1) + timedelta(days=i) for i in range(56)]
    d = {
        "timezone": "America/New_York",
        "segment_field": "origin",
        "segments": list(SEGMENTS),
        "days": [x.isoformat() for x in days],
        "counts": np.stack([traffic(rng, x) for x in days]).astype(int).tolist(),
    }
    out = VolumeReference.from_dict(d)
    assert out is not None
    return out


def arrivals_of(day: date, counts: np.ndarray) -> dict[tuple[datetime, str], int]:
    out = {}
    for h in range(24):
        t = datetime(day.year, day.month, day.day, h, tzinfo=TZ).astimezone(UTC)
        for j, s in enumerate(SEGMENTS):
            if counts[h, j]:
                out[(t, s)] = int(counts[h, j])
    return out


def bounds(day: date) -> tuple[datetime, datetime]:
    lo = datetime(day.year, day.month, day.day, tzinfo=TZ).astimezone(UTC)
    return lo, lo + timedelta(days=1)


DAY = date(2013, 4, 3)  # a Wednesday the reference never saw


def by_feature(signals: list) -> dict:
    return {s.feature: s for s in signals}


def test_a_normal_day_is_within_the_null(ref: VolumeReference) -> None:
    rng = np.random.default_rng(1)
    for k in range(7):
        day = DAY + timedelta(days=k)
        sig, det = volume_signals(ref, arrivals_of(day, traffic(rng, day)), 0, *bounds(day), watermark=bounds(day)[1])
        assert sig and max(s.value for s in sig) < 4.0, [(s.feature, s.value) for s in sig]
        assert det["open"] is False


def test_one_origin_gone_names_the_origin(ref: VolumeReference) -> None:
    c = traffic(np.random.default_rng(2), DAY)
    c[:, 1] = 0
    sig = by_feature(volume_signals(ref, arrivals_of(DAY, c), 0, *bounds(DAY))[0])
    assert sig["origin=JFK"].value > 20 and sig["origin=JFK"].detail.startswith("drop")
    assert sig[None].value > 5  # a third of the day's total is gone too
    assert sig["origin=EWR"].value < 4


def test_a_drop_a_spike_and_a_gap(ref: VolumeReference) -> None:
    rng = np.random.default_rng(3)
    c = traffic(rng, DAY)
    dropped = rng.binomial(c.astype(int), 0.6).astype(float)  # 40 % of records lost
    total = by_feature(volume_signals(ref, arrivals_of(DAY, dropped), 0, *bounds(DAY))[0])[None]
    assert total.value > 5 and total.detail.startswith("drop") and "ratio 0.5" in total.detail  # 529 of 905
    spike = by_feature(volume_signals(ref, arrivals_of(DAY, 2 * c), 0, *bounds(DAY))[0])[None]
    assert spike.value > 5 and spike.detail.startswith("spike")
    gap = c.copy()
    gap[12:18] = 0
    sig = by_feature(volume_signals(ref, arrivals_of(DAY, gap), 0, *bounds(DAY))[0])
    assert sig["local 12-18"].value > 10 and sig["local 06-12"].value < 4


def test_a_change_under_a_quarter_is_not_judged_however_unlikely(ref: VolumeReference) -> None:
    """A storm's cancellations (18 % of the day) are beyond the warning z of a synthetic reference's
    Poisson null, but a lost or doubled feed is 30 % and more: under MIN_CHANGE the value is 0 and the
    detail says why; 30 % lost is judged."""
    from monitoring.volume import MIN_CHANGE

    assert MIN_CHANGE == 0.25
    rng = np.random.default_rng(9)
    c = traffic(rng, DAY)
    storm = by_feature(volume_signals(ref, arrivals_of(DAY, rng.binomial(c.astype(int), 0.82).astype(float)), 0, *bounds(DAY))[0])
    z = float(storm[None].detail.split("z ")[-1].split(";")[0])
    assert z < -4 and storm[None].value == 0.0 and "under 25% is not judged" in storm[None].detail
    lost = by_feature(volume_signals(ref, arrivals_of(DAY, rng.binomial(c.astype(int), 0.7).astype(float)), 0, *bounds(DAY))[0])
    assert lost[None].value > 5 and "not judged" not in lost[None].detail


def test_refused_records_count_as_arrived(ref: VolumeReference) -> None:
    c = traffic(np.random.default_rng(4), DAY)
    served = np.floor(c * 0.5)
    refused = int(c.sum() - served.sum())
    alone = by_feature(volume_signals(ref, arrivals_of(DAY, served), 0, *bounds(DAY))[0])[None]
    both = by_feature(volume_signals(ref, arrivals_of(DAY, served), refused, *bounds(DAY))[0])[None]
    assert alone.value > 5 and both.value < 4 and f"incl. {refused} refused" in both.detail


def test_an_open_window_is_judged_through_its_watermark(ref: VolumeReference) -> None:
    c = traffic(np.random.default_rng(5), DAY)
    c[15:] = 0  # the day is still going: nothing after 14:59 has happened yet
    lo, hi = bounds(DAY)
    watermark = datetime(DAY.year, DAY.month, DAY.day, 14, 40, tzinfo=TZ).astimezone(UTC)
    sig, det = volume_signals(ref, arrivals_of(DAY, c), 0, lo, hi, watermark=watermark)
    assert det["open"] is True and max(s.value for s in sig) < 4.0, [(s.feature, s.value) for s in sig]
    assert "still open" in sig[0].detail
    closed, _ = volume_signals(ref, arrivals_of(DAY, c), 0, lo, hi, watermark=hi)
    assert max(s.value for s in closed) > 5  # the same data in a closed window is a drop
    assert judged_span(lo, hi, lo - timedelta(hours=3))[1] == lo  # nothing reached: nothing judged
    assert volume_signals(ref, {}, 0, lo, hi, watermark=lo - timedelta(hours=3))[0] == []


def test_a_week_window_and_the_policy(ref: VolumeReference) -> None:
    rng = np.random.default_rng(6)
    arr: dict = {}
    for k in range(7):
        day = DAY + timedelta(days=k)
        arr.update(arrivals_of(day, traffic(rng, day)))
    lo, hi = bounds(DAY)[0], bounds(DAY + timedelta(days=6))[1]
    sig = by_feature(volume_signals(ref, arr, 0, lo, hi)[0])
    assert sig[None].value < 4
    rule = next(r for r in load_policy().rules if r.signal == "volume_change")
    assert rule.asks == "data_broken" and rule.critical is not None and rule.critical <= 5.0


def test_no_reference_means_no_volume() -> None:
    assert VolumeReference.from_dict(None) is None and VolumeReference.from_dict({}) is None


def test_a_sample_of_the_feed_is_judged_by_its_mix_not_its_level(ref: VolumeReference) -> None:
    """A replay of 5 % of the traffic is not a 95 % drop; an origin missing from it still shows."""
    rng = np.random.default_rng(7)
    arr: dict = {}
    gone: dict = {}
    for k in range(14):
        day = DAY + timedelta(days=k)
        c = rng.binomial(traffic(rng, day).astype(int), 0.05).astype(float)
        arr.update(arrivals_of(day, c))
        c[:, 2] = 0
        gone.update(arrivals_of(day, c))
    lo, hi = bounds(DAY)[0], bounds(DAY + timedelta(days=13))[1]
    sig, det = volume_signals(ref, arr, 0, lo, hi)
    assert det["level_judged"] is False and None not in by_feature(sig)
    assert max(s.value for s in sig) < 4.0, [(s.feature, s.value) for s in sig]
    lga = by_feature(volume_signals(ref, gone, 0, lo, hi)[0])["origin=LGA"]
    assert lga.value > 5 and "as shares of a sample" in lga.detail


def test_refused_records_are_not_placed_in_an_open_window(ref: VolumeReference) -> None:
    """The door's refusals are known for the window, not per hour: a window judged through its
    watermark cannot say which of them fall before it, so they do not inflate its level."""
    c = traffic(np.random.default_rng(8), DAY)
    c[12:] = 0
    lo, hi = bounds(DAY)
    watermark = datetime(DAY.year, DAY.month, DAY.day, 11, 30, tzinfo=TZ).astimezone(UTC)
    sig, det = volume_signals(ref, arrivals_of(DAY, c), 5000, lo, hi, watermark=watermark)
    assert det["refused_not_placed"] == 5000 and max(s.value for s in sig) < 4.0


def test_arrival_counts_are_keyed_per_utc_hour_and_segment():
    """`WindowAccumulator._count_arrivals` (issue 15: index levels converted once) keys each
    (UTC hour, segment) as an aware datetime and a str, summed over chunks, as the per-group loop did."""
    import pandas as pd

    from monitoring.monitor import WindowAccumulator

    acc = WindowAccumulator.__new__(WindowAccumulator)
    acc.segment_field, acc.arrivals = "origin", {}
    t = pd.to_datetime(["2013-04-01 10:05", "2013-04-01 10:55", "2013-04-01 11:00", "2013-04-01 10:10"], utc=True)
    chunk = pd.DataFrame({"event_time": t, "origin": pd.array(["JFK", "JFK", None, "LGA"], dtype="string")})
    acc._count_arrivals(chunk)
    acc._count_arrivals(chunk.iloc[:1])
    h10, h11 = datetime(2013, 4, 1, 10, tzinfo=UTC), datetime(2013, 4, 1, 11, tzinfo=UTC)
    assert acc.arrivals == {(h10, "JFK"): 3, (h11, ""): 1, (h10, "LGA"): 1}
    assert all(type(k[1]) is str and k[0].utcoffset() is not None for k in acc.arrivals)
    # naive ISO strings (a row path) are read as UTC, as before
    acc2 = WindowAccumulator.__new__(WindowAccumulator)
    acc2.segment_field, acc2.arrivals = "origin", {}
    acc2._count_arrivals(chunk.assign(event_time=t.strftime("%Y-%m-%d %H:%M:%S")))
    assert acc2.arrivals == acc.arrivals | {(h10, "JFK"): 2}


def _arrivals_by_groupby(chunks, segment_field):
    """The definition `_count_arrivals` had before issue 15's integer keys: a groupby per chunk."""
    import pandas as pd

    from monitoring.quality import utc_times

    out: dict = {}
    for chunk in chunks:
        hour = utc_times(chunk["event_time"]).dt.floor("h")
        seg = chunk[segment_field].astype("string").fillna("") if segment_field in chunk else ""
        counts = pd.DataFrame({"h": hour, "s": seg}).groupby(["h", "s"]).size()
        for (h, s), n in counts.items():
            out[(h.to_pydatetime(), str(s))] = out.get((h.to_pydatetime(), str(s)), 0) + int(n)
    return out


def test_arrival_counts_match_the_groupby_definition_key_for_key_and_in_order():
    import numpy as np
    import pandas as pd

    from monitoring.monitor import WindowAccumulator

    rng = np.random.default_rng(0)
    n = 3_000
    t = pd.Series(pd.to_datetime("1969-12-30", utc=True) + pd.to_timedelta(rng.integers(0, 5 * 86_400, n), unit="s"))
    t[rng.random(n) < 0.05] = pd.NaT  # no event time: in no hour
    values = np.array(["JFK", "LGA", "", None, np.nan, 1, "1", "EWR"], dtype=object)
    seg = values[rng.integers(0, values.size, n)]
    frames = [
        pd.DataFrame({"event_time": t, "origin": seg}),  # object: NA, "", 1 and "1" (both print "1")
        pd.DataFrame({"event_time": t, "origin": pd.array(seg.astype(str), dtype="string")}),
        pd.DataFrame({"event_time": t, "origin": pd.Categorical(["b", "a", None] * (n // 3))}),
        pd.DataFrame({"event_time": t}),  # no segment column: every row in segment ""
        pd.DataFrame({"event_time": t.dt.strftime("%Y-%m-%d %H:%M:%S"), "origin": seg}),  # naive ISO strings
    ]
    for frame in frames:
        chunks = [frame.iloc[:1000], frame.iloc[1000:1001], frame.iloc[1001:]]
        acc = WindowAccumulator.__new__(WindowAccumulator)
        acc.segment_field, acc.arrivals = "origin", {}
        for chunk in chunks:
            acc._count_arrivals(chunk)
        want = _arrivals_by_groupby(chunks, "origin")
        assert list(acc.arrivals.items()) == list(want.items())
        assert all(type(k[1]) is str and k[0].utcoffset() is not None for k in acc.arrivals)
