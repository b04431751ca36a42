"""Data quality of a window, against the reference: the signals drift tests cannot carry.

Drift tests drop NaN and compare shapes, so a broken sensor (a missing-value spike) and a unit
change that keeps the shape (°F -> °C) can pass them. These checks carry those faults:

- `missing_rate_increase`: window missing rate minus reference missing rate, per field;
- `beyond_reference_rate`: share of values outside the reference [min, max] (the model
  extrapolates there; the contract's physical range is enforced at the door already);
- `unseen_category_rate`: share of category values never seen in the reference;
- `unit_change`: 1.0 when the window sits on a conversion of the reference into another unit,
  for every conversion the contract's unit admits (pint, `data_contracts.contract.unit_conversions`):
  first the feed's lattice (`lattice`: readings off it that a conversion carries exactly back onto
  it, however few, in any season), then the reference's grid of reported values (the 2013 feeds
  report °C and knots converted to °F and mph, inches in hundredths) carried through the
  conversion, or, when the window has too
  few distinct values or the field no grid, its quantiles (only the non-zero part of a
  zero-inflated field such as precipitation, whose zeros no scale change can move);
- `stuck_value_share`: share of the window's non-missing values equal to its most common value,
  minus the same share in the reference;
- `stuck_run_ratio`: the longest run of one identical reading at one site (airport) over
  consecutive hours in the window, over the longest run in the reference (at least a day). A frozen sensor
  repeats its reading for longer than the weather ever did. Only for fields read once per site-hour
  (weather). A run at the field's resting value (the reference's modal reading, when most site-hours
  read it: precipitation 0, visibility 10 miles) counts only its corroborated hours, those in which
  another site read something else: a dry spell reads 0 at every airport at once and is weather; a
  sensor frozen at 0 while it rains at the other airports is not. The reference's longest run is
  counted the same way. Consequence, stated not hidden: a resting value frozen at every site at once
  (the whole feed of one field) is, by this field alone, a drought or a clear spell;
- `duplicate_share`: share of the window's records that repeat an earlier record exactly
  (every contract field equal: the same prediction input sent again).

Pure: arrays and small mappings in, `Signal`s out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from data_contracts.contract import Contract, Conversion, unit_conversions
from monitoring.policy import Signal
from monitoring.sampling import Reservoir, row_hashes, row_keys

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
GRID_MAX = 400  # a field with more distinct reference values is treated as continuous (no grid)
MAX_DIVISOR = 10  # a lattice step is the smallest gap between readings divided by at most this (`lattice`)
P_COINCIDENCE = 0.01  # a conversion that lands finer readings on the lattice more often proves nothing (`coincidence`)
REFUTE_SHARE = 0.9  # a true conversion carries every reading back near the lattice; by chance ~10 % land there
NEAR = 0.05  # of a step: "near" a grid or lattice point (a converted feed that rounds still lands there)
EXACT = 1e-3  # of a lattice step: "the same reading" after a conversion (float error is ~1e-12 of a step)
ZERO_INFLATED = 0.5  # a zero share above this: the unit check looks at the non-zero part
MIN_RUN_HOURS = 24.0  # the stuck-run ratio is against at least one day
RESTING_SHARE = 0.5  # a reading on most of the reference's site-hours is the field's resting value
MAX_GAP_HOURS = 8  # longer than the night without departures (about 00:00-05:00 local)
SITE = "origin"  # weather is read once per (site, hour): the key of the stuck-run check


@dataclass(frozen=True)
class FieldReference:
    """What quality needs to know of one field in the reference window."""

    name: str
    kind: str  # numeric | categorical
    missing_rate: float
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    quantiles: tuple[float, ...] = ()  # at QUANTILES
    categories: frozenset[str] = frozenset()
    top_share: float = 0.0  # share of the most common non-missing value
    grid: tuple[float, ...] = ()  # the distinct reported values, when there are at most GRID_MAX
    # (origin, step) every reported value sits on (`lattice`); (): none; None: a model stored before it
    lattice: tuple[float, ...] | None = None
    zero_share: float = 0.0  # share of non-missing values equal to 0
    nonzero_quantiles: tuple[float, ...] = ()  # at QUANTILES, of the non-zero values
    max_run_hours: float | None = None  # longest identical reading at one site (None: not a site-hour field)
    # The field's resting value (None: it has none, or the reference predates it and its
    # max_run_hours counted every hour of a run: such a reference keeps being judged that way).
    resting_value: float | None = None


def utc_times(values: pd.Series) -> pd.Series:
    """`pd.to_datetime(values, utc=True)`, without its cost when the values already are UTC
    datetimes (the log's columns are): to_datetime walks every element to decide on a cache."""
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC":
        return values
    return pd.to_datetime(values, utc=True)


def site_readings(frame: pd.DataFrame, name: str, time: str, site: str) -> pd.DataFrame | None:
    """One row per (site, hour) with the field's reading, or None when the field is not read once
    per site-hour (more than 1 % of the site-hours carry several values: a per-flight field)."""
    if time not in frame or site not in frame or name not in frame:
        return None
    t = utc_times(frame[time])
    hours = (t.astype("int64") // 3_600_000_000_000).to_numpy()
    df = pd.DataFrame({"site": frame[site].astype(str).to_numpy(), "hour": hours, "v": frame[name].to_numpy()})
    per = df.groupby(["site", "hour"], sort=False)["v"].nunique(dropna=False)
    if len(per) == 0 or float((per > 1).mean()) > 0.01:
        return None
    return df.drop_duplicates(["site", "hour"])


def _others_off(sh: pd.DataFrame, resting: float) -> np.ndarray:
    """Per row of `sh` (site, hour, v): True when another site read something other than `resting`
    (and not missing) in the same hour."""
    v = pd.to_numeric(pd.Series(sh["v"].to_numpy()), errors="coerce").to_numpy(dtype="float64")
    off = ~np.isnan(v) & ~np.isclose(v, resting, rtol=0.0, atol=1e-9)
    per_hour = pd.Series(off.astype("int64")).groupby(sh["hour"].to_numpy()).transform("sum").to_numpy()
    return np.asarray(per_hour - off > 0)


def longest_run_hours(site_hours: pd.DataFrame, resting: float | None = None) -> tuple[float, str, object]:
    """(hours, site, value) of the longest run of one identical non-missing reading at a site over
    its consecutive observed hours; a missing reading breaks a run, and so does a gap of more than
    MAX_GAP_HOURS with no traffic (a window of scattered days is not one run). Shorter gaps (the
    night, when no flight leaves) between two equal readings count: the sensor stayed on that value.

    With `resting` (the field's resting value), a run at that value counts only its corroborated
    hours: the observed hours of the run in which another site read a different, non-missing value."""
    best: tuple[float, str, object] = (0.0, "", None)
    sh = site_hours.sort_values(["site", "hour"]).reset_index(drop=True)
    corroborated = _others_off(sh, resting) if resting is not None else None
    for site, g in sh.groupby("site", sort=False):
        v = g["v"].to_numpy()
        h = g["hour"].to_numpy()
        same = np.zeros(len(v), dtype=bool)
        if len(v) > 1:
            same[1:] = pd.Series(v[1:]).eq(pd.Series(v[:-1])).to_numpy() & pd.notna(v[1:]) & (np.diff(h) <= MAX_GAP_HOURS)
        starts = np.flatnonzero(~same)
        ends = np.append(starts[1:] - 1, len(v) - 1)
        hours = np.where(pd.notna(v[starts]), h[ends] - h[starts] + 1, 0)
        if corroborated is not None and len(v):
            first = pd.to_numeric(pd.Series(v[starts]), errors="coerce").to_numpy(dtype="float64")
            at_rest = np.isclose(first, float(resting), rtol=0.0, atol=1e-9)  # type: ignore[arg-type]
            cum = np.concatenate([[0], np.cumsum(corroborated[g.index.to_numpy()])])
            hours = np.where(at_rest, cum[ends + 1] - cum[starts], hours)
        k = int(np.argmax(hours)) if hours.size else 0
        if hours.size and float(hours[k]) > best[0]:
            best = (float(hours[k]), str(site), v[starts[k]])
    return best


def resting_value(site_hours: pd.DataFrame) -> float | None:
    """The reading on more than RESTING_SHARE of the non-missing site-hours, if there is one."""
    v = pd.to_numeric(site_hours["v"], errors="coerce").dropna()
    if v.empty:
        return None
    shares = v.value_counts(normalize=True)
    return float(shares.index[0]) if float(shares.iloc[0]) > RESTING_SHARE else None


def reference_for(
    frame: pd.DataFrame,
    name: str,
    kind: str,
    unit: str | None = None,
    *,
    time: str | None = "time_hour",
    site: str | None = SITE,
) -> FieldReference:
    """Build a `FieldReference` from a reference column (used at training time and in tests).

    `time` and `site` (when those columns are in `frame`) give the stuck-run reference of a field
    read once per site-hour."""
    col = frame[name]
    miss = float(col.isna().mean())
    present = col.dropna()
    top = float(present.value_counts(normalize=True).iloc[0]) if len(present) else 0.0
    if kind == "numeric":
        v = present.to_numpy(dtype="float64")
        qs = tuple(float(q) for q in np.quantile(v, QUANTILES)) if v.size else ()
        nz = v[v != 0]
        distinct = np.unique(v)
        run, rest = None, None
        if time is not None and site is not None:
            sh = site_readings(frame, name, time, site)
            if sh is not None:
                rest = resting_value(sh)
                run = longest_run_hours(sh, rest)[0]
        return FieldReference(
            name,
            kind,
            miss,
            unit,
            float(v.min()) if v.size else None,
            float(v.max()) if v.size else None,
            qs,
            top_share=top,
            grid=tuple(float(x) for x in distinct) if distinct.size <= GRID_MAX else (),
            lattice=lattice(distinct) if v.size else (),
            zero_share=float(np.mean(v == 0)) if v.size else 0.0,
            nonzero_quantiles=tuple(float(q) for q in np.quantile(nz, QUANTILES)) if nz.size else (),
            max_run_hours=run,
            resting_value=rest,
        )
    return FieldReference(name, kind, miss, categories=frozenset(str(c) for c in present.unique()), top_share=top)


def _on_grid(values: np.ndarray, grid: np.ndarray, tol: float) -> np.ndarray:
    """Mask of `values` within `tol` of a point of the sorted `grid`."""
    i = np.clip(np.searchsorted(grid, values), 1, len(grid) - 1)
    return np.minimum(np.abs(values - grid[i - 1]), np.abs(values - grid[i])) <= tol


def lattice(values: np.ndarray) -> tuple[float, ...]:
    """The coarsest (origin, step) with every distinct reported value at origin + k * step, k an integer.

    A feed reports on a lattice: rain in hundredths of an inch (0, 0.01), pressure in tenths of a
    millibar, and the 2013 temperatures are tenths of a degree Celsius converted to Fahrenheit
    (32 + 0.18 k: origin 0.14, step 0.18). The step tried is the smallest gap between readings
    divided by 1..MAX_DIVISOR; (): the readings are on no such lattice (a continuous feed)."""
    v = np.unique(values[np.isfinite(values)])
    if v.size < 3:
        return ()
    gap = float(np.min(np.diff(v)))
    for m in range(1, MAX_DIVISOR + 1):
        step = gap / m
        origin = float(v[0] - step * np.floor(v[0] / step))
        if not _off_lattice(v, (origin, step)).any():
            return (origin, step)
    return ()


def _lattice_offset(values: np.ndarray, lat: tuple[float, ...]) -> np.ndarray:
    """How far each of `values` is from the nearest point of the lattice (origin, step), in steps."""
    q = (values - lat[0]) / lat[1]
    return np.abs(q - np.round(q))


def _off_lattice(values: np.ndarray, lat: tuple[float, ...]) -> np.ndarray:
    """Mask of `values` farther than EXACT of a step from the lattice."""
    return _lattice_offset(values, lat) > EXACT


def _back(c: Conversion, values: np.ndarray) -> np.ndarray:
    """`values` carried back through `c` into the reference's unit."""
    return (values - c.offset) / c.scale


def _typicality(ref: FieldReference, w: np.ndarray, c: Conversion) -> float:
    """How near the reference's middle the window's distinct values `w` land carried back through `c`
    (the non-zero part's, for a zero-inflated field), to choose between conversions that all explain
    its readings (0.508 is 0.02 inch in mm and 0.2 inch in statfarad): small rains are common."""
    qs = ref.nonzero_quantiles if ref.zero_share > ZERO_INFLATED else ref.quantiles
    if len(qs) != len(QUANTILES):
        return 0.0
    spread = max(qs[-1] - qs[0], 1e-9)
    return -float(np.mean(np.abs(_back(c, w) - qs[len(qs) // 2]))) / spread


@lru_cache(maxsize=4096)
def coincidence(c: Conversion, lat: tuple[float, ...]) -> float:
    """The share of readings finer than the lattice (its points refined a hundredfold) that `c`,
    carried back, lands on the lattice by chance. A reference of few readings can have a coarser
    lattice than its feed (one route's visibility: 1, 1.5, 2, ... 10 miles, lattice 0.25), and a
    finer real reading (0.12) lands back on it through a conversion of a "nice" scale (kilochains,
    x0.08: 1.5) or through any power of ten (hectomiles: 1 of 1). Such a landing is no evidence."""
    j = np.arange(1, 10_000)
    j = j[j % 100 != 0]
    return float((~_off_lattice(_back(c, lat[0] + lat[1] / 100 * j), lat)).mean())


def _lattice_test(
    ref: FieldReference, w: np.ndarray, lat: tuple[float, ...], conversions: Sequence[Conversion]
) -> tuple[tuple[float, str] | None, list[Conversion]]:
    """A feed never sends a reading off its lattice (`lattice`: rain in hundredths of an inch).

    Returns (a verdict or None, the conversions still possible). Readings off the lattice (`foreign`)
    that are lattice readings carried through a conversion (to EXACT of a step) decide, with no
    minimum count and whatever the season, when they are at least as many as the readings only the
    reference's unit explains: a day with one rainy reading of 0.508 (0.02 inch in millimetres), a
    July day in Celsius that a January reference's grid does not reach. A window with no foreign
    reading refutes every conversion that would carry more than a tenth of its readings, carried
    back, off the lattice (to the grid test's 5 % of a step, so a converted feed that rounds to
    a few hundredths of a step is not refuted; by chance about a tenth of readings land that near):
    a pressure window 2 % above the reference is not in centimetres of water."""
    foreign = _off_lattice(w, lat)
    if foreign.any():
        fits = []
        for c in conversions:
            if coincidence(c, lat) > P_COINCIDENCE:
                continue
            on_back = ~_off_lattice(_back(c, w), lat)
            # readings only the reference's unit explains (0, or 2.54 mm = 0.1 inch, are on both)
            plain = int((~foreign & ~on_back).sum())
            if on_back[foreign].all() and foreign.sum() >= plain:
                fits.append(c)
        if fits:
            c = max(fits, key=lambda c: _typicality(ref, w, c))
            why = (
                f"{int(foreign.sum())} distinct readings off the reference's lattice ({lat[0]:.4g} + k x {lat[1]:.4g}), "
                f"each a reading on it in {c.to} (x{c.scale:.4g}{c.offset:+.4g})"
            )
            return (1.0, why), []
        return None, list(conversions)
    moved = w[w != 0]
    if moved.size < 3:
        return None, list(conversions)
    kept = [c for c in conversions if (_lattice_offset(_back(c, moved), lat) <= NEAR).mean() >= REFUTE_SHARE]
    return None, kept


def _grid_test(ref: FieldReference, w: np.ndarray, conversions: Sequence[Conversion]) -> tuple[float, str] | None:
    """The reference's reported values carried through each conversion. None: inconclusive.

    Only the window's distinct values `w` count (a reading is shared by every flight of its
    site-hour), and only those on exactly one of the two grids (0 is on both for any scale)."""
    grid = np.asarray(ref.grid, dtype="float64")
    if grid.size < 2:
        return None
    step = float(np.min(np.diff(grid)))
    tol = NEAR * step
    on_ref = _on_grid(w, grid, tol)
    best: tuple[float, int, Conversion] | None = None
    for c in conversions:
        cg = np.sort(c.apply(grid))
        on_c = _on_grid(w, cg, abs(c.scale) * tol)
        telling = on_c ^ on_ref
        n = int(telling.sum())
        if n < 3:
            continue
        share = float((on_c & ~on_ref).sum()) / n
        if best is None or (share, n) > (best[0], best[1]):
            best = (share, n, c)
    if best is None:
        return None
    share, n, c = best
    ref_share = float(on_ref.mean())
    if share >= 0.9 and ref_share <= 0.5:
        why = (
            f"{share:.0%} of {n} telling distinct values sit on the reference's reported values in {c.to} "
            f"(x{c.scale:.4g}{c.offset:+.4g}); {ref_share:.0%} on them in {c.unit}"
        )
        return 1.0, why
    return 0.0, ""


def _quantile_test(ref: FieldReference, values: np.ndarray, conversions: Sequence[Conversion]) -> tuple[float, str]:
    qs = ref.quantiles
    if ref.zero_share > ZERO_INFLATED:  # a scale change cannot move a zero: compare the rest
        qs, values = ref.nonzero_quantiles, values[values != 0]
    if len(qs) != len(QUANTILES) or values.size < 50:
        return 0.0, ""
    qw = np.quantile(values, QUANTILES)
    qr = np.asarray(qs)
    spread = max(qr[-1] - qr[0], 1e-9)
    d_same = float(np.mean(np.abs(qw - qr)) / spread)
    best, best_d = None, math.inf
    for c in conversions:
        qc = c.apply(qr)
        d = float(np.mean(np.abs(qw - qc)) / max(abs(qc[-1] - qc[0]), 1e-9))
        if d < best_d:
            best, best_d = c, d
    # The window must sit clearly off the reference AND clearly on a converted reference.
    if best is not None and d_same > 0.75 and best_d < 0.35 and best_d < d_same / 3:
        return 1.0, f"quantiles match {best.unit} -> {best.to} (distance {best_d:.2f} vs {d_same:.2f} unconverted)"
    return 0.0, ""


def unit_change(ref: FieldReference, values: np.ndarray, conversions: Sequence[Conversion]) -> tuple[float, str]:
    """(1.0, why) when `values` (non-missing, one window) look like the reference in another unit."""
    if not conversions or values.size == 0:
        return 0.0, ""
    w = np.unique(values)
    lat = ref.lattice if ref.lattice is not None else lattice(np.asarray(ref.grid, dtype="float64"))
    if lat:
        verdict, conversions = _lattice_test(ref, w, lat, conversions)
        if verdict is not None:
            return verdict
        if not conversions:
            return 0.0, ""
    found = _grid_test(ref, w, conversions)
    if found is not None:
        return found
    return _quantile_test(ref, values, conversions)


def field_conversions(
    references: Sequence[FieldReference], contract: Contract | None = None
) -> dict[str, tuple[Conversion, ...]]:
    """The unit conversions `unit_change` tries, per numeric field with a unit: the contract's (its
    valid range bounds them) when it has the field, else those the reference's observed range admits."""
    out: dict[str, tuple[Conversion, ...]] = {}
    for r in references:
        if r.kind != "numeric" or not r.unit:
            continue
        if contract is not None and r.name in contract.field_names:
            out[r.name] = contract.field(r.name).conversions()
        elif r.min is not None and r.max is not None:
            out[r.name] = unit_conversions(r.unit, r.min, r.max)
    return out


class QualityAccumulator:
    """Quality statistics gathered chunk by chunk (memory bounded by the sample size, the number of
    distinct values per field, the site-hours and 8 bytes per record for duplicates, not by the
    width of the window).

    `contract` (optional) gives each field's valid range, which bounds the unit conversions
    considered; without it the reference's observed range does. `time` and `site` name the
    columns of the stuck-run check."""

    def __init__(
        self,
        references: Sequence[FieldReference],
        *,
        contract: Contract | None = None,
        sample_size: int = 50_000,
        seed: int = 0,
        time: str = "time_hour",
        site: str = SITE,
        shared_samples: Mapping[str, Reservoir] | None = None,
    ) -> None:
        """`shared_samples`: reservoirs (same size and seed) that another accumulator fills from the
        very same chunks, e.g. `DriftAccumulator.samples`: the drift pass already samples every
        numeric field's values, so quality reads that sample instead of drawing an identical one."""
        self.references = list(references)
        self.n = 0
        self.missing = {r.name: 0 for r in self.references}
        self.beyond = {r.name: 0 for r in self.references}
        self.unseen = {r.name: 0 for r in self.references}
        self.absent = {r.name: False for r in self.references}
        # Per field, (distinct values, their counts) of each chunk or merged part, summed when read
        # (`counts`): one group-by per field, not an index alignment per chunk and part.
        self._count_parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {r.name: [] for r in self.references}
        shared = shared_samples or {}
        self._own = {r.name for r in self.references if r.kind == "numeric" and r.name not in shared}
        self.seed = seed
        self.samples = {
            r.name: shared[r.name] if r.name in shared else Reservoir(sample_size) for r in self.references if r.kind == "numeric"
        }
        self.time, self.site = time, site
        # Per run-checked field, (site, hour, reading) arrays of the first reading of each site-hour
        # of every chunk or merged part, in row order.
        self.site_hours: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {
            r.name: [] for r in self.references if r.max_run_hours
        }
        self._hashes: list[np.ndarray] = []
        self.conversions = field_conversions(self.references, contract)

    def add(self, window: pd.DataFrame, factorized: Mapping[str, Any] | None = None, hashes: np.ndarray | None = None) -> None:
        """Fold one chunk in. One hashing pass per column (`pd.factorize`) gives the missing count,
        the count of every distinct value (-> the top share) and, for categories, the unseen count
        from the few distinct values instead of a per-row membership test. `factorized`: the drift
        pass's hashing of this same chunk (`DriftAccumulator.factorized`), reused, not redone.
        `hashes`: `sampling.row_hashes(window)`, when the caller already has them."""
        shared = factorized or {}
        if window.empty:
            return
        self.n += len(window)
        if hashes is None:
            hashes = row_hashes(window)
        self._hashes.append(hashes)
        keys = row_keys(hashes, self.seed) if self._own else np.empty(0)
        self._add_site_hours(window)
        for ref in self.references:
            if ref.name not in window:
                self.absent[ref.name] = True
                continue
            f = shared.get(ref.name)
            reuse = f is not None and f.rows == len(window) and f.numeric == (ref.kind == "numeric")
            col = window[ref.name]
            if ref.kind == "numeric" and (not reuse or ref.name in self._own):
                if col.dtype == object:
                    col = pd.to_numeric(col, errors="coerce")
                col = col.to_numpy(dtype="float64", na_value=np.nan)
            if reuse and f is not None:
                uniques, per_value = f.uniques, f.per_value
            else:
                codes, uniques = pd.factorize(col, use_na_sentinel=True)
                per_value = np.bincount(codes + 1, minlength=len(uniques) + 1)  # [missing, each distinct value]
            self.missing[ref.name] += int(per_value[0])
            if len(uniques) == 0:
                continue
            self._count_parts[ref.name].append((np.asarray(uniques), per_value[1:].astype("float64")))
            if ref.kind == "numeric":
                v = np.asarray(uniques, dtype="float64")
                if ref.min is not None and ref.max is not None:
                    self.beyond[ref.name] += int(per_value[1:][(v < ref.min) | (v > ref.max)].sum())
                if ref.name in self._own:
                    self.samples[ref.name].add(col, keys)  # the reservoir drops NaN itself
            else:
                cats = ref.categories
                unseen = np.fromiter((str(u) not in cats for u in uniques), dtype=bool, count=len(uniques))
                self.unseen[ref.name] += int(per_value[1:][unseen].sum())

    def _add_site_hours(self, window: pd.DataFrame) -> None:
        """Keep one reading per (site, hour) of every run-checked field: the reference decided
        which fields are read once per site-hour, so the first reading of the hour stands for it."""
        names = [n for n in self.site_hours if n in window]
        if not names or self.time not in window or self.site not in window:
            return
        t = utc_times(window[self.time])
        keyed = pd.DataFrame(
            {"site": window[self.site].astype(str).to_numpy(), "hour": (t.astype("int64") // 3_600_000_000_000).to_numpy()}
        )
        first = ~keyed.duplicated(["site", "hour"]).to_numpy()
        site, hour = keyed["site"].to_numpy()[first], keyed["hour"].to_numpy()[first]
        for n in names:
            self.site_hours[n].append((site, hour, window[n].to_numpy()[first]))

    def state(self) -> dict[str, Any]:
        """What was gathered, as plain data, for `merge_state` of another accumulator of the same
        references (a part of the window: `monitoring.monitor.WindowAccumulator.state`). Reservoirs
        shared with a drift accumulator are kept there, not twice here."""
        return {
            "n": self.n,
            "missing": dict(self.missing),
            "beyond": dict(self.beyond),
            "unseen": dict(self.unseen),
            "absent": dict(self.absent),
            "counts": {k: list(v) for k, v in self._count_parts.items()},
            "samples": {k: self.samples[k].state() for k in sorted(self._own)},
            "site_hours": {k: list(v) for k, v in self.site_hours.items()},
            "hashes": list(self._hashes),
        }

    def merge_state(self, part: Mapping[str, Any]) -> None:
        """Fold in the `state()` of the rows that follow those folded so far: the statistics of both
        together, exactly (the first reading of a site-hour stays the first)."""
        self.n += part["n"]
        for name in self.missing:
            self.missing[name] += part["missing"][name]
            self.beyond[name] += part["beyond"][name]
            self.unseen[name] += part["unseen"][name]
            self.absent[name] = self.absent[name] or part["absent"][name]
            self._count_parts[name] += part["counts"][name]
        for name, sample in part["samples"].items():
            self.samples[name].merge_state(sample)
        for name, parts in part["site_hours"].items():
            self.site_hours[name] += parts
        self._hashes += part["hashes"]

    @property
    def counts(self) -> dict[str, pd.Series]:
        """Per field, the count of each distinct non-missing value over the rows folded in so far."""
        out = {}
        for name, parts in self._count_parts.items():
            if len(parts) > 1:  # summed once, then kept as the one part
                summed = pd.Series(np.concatenate([c for _, c in parts]), index=np.concatenate([u for u, _ in parts]))
                summed = summed.groupby(level=0, sort=False).sum()
                parts[:] = [(summed.index.to_numpy(), summed.to_numpy())]
            out[name] = pd.Series(parts[0][1], index=parts[0][0]) if parts else pd.Series(dtype="float64")
        return out

    def duplicate_signal(self) -> Signal | None:
        if not self.n:
            return None
        h = np.sort(np.concatenate(self._hashes))
        repeats = int(np.count_nonzero(h[1:] == h[:-1]))
        return Signal(
            "duplicate_share", None, repeats / h.size, f"{repeats} of {h.size} records repeat an earlier record exactly"
        )

    def stuck_run_signal(self, ref: FieldReference) -> Signal | None:
        parts = self.site_hours.get(ref.name)
        if not parts or not ref.max_run_hours:
            return None
        sites, hrs, vals = (np.concatenate(c) for c in zip(*parts, strict=True))
        sh = pd.DataFrame({"site": sites, "hour": hrs, "v": vals}).drop_duplicates(["site", "hour"])
        hours, site, value = longest_run_hours(sh, ref.resting_value)
        # A run within one day is ordinary for any field (a calm night, a gust reported twice):
        # the ratio is against at least a day, so the signal speaks of multi-day freezes.
        base = max(ref.max_run_hours, MIN_RUN_HOURS)
        at_rest = ref.resting_value is not None and bool(value == ref.resting_value)
        how = " while another airport read otherwise" if at_rest else ""
        return Signal(
            "stuck_run_ratio",
            ref.name,
            hours / base,
            f"{hours:g} h of one reading ({value}) at {site}{how} vs at most {ref.max_run_hours:g} h in the reference",
        )

    def signals(self) -> list[Signal]:
        out: list[Signal] = []
        if self.n == 0:
            return out
        counts = self.counts
        dup = self.duplicate_signal()
        if dup is not None:
            out.append(dup)
        for ref in self.references:
            name = ref.name
            if self.absent[name]:
                out.append(Signal("missing_rate_increase", name, 1.0 - ref.missing_rate, "column absent"))
                continue
            miss = self.missing[name] / self.n
            out.append(
                Signal("missing_rate_increase", name, miss - ref.missing_rate, f"{miss:.1%} missing vs {ref.missing_rate:.1%}")
            )
            present = self.n - self.missing[name]
            if present == 0:
                continue
            top = float(counts[name].max()) / present
            out.append(
                Signal("stuck_value_share", name, top - ref.top_share, f"{top:.1%} of values equal vs {ref.top_share:.1%}")
            )
            run = self.stuck_run_signal(ref)
            if run is not None:
                out.append(run)
            if ref.kind == "numeric":
                if ref.min is not None and ref.max is not None:
                    out.append(
                        Signal("beyond_reference_rate", name, self.beyond[name] / present, f"outside [{ref.min:g}, {ref.max:g}]")
                    )
                flag, why = unit_change(ref, self.samples[name].values, self.conversions.get(name, ()))
                out.append(Signal("unit_change", name, flag, why))
            else:
                out.append(Signal("unseen_category_rate", name, self.unseen[name] / present, ""))
        return out


def quality_signals(
    references: Sequence[FieldReference], window: pd.DataFrame, *, contract: Contract | None = None
) -> list[Signal]:
    """Quality signals of `window` (raw contract fields) against `references` (one chunk)."""
    acc = QualityAccumulator(references, contract=contract)
    acc.add(window)
    return acc.signals()


def reference_to_mapping(ref: FieldReference) -> dict[str, Any]:
    """The JSON form of `ref` (stored with the model; `references_from_mapping` reads it back)."""
    d = asdict(ref)
    d["categories"] = sorted(d["categories"])
    return d


def references_from_mapping(doc: Mapping[str, Mapping[str, Any]]) -> list[FieldReference]:
    """`FieldReference`s from their JSON form (stored with the model)."""
    out = []
    for name, d in doc.items():
        out.append(
            FieldReference(
                name=name,
                kind=str(d["kind"]),
                missing_rate=float(d["missing_rate"]),
                unit=d.get("unit"),
                min=d.get("min"),
                max=d.get("max"),
                quantiles=tuple(d.get("quantiles") or ()),
                categories=frozenset(d.get("categories") or ()),
                top_share=float(d.get("top_share", 0.0)),
                grid=tuple(d.get("grid") or ()),
                lattice=None if d.get("lattice") is None else tuple(d["lattice"]),
                zero_share=float(d.get("zero_share", 0.0)),
                nonzero_quantiles=tuple(d.get("nonzero_quantiles") or ()),
                max_run_hours=d.get("max_run_hours"),
                resting_value=d.get("resting_value"),  # absent: a model trained before it (every hour counts)
            )
        )
    return out
