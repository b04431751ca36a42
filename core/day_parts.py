"""Each archived day folded once per model and kept beside its Parquet file; a window merges them.

Why: a window's judge is linear in its rows (hashing, value counts, the row-level skew check's
feature transform, samples). A monitor on a schedule judges the same closed days again and again
(a 7-day or 28-day window moves one day at a time; the 2013 replay and the status page re-read
months). A closed day's rows never change once archived, so everything the judge gathers from them
but their labels is computed once (`WindowAccumulator.state()` of that day) and kept as
`<archive>/event_day=YYYY-MM-DD/part-<model key>.pkl`; a window then merges the states of its
archived days (`WindowAccumulator.merge_state`) and folds only the rest (open days, stale days,
partial edge days) row by row. This is the mergeable-profile design of whylogs and popmon's
time slices, with one difference: the merge is exact, not a sketch. Merging the days' states in
order gives the very signals of folding the window's chunks (samples are keyed by each row's own
hash, counts add, first-seen lists keep their order; `tests/integration/test_day_parts.py`).

Labels are not in a part: they arrive and change after a day is archived. They come, as for the
archive's row read, from the days' labels files overlaid with the labels written since
(`core.archive`), and are joined to the part's probabilities at merge time.

Correctness rules:
- A part belongs to one model (name, version and a digest of its metadata and profile: a retrained
  model with a reused version number gets new parts), one log, one day's row count (rows are only
  ever added, so a count names the rows, as for the labels files), and `PART_VERSION` of this
  code. Anything else is ignored and rebuilt.
- Parts hold the real light's rows only (drill traffic left out, as `run_window` does).
- Writes are atomic (temporary file, fsync, `os.replace`); a part that cannot be read is rebuilt.
- A part is a pickle: the archive folder is as trusted as the model bundles the monitor loads
  (both are the monitor's own files). Deleting them is always safe: they are rebuilt on demand.
- A day keeps the parts of at most `KEEP_MODELS` models (the newest by write time): the champion
  and the one before it, for a rollback.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.archive import (
    ArchivedDay,
    ArchivedLog,
    LogArchive,
    _ArchivedLabels,
    _as_frame,
    _LabelLookup,
    _read_ids,
    _scan,
    replace_atomically,
)
from core.ids import drill_mask
from core.logstore import _JsonListDecoder
from data_contracts.contract import Contract
from monitoring.monitor import SAMPLE_SIZE, ModelContext, WindowAccumulator

log = logging.getLogger("driftlight.monitor")

# Bump when a part's layout or the definition of anything in it changes: older parts are rebuilt.
PART_VERSION = 1
PART_PREFIX = "part-"
KEEP_MODELS = 2  # models whose parts a day keeps (the newest written)
_NAT = np.iinfo(np.int64).min  # NaT as int64


def model_key(ctx: ModelContext) -> str:
    """The model a part was folded for: name, version and a digest of its metadata (references,
    nulls, feature names, and its training time and metrics: a model retrained under a reused
    version number gets other parts; its drift profile is built by the same training run)."""
    doc = {"part_version": PART_VERSION, "name": ctx.name, "version": ctx.version, "metadata": ctx.metadata}
    blob = json.dumps(doc, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


class DayParts:
    """The parts of one archive for one model."""

    def __init__(
        self, archive: LogArchive, ctx: ModelContext, contract: Contract, *, sample_size: int = SAMPLE_SIZE, seed: int = 0
    ) -> None:
        """`sample_size`, `seed`: those of the accumulators the parts are merged into."""
        self.archive = archive
        self.ctx = ctx
        self.contract = contract
        self.sample_size, self.seed = sample_size, seed
        self.key = model_key(ctx)
        self.built = 0  # parts built by this instance (cold days)

    def path(self, day: date) -> Path:
        return self.archive.path(day).with_name(f"{PART_PREFIX}{self.key}.pkl")

    def samples_path(self, day: date) -> Path:
        return self.archive.path(day).with_name(f"{PART_PREFIX}{self.key}.samples.npy")

    def _head(self, a: ArchivedDay) -> dict[str, Any]:
        return {
            "version": PART_VERSION,
            "model": self.key,
            "log": self.archive.log_id,
            "rows": a.rows,
            "sample": [self.sample_size, self.seed],
        }

    def load(self, a: ArchivedDay) -> dict[str, Any] | None:
        """The day's part with its samples memory-mapped, or None if it is missing or not this
        model's, log's, row count's or code's (then it is rebuilt)."""
        try:
            with open(self.path(a.day), "rb") as fh:
                part = pickle.load(fh)
            if not isinstance(part, dict) or part.get("head") != self._head(a):
                return None
            flat = np.load(self.samples_path(a.day), mmap_mode="r", allow_pickle=False)
        except (OSError, EOFError, ValueError, pickle.UnpicklingError, AttributeError, ImportError, KeyError):
            return None
        if flat.ndim != 1 or flat.size != part["samples_size"]:
            return None
        part["flat"] = flat
        return part

    def build(self, a: ArchivedDay, columns: Sequence[str], chunksize: int) -> dict[str, Any]:
        """Fold the day's archived rows (no labels) and keep the state beside the day's file."""
        names = list(columns)
        scan = names if "prediction_id" in names else [*names, "prediction_id"]
        acc = WindowAccumulator(self.ctx, self.contract, sample_size=self.sample_size, seed=self.seed, report_rows=0)
        decode = _JsonListDecoder()
        kept: list[np.ndarray] = []
        served: list[np.ndarray] = []
        offset = 0
        for batch in _scan([a.path], scan, chunksize):
            frame = _as_frame([batch], scan, decode)
            keep = ~drill_mask(frame["prediction_id"]).to_numpy()  # the real light's rows only
            kept.append(np.flatnonzero(keep) + offset)
            offset += len(frame)
            if not keep.all():
                frame = frame[keep].reset_index(drop=True)
            served.append(_ns(frame["served_at"]))
            acc.add(frame[names] if list(frame.columns) != names else frame)
        rows = np.concatenate(kept) if kept else np.empty(0, dtype="int64")
        state = acc.state()
        p, _, _, groups = state.pop("perf") or (np.empty(0), None, None, np.empty(0, dtype="int64"))
        # The samples (all of a day's values, ~85 % of the state) go to one flat array beside the
        # pickle, each (keys, values) sorted by key: a window merging many days memory-maps it and
        # reads only the prefix of each day below its sample's bound.
        layout, flats, at = [], [], 0
        for where in ("drift", "quality"):
            for name, (keys, values) in sorted(((state[where] or {}).get("samples") or {}).items()):
                layout.append((where, name, at, len(keys)))
                flats += [keys, values]
                at += 2 * len(keys)
            if state[where] is not None:
                state[where]["samples"] = {}
        flat = np.concatenate(flats) if flats else np.empty(0)
        part = {
            "head": self._head(a),
            "state": state,
            "probability": p,
            "groups": groups,
            "served_ns": np.concatenate(served) if served else np.empty(0, dtype="int64"),
            "rows": None if rows.size == a.rows else rows,  # the file's rows kept (None: all)
            "samples": layout,
            "samples_size": int(flat.size),
        }
        try:
            self._write(a.day, part, flat)
        except OSError as exc:  # a full disk costs the next run this day's fold again, nothing else
            log.warning("monitor: could not keep the state of %s (%s); it is folded again next time", a.day, exc)
        self.built += 1
        return {**part, "flat": flat}

    def _write(self, day: date, part: dict[str, Any], flat: np.ndarray) -> None:
        # the samples first: a pickle is only ever next to its samples
        replace_atomically(self.samples_path(day), lambda fh: np.save(fh, flat, allow_pickle=False))
        replace_atomically(self.path(day), lambda fh: pickle.dump(part, fh, protocol=pickle.HIGHEST_PROTOCOL))
        mine = self.path(day)
        others = sorted((p for p in mine.parent.glob(f"{PART_PREFIX}*.pkl") if p != mine), key=lambda p: p.stat().st_mtime_ns)
        for old in others[: max(len(others) - (KEEP_MODELS - 1), 0)]:
            old.unlink(missing_ok=True)
            old.with_name(old.name.removesuffix(".pkl") + ".samples.npy").unlink(missing_ok=True)

    def fold(
        self, acc: WindowAccumulator, source: ArchivedLog, days: Sequence[ArchivedDay], columns: Sequence[str], chunksize: int
    ) -> None:
        """Merge the parts of `days` (consecutive archived days of the window, in order) into `acc`,
        building the missing ones, with each row's label as the log holds it now."""
        import pyarrow as pa

        lookup = _ArchivedLabels.load(self.archive, days, source.reader) or _LabelLookup(self.archive.store, days, source.reader)
        needs_ids = not isinstance(lookup, _ArchivedLabels) or len(lookup.overlay_ids) > 0
        total = sum(a.rows for a in days)
        ids = pa.chunked_array([_read_ids(a.path) for a in days], pa.string()) if needs_ids else pa.nulls(total, pa.string())
        # Every row's label and receipt time, joined once for all the days and converted a day at a
        # time (no window-wide temporaries): the label as float64 with NaN where there is none, the
        # time as int64 ns (`_arrow_frame`'s ns datetimes).
        joined = lookup.join(pa.table({"prediction_id": ids}))
        label, received, ns = joined.column("label"), joined.column("received_at"), pa.timestamp("ns", tz="UTC")
        del joined, ids
        at = 0
        for a in days:
            part = self.load(a) or self.build(a, columns, chunksize)
            y = label.slice(at, a.rows).cast(pa.float64()).to_numpy()
            r = received.slice(at, a.rows).cast(ns).to_numpy().view("int64")
            at += a.rows
            if part["rows"] is not None:
                y, r = y[part["rows"]], r[part["rows"]]
            # the chunk path's lag: (received_at - served_at).dt.total_seconds() = ns difference / 1e9
            lag = np.where(r == _NAT, np.nan, (r - part["served_ns"]) / 1_000_000_000)
            state = {**part["state"], "perf": (part["probability"], y, lag, part["groups"])}
            samples: dict[str, dict[str, Any]] = {"drift": {}, "quality": {}}
            flat = part["flat"]
            for where, name, start, n in part["samples"]:
                samples[where][name] = (flat[start : start + n], flat[start + n : start + 2 * n])  # (keys, values)
            for where, drawn in samples.items():
                if state[where] is not None:
                    state[where] = {**state[where], "samples": drawn}
            acc.merge_state(state)
            if acc.wants_report_sample:
                self._sample_rows(acc, a)

    def _sample_rows(self, acc: WindowAccumulator, a: ArchivedDay) -> None:
        """The report sample's share of the day (only for runs that write the HTML report): its
        rows' fields read again, keyed as the chunk path keys them."""
        import pyarrow.parquet as pq

        fields = [f for f in acc.fields if f in self.archive.names]
        table = pq.ParquetFile(a.path).read(columns=[*fields, "prediction_id"], use_threads=False)
        frame = _as_frame([table], [*fields, "prediction_id"], _JsonListDecoder())
        frame = frame[~drill_mask(frame["prediction_id"]).to_numpy()].reset_index(drop=True)
        acc.add_to_report_sample(frame[fields])


def _ns(values: pd.Series) -> np.ndarray:
    """UTC datetimes as int64 nanoseconds since the epoch."""
    return pd.DatetimeIndex(values).asi8


def part_days(root: Path) -> dict[date, list[Path]]:
    """The part files (state and samples) under an archive root, by day."""
    out: dict[date, list[Path]] = {}
    for f in sorted(Path(root).glob(f"event_day=*/{PART_PREFIX}*")):
        out.setdefault(date.fromisoformat(f.parent.name.split("=", 1)[1]), []).append(f)
    return out
