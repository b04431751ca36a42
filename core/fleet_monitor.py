"""`driftlight fleet monitor`: every fleet model judged from one pass over the prediction log.

Read: the log's rows of the longest lookback (e.g. 28 local days ending on `day`) stream through
once, in chunks; each chunk is grouped by `model_name` and counted into that model's frozen bins
per local day (`monitoring.fleet.count_days`): memory holds counts, never the window. The Spark
engine (core.spark_engine) produces the same per-(model, day) counts from partitions.
Judge: per model, the shortest trailing span with enough rows (`choose_window`), its signals and
p-values (`measure`), then one Benjamini-Hochberg budget over the whole fleet (`judge_fleet`). The
label tests (realised ROC AUC, label rate) count the longest lookback's labels (fleet file
`monitor.label_span: longest`): one day of a route rarely holds the labels the AUC test needs.
Shadow: for each model whose traffic a challenger scored in shadow (service.fleet), the single
model's champion-vs-challenger comparison (`monitoring.shadow.compare`, the same function) on that
model's shadow-scored rows of the run's window (the longest lookback: a comparison needs labels
more than recency), with the model's own threshold; reported beside its verdict, never judged.
Publish: one fleet run (every verdict and reason, counts by colour, worst first by impact) in the
run database and as a JSON report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd

from data_contracts.fleet import FleetSpec
from data_contracts.windows import window_bounds
from monitoring.fleet import Counts, FleetJudgement, ModelRef, choose_window, count_days, judge_fleet, measure
from monitoring.policy import PolicySettings

Key = tuple[str, str]  # (model name, local day ISO)


class ChunkSource(Protocol):
    def iter_predictions(
        self, start: datetime | None, end: datetime | None, *, by: Literal["event_time", "served_at"] = ..., chunksize: int = ...
    ) -> Iterator[pd.DataFrame]: ...


def count_chunk(refs: Mapping[str, ModelRef], chunk: pd.DataFrame, timezone: str, by: str = "event_time") -> dict[Key, Counts]:
    """Per-(model, local day) counts of one chunk of the log (pure; the Spark engine runs it per
    partition). Rows of models not in `refs` and rows the fallback served are left out."""
    out: dict[Key, Counts] = {}
    if chunk.empty:
        return out
    if "model_version" in chunk:
        chunk = chunk[chunk["model_version"] != "fallback"]
    days = pd.to_datetime(chunk[by], utc=True).dt.tz_convert(timezone).dt.strftime("%Y-%m-%d")
    for name, rows in chunk.groupby("model_name", sort=False):
        ref = refs.get(str(name))
        if ref is None:
            continue
        for day, c in count_days(ref.profile, rows, days.loc[rows.index], ref.unit_columns).items():
            out[(str(name), day)] = c
    return out


def merge_into(acc: dict[Key, Counts], part: Mapping[Key, Counts]) -> None:
    for k, c in part.items():
        acc[k] = acc[k].merge(c) if k in acc else c


def count_local(
    refs: Mapping[str, ModelRef], store: ChunkSource, start: datetime, end: datetime, timezone: str, *,
    by: Literal["event_time", "served_at"] = "event_time", chunksize: int = 100_000,
) -> tuple[dict[Key, Counts], int]:  # fmt: skip
    """The local engine: (per-(model, day) counts, rows read) in one pass over the log."""
    acc: dict[Key, Counts] = {}
    rows = 0
    for chunk in store.iter_predictions(start, end, by=by, chunksize=chunksize):
        rows += len(chunk)
        merge_into(acc, count_chunk(refs, chunk, timezone, by))
    return acc, rows


def shadow_by_model(refs: Mapping[str, ModelRef], frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Pure: {model name: `monitoring.shadow.compare` of its rows} for every model of `refs` with
    shadow-scored rows in `frame` (LogStore.shadow_frame(..., with_model=True)); each model's own
    threshold decides agreement, as the single model's does."""
    from monitoring.shadow import compare

    out: dict[str, dict[str, Any]] = {}
    if frame.empty:
        return out
    for name, rows in frame.groupby("model_name", sort=True):
        ref = refs.get(str(name))
        if ref is None:
            continue
        cmp = compare(rows.reset_index(drop=True), ref.threshold)
        if cmp is not None:
            out[str(name)] = cmp
    return out


def read_shadow(
    refs: Mapping[str, ModelRef], store: Any, start: datetime, end: datetime, by: str = "event_time"
) -> dict[str, dict[str, Any]]:
    """The per-model shadow comparison of `store`'s window; {} for a store without shadow scores
    (or a source that is not the log store, e.g. a test's chunk source)."""
    read = getattr(store, "shadow_frame", None)
    if read is None:
        return {}
    return shadow_by_model(refs, read(start, end, by=by, with_model=True))


def judge_counts(
    refs: Mapping[str, ModelRef], counts: Mapping[Key, Counts], spec: FleetSpec, policy: PolicySettings, day: date
) -> FleetJudgement:
    """Pure: the counts of every (model, day) -> every model's verdict under one budget."""
    per_model: dict[str, dict[str, Counts]] = {}
    for (name, d), c in counts.items():
        per_model.setdefault(name, {})[d] = c
    m = spec.monitor
    windows, absent = [], []
    for name, ref in sorted(refs.items()):
        days = per_model.get(name, {})
        merged, span = choose_window(days, day, m.lookback_days, m.min_rows)
        if merged is None:
            absent.append(ref)
            continue
        labels = None
        if m.label_span == "longest" and span < m.lookback_days[-1]:
            labels, _ = choose_window(days, day, m.lookback_days[-1:], 0)
        windows.append(measure(ref, merged, min_labels=m.min_labels, last_day=day, labels=labels))
    return judge_fleet(windows, policy, fdr=m.fdr, min_rows=m.min_rows, absent=absent, yellow_only=m.yellow_only)


@dataclass(frozen=True)
class FleetRunResult:
    run_id: str | None
    fleet: str
    day: str
    engine: str
    rows_read: int
    seconds: dict[str, float]
    judgement: FleetJudgement
    report: str | None
    shadow: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # model name -> shadow.compare

    def as_dict(self, top: int | None = None) -> dict[str, Any]:
        verdicts = [{**v.as_dict(), "shadow": self.shadow.get(v.name)} for v in self.judgement.verdicts]
        summary = {**self.judgement.summary(), "shadow_models": sorted(self.shadow)}
        return {
            "run_id": self.run_id,
            "fleet": self.fleet,
            "day": self.day,
            "engine": self.engine,
            "rows_read": self.rows_read,
            "seconds": self.seconds,
            "summary": summary,
            "verdicts": verdicts[:top] if top else verdicts,
            "report": self.report,
        }


def run_fleet(
    *,
    refs: Mapping[str, ModelRef],
    spec: FleetSpec,
    policy: PolicySettings,
    store: ChunkSource | None,
    day: date,
    timezone: str,
    by: Literal["event_time", "served_at"] = "event_time",
    engine: str = "local",
    counter: Any = None,
    runs: Any = None,
    reports_dir: Path | None = None,
) -> FleetRunResult:
    """Count (local engine, or `counter(start, end)` -> (counts, rows) for another engine), judge,
    record (`runs`: a core.fleet.FleetRunStore) and write a JSON report."""
    t0 = time.perf_counter()
    first = day - timedelta(days=max(spec.monitor.lookback_days) - 1)
    lo, hi = window_bounds(first, day, timezone)
    if counter is not None:
        counts, rows = counter(lo, hi)
    else:
        assert store is not None
        counts, rows = count_local(refs, store, lo, hi, timezone, by=by)
    t1 = time.perf_counter()
    j = judge_counts(refs, counts, spec, policy, day)
    t2 = time.perf_counter()
    shadow = read_shadow(refs, store, lo, hi, by) if store is not None else {}
    seconds = {"count": round(t1 - t0, 3), "judge": round(t2 - t1, 3), "shadow": round(time.perf_counter() - t2, 3)}
    res = FleetRunResult(None, spec.name, day.isoformat(), engine, rows, seconds, j, None, shadow)
    doc = res.as_dict()
    report = None
    if reports_dir is not None:
        reports_dir.mkdir(parents=True, exist_ok=True)
        path = reports_dir / f"fleet-{spec.name}-{day.isoformat()}-{datetime.now().strftime('%Y%m%dT%H%M%S')}.json"
        path.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
        report = str(path)
    run_id = None
    if runs is not None:
        run_id = runs.record(
            spec.name,
            day.isoformat(),
            engine,
            {**doc["summary"], "rows_read": rows, "seconds": seconds, "report": report},
            doc["verdicts"],
        )
    return FleetRunResult(run_id, spec.name, day.isoformat(), engine, rows, seconds, j, report, shadow)


def flatten(parts: Iterable[Mapping[Key, Counts]]) -> dict[Key, Counts]:
    acc: dict[Key, Counts] = {}
    for p in parts:
        merge_into(acc, p)
    return acc
