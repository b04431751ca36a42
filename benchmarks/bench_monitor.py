"""Monitor speed: our drift + quality vs Evidently's `DataDriftPreset(method="psi")`, 1M rows.

`python -m benchmarks.bench_monitor` (part of `make bench`). Reference = 1M rows resampled from
Jan-Mar 2013, current = 1M rows resampled from Apr-Jun, all 15 non-timestamp contract fields.
Each engine runs in its own subprocess so its peak memory (VmHWM growth over the loaded data) is
its own. Then a 1M-row window is written to a SQLite and a PostgreSQL prediction log and monitored
the way `driftlight monitor` does it (streamed in chunks, judged), once through the SQLAlchemy row
reader (the anchor), once through the columnar ADBC -> Arrow reader, and once from the Parquet
archive of the log's closed days (core.archive), each in its own process, with the time split
into reading and judging; then from the archive with its kept day states (core.day_parts): the
first run, which folds every day's rows and writes its state, and a later run, which merges them
(`driftlight monitor` on a schedule re-judges closed days every run). `python -m
benchmarks.bench_monitor [ROWS]`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
RESULTS = Path(__file__).resolve().parent / "results"
# Chunks read ahead of the judge, as `driftlight monitor` does (0: read and judge in turn).
READ_AHEAD = int(os.environ.get("BENCH_READ_AHEAD", "1"))


def traced(fn):  # type: ignore[no-untyped-def]
    """(result, seconds, peak MB allocated during fn) — tracemalloc sees numpy's buffers too."""
    import tracemalloc

    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    res = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return res, seconds, (peak - base) / 2**20


def frames(n: int) -> tuple[Any, Any, list[str], list[str]]:
    from datetime import date

    from data_contracts.contract import load_contract
    from data_contracts.windows import select_window
    from training.data import contract_frame, load_flights

    c = load_contract()
    f = load_flights()
    ref = contract_frame(c, select_window(f, c, date(2013, 1, 1), date(2013, 3, 31))).sample(n, replace=True, random_state=0)
    cur = contract_frame(c, select_window(f, c, date(2013, 4, 1), date(2013, 6, 30))).sample(n, replace=True, random_state=1)
    num = [x.name for x in c.numeric_fields]
    cat = [x.name for x in c.category_fields]
    return ref.reset_index(drop=True), cur.reset_index(drop=True), num, cat


def engine(name: str, n: int) -> dict[str, Any]:
    ref, cur, num, cat = frames(n)
    if name == "ours":
        from data_contracts.contract import load_contract
        from monitoring.drift import DriftAccumulator, compute_drift
        from monitoring.profile import build_profile
        from monitoring.quality import QualityAccumulator
        from monitoring.sampling import row_hashes, row_keys
        from training.reference import quality_reference

        t0 = time.perf_counter()
        prof = build_profile(ref, num, cat)
        from monitoring.quality import references_from_mapping

        refs = references_from_mapping(quality_reference(load_contract(), ref))
        t_profile = time.perf_counter() - t0

        def single_pass():  # type: ignore[no-untyped-def]
            # What WindowAccumulator does: one hash of each record (the duplicate check's, and every
            # sample's keys), one drift pass, quality counting its own way over the same chunk and
            # reading the drift pass's samples.
            drift = DriftAccumulator(prof, sample_size=50_000, seed=0)
            quality = QualityAccumulator(refs, sample_size=50_000, seed=0, shared_samples=drift.samples)
            hashes = row_hashes(cur)
            drift.add(cur, row_keys(hashes, 0))
            quality.add(cur, drift.factorized, hashes)
            return drift.result(min_rows=1), quality.signals()

        compute_drift(prof, cur.head(1000))  # warm imports and caches
        (drift, quality), _, mb = traced(single_pass)
        t0 = time.perf_counter()  # timed again without tracemalloc's overhead
        single_pass()
        seconds = time.perf_counter() - t0
        return {
            "seconds": seconds,
            "profile_seconds_once_at_training": t_profile,
            "extra_mb": mb,
            "columns": len(drift.features),
            "quality_signals": len(quality),
        }
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    dd = DataDefinition(numerical_columns=num, categorical_columns=cat)

    def evidently_run():  # type: ignore[no-untyped-def]
        return Report([DataDriftPreset(method="psi")]).run(
            Dataset.from_pandas(cur, data_definition=dd), Dataset.from_pandas(ref, data_definition=dd)
        )

    t0 = time.perf_counter()
    snap = evidently_run()
    seconds = time.perf_counter() - t0
    _, _, mb = traced(evidently_run)
    return {"seconds": seconds, "extra_mb": mb, "metrics": len(snap.dict()["metrics"])}


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def monitor_window(url: str, reader: Any, bundle_path: str) -> dict[str, Any]:
    """Child: read the whole log as one window with `reader` and judge it the way `driftlight
    monitor` does (only the columns the judge reads, WindowAccumulator over 50k-row chunks, then
    judge). Extra memory = the growth of the process's peak RSS during the run (Arrow's buffers are
    outside tracemalloc's view). `reader` "archive": the log's closed days are first written to a
    Parquet archive (timed apart: done once per day, by `driftlight archive` or the monitor), then
    the window is read from it through `core.archive.ArchivedLog` with the database's default reader
    for the labels (SQLAlchemy on SQLite, ADBC on PostgreSQL)."""
    import joblib

    from core.archive import ArchivedLog, LogArchive
    from core.logstore import LogStore
    from core.monitor_job import NOT_READ_BY_MONITOR
    from core.readahead import read_ahead
    from data_contracts.contract import load_contract
    from monitoring.monitor import ModelContext, WindowAccumulator, judge
    from monitoring.policy import load_policy

    c = load_contract()
    bundle = joblib.load(bundle_path)  # written by this benchmark a moment ago
    ctx = ModelContext.from_bundle("flights-late", "bench", bundle)
    names = [str(x) for x in bundle.pipeline.named_steps["features"].get_feature_names_out()]
    store = LogStore(url, c, names)
    cols = [x for x in store.column_names if x not in NOT_READ_BY_MONITOR]
    extra: dict[str, Any] = {}
    source: Any = store
    kw: dict[str, Any] = {"reader": reader, "by": "served_at"}
    if reader == "archive":
        arch = LogArchive(Path(bundle_path).parent / f"archive-{store.dialect}", store)
        t0 = time.perf_counter()
        days = arch.archive()
        extra = {"archive_write_seconds": time.perf_counter() - t0, "archive_days": len(days), "archive_path": str(arch.root)}
        source, kw = ArchivedLog(arch), {"by": "event_time"}  # the archive is by local event day
    if reader in ("parts-cold", "parts"):
        return _monitor_parts(store, ctx, c, Path(bundle_path).parent / f"archive-{store.dialect}", reader)
    next(store.iter_predictions(None, None, chunksize=10, reader="auto" if reader == "archive" else reader))  # warm the driver
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark
    base = _rss_mb("VmRSS")
    times = {"read": 0.0, "compute": 0.0}
    acc = WindowAccumulator(ctx, c)
    t = time.perf_counter()
    # as `driftlight monitor` reads: the next chunk in a thread while this one is judged ("read" is
    # then the time the judge waited for a chunk)
    for chunk in read_ahead(source.iter_predictions(None, None, chunksize=50_000, columns=cols, **kw), READ_AHEAD):
        t1 = time.perf_counter()
        times["read"] += t1 - t
        acc.add(chunk)
        t = time.perf_counter()
        times["compute"] += t - t1
    t1 = time.perf_counter()
    verdict = judge(acc.finish(), {}, load_policy(), []).verdict
    times["compute"] += time.perf_counter() - t1
    store.dispose()
    return _window_result(reader, acc.rows, times["read"], times["compute"], base, verdict, **extra)


def _window_result(
    reader: str, rows: int, read_s: float, compute_s: float, base_mb: float, verdict: Any, **extra: Any
) -> dict[str, Any]:
    """One window run's figures: times, peak RSS growth over `base_mb`, the verdict and its reasons."""
    return {
        "rows": rows,
        "reader": reader,
        "read_ahead": READ_AHEAD,
        "read_seconds": read_s,
        "compute_seconds": compute_s,
        "extra_mb": _rss_mb("VmHWM") - base_mb,
        "status": verdict.status,
        "reasons": [r.signal + ":" + str(r.feature) for r in verdict.top_reasons(3)],
        "load_average": os.getloadavg(),
        **extra,
    }


def _monitor_parts(store: Any, ctx: Any, contract: Any, root: Path, mode: str) -> dict[str, Any]:
    """The window judged as `driftlight monitor` judges it from the archive with kept day states
    (`core.monitor_job.fold_window`, `core.day_parts`): "parts-cold" = the first run for this model
    (each archived day folded from its Parquet rows and its state written), "parts" = every later run
    (the states merged, labels read from the labels files and the overlay). Each in its own process,
    so the peak memory of one is not hidden by what the other freed. "read" = the merge of states and
    labels (and, cold, the rows' fold), "judge" = the verdict."""
    from core.archive import ArchivedLog, LogArchive
    from core.day_parts import part_days
    from core.monitor_job import fold_window
    from monitoring.monitor import WindowAccumulator, judge
    from monitoring.policy import load_policy

    arch = LogArchive(root, store)
    arch.archive()  # written by the "archive" run before (nothing to do here then)
    source = ArchivedLog(arch)
    next(store.iter_predictions(None, None, chunksize=10))  # warm the driver
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark
    base = _rss_mb("VmRSS")
    acc = WindowAccumulator(ctx, contract, report_rows=0)  # no HTML report, as in the other runs
    t = time.perf_counter()
    fold_window(acc, source, None, None, read_ahead_chunks=READ_AHEAD, day_parts=True)
    t1 = time.perf_counter()
    verdict = judge(acc.finish(), {}, load_policy(), []).verdict
    t2 = time.perf_counter()
    store.dispose()
    files = [f for fs in part_days(root).values() for f in fs]
    mb = sum(f.stat().st_size for f in files) / 1e6
    return _window_result(mode, acc.rows, t1 - t, t2 - t1, base, verdict, part_files_mb=mb, archive_path=str(root))


def store_windows(n: int) -> list[dict[str, Any]]:
    """Write an n-row log (real flights, labels on ~95 %) to SQLite and PostgreSQL, then monitor it
    from each with the row reader (SQLAlchemy, the anchor) and the columnar one (ADBC -> Arrow)."""
    import joblib

    from benchmarks.logdata import fill_log
    from core.logstore import LogStore
    from data_contracts.contract import load_contract
    from training.data import load_flights
    from training.train import TrainConfig, fit_bundle, split

    c = load_contract()
    f = load_flights()
    cfg = TrainConfig()
    fit, val = split(c, f, cfg)
    bundle = fit_bundle(c, fit, val, cfg).bundle
    names = [str(x) for x in bundle.pipeline.named_steps["features"].get_feature_names_out()]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        bundle_path = f"{tmp}/bundle.joblib"
        joblib.dump(bundle, bundle_path)
        for store_name, url, cleanup in _stores(tmp):
            try:
                if url.startswith("unreachable"):
                    raise ConnectionError(url)
                store = LogStore(url, c, names)
                t0 = time.perf_counter()
                fill_log(store, bundle, c, f, n)
                write_s = time.perf_counter() - t0
                store.dispose()
                for reader in ("sqlalchemy", "arrow", "archive", "parts-cold", "parts"):
                    res = sub_json(["window", url, reader, bundle_path])
                    out.append({"store": store_name, "write_seconds": write_s, **res})
            except Exception as exc:  # no PostgreSQL here: say so, keep the SQLite figures
                out.append({"store": store_name, "skipped": f"{type(exc).__name__}: {exc}"[:200]})
            finally:
                cleanup()
    return out


def _stores(tmp: str):  # type: ignore[no-untyped-def]
    yield "sqlite", f"sqlite:///{tmp}/log.db", lambda: None
    import sqlalchemy as sa

    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    db = f"driftlight_bench_window_{os.getpid()}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    except Exception as exc:
        yield "postgresql", f"unreachable: {type(exc).__name__}", lambda: None
        return

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()

    yield "postgresql", f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}", drop


def sub_json(args: list[str]) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_monitor", "--child", *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(n_rows: int = 1_000_000, store_rows: int = 1_000_000) -> dict[str, Any]:
    ours, theirs = sub_json(["ours", str(n_rows)]), sub_json(["evidently", str(n_rows)])
    return {
        "rows": n_rows,
        "ours": ours,
        "evidently": theirs,
        "speedup": theirs["seconds"] / ours["seconds"],
        "store_rows": store_rows,
        "windows": store_windows(store_rows),
    }


def report(r: dict[str, Any]) -> str:
    o, e = r["ours"], r["evidently"]
    ok = lambda b: "PASS" if b else "MISS"  # noqa: E731
    lines = [
        f"Monitor, {r['rows']:,} current rows x 15 contract fields (reference {r['rows']:,} rows):",
        f"  ours: drift + quality, one pass {o['seconds']:6.2f} s, +{o['extra_mb']:.0f} MB peak"
        f"   (profile, once at training: {o['profile_seconds_once_at_training']:.2f} s)",
        f"  Evidently DataDriftPreset(psi) {e['seconds']:6.2f} s, +{e['extra_mb']:.0f} MB peak",
        f"  speed-up {r['speedup']:.1f}x — target >= 30x: {ok(r['speedup'] >= 30)};"
        f" <= 1.5 s: {ok(o['seconds'] <= 1.5)}; < 100 MB: {ok(o['extra_mb'] < 100)}",
        f"A {r['store_rows']:,}-row window read from the log and judged (WindowAccumulator, 50k-row chunks):",
    ]
    limits = {"sqlite": 3.0, "postgresql": 5.0}
    anchors: dict[str, float] = {}
    for w in r["windows"]:
        if "skipped" in w:
            lines.append(f"  {w['store']}: skipped ({w['skipped']})")
            continue
        total = w["read_seconds"] + w["compute_seconds"]
        line = (
            f"  {w['store']:<10} {w['reader']:<10} read {w['read_seconds']:6.1f} s + judge {w['compute_seconds']:5.1f} s"
            f" = {total:6.1f} s, +{w['extra_mb']:.0f} MB peak RSS, {w['status']}"
        )
        if w["reader"] == "sqlalchemy":
            anchors[w["store"]] = total
            line += "   (anchor: the row path)"
        elif w["reader"] in ("parts-cold", "parts"):
            what = (
                "first run: rows folded, day states written" if w["reader"] == "parts-cold" else "later runs: day states merged"
            )
            line = (
                f"  {w['store']:<10} {w['reader']:<10} merge {w['read_seconds']:5.1f} s + verdict {w['compute_seconds']:5.1f} s"
                f" = {total:6.1f} s, +{w['extra_mb']:.0f} MB peak RSS, {w['status']}"
                f"   {anchors.get(w['store'], float('nan')) / total:.1f}x the row path"
            )
            if w["reader"] == "parts":
                line += (
                    f"; <= {limits[w['store']]:.0f} s: {ok(total <= limits[w['store']])}; <= 300 MB: {ok(w['extra_mb'] <= 300)}"
                )
            line += f"\n  {'':<10} {'':<10} ({what}; day states on disk {w['part_files_mb']:.0f} MB)"
        elif w["reader"] == "archive":
            line += (
                f"   {anchors.get(w['store'], float('nan')) / total:.1f}x the row path;"
                f" <= {limits[w['store']]:.0f} s: {ok(total <= limits[w['store']])}; <= 300 MB: {ok(w['extra_mb'] <= 300)}"
                f"\n  {'':<10} {'':<10} (Parquet archive {w['archive_path']}: {w['archive_days']} days written once"
                f" in {w['archive_write_seconds']:.1f} s, before the read; load average {w['load_average'][0]:.1f})"
            )
        else:
            line += (
                f"   {anchors.get(w['store'], float('nan')) / total:.1f}x the row path;"
                f" <= {limits[w['store']]:.0f} s: {ok(total <= limits[w['store']])}; <= 300 MB: {ok(w['extra_mb'] <= 300)}"
            )
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        what = sys.argv[2]
        res = monitor_window(*sys.argv[3:6]) if what == "window" else engine(what, int(sys.argv[3]))
        print(json.dumps(res))
    else:
        n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
        r = run(n, n)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "monitor.json").write_text(json.dumps(r, indent=2))
        print(report(r))
