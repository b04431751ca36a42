"""2013, month by month: the Jan-Mar champion serves April..December, with the policy off and on.

`python -m drills.year` (about two minutes) writes docs/year-2013.md, docs/year-2013.json and
docs/year-2013.png. For each month M from April to December:

1. the serving champion scores every flight of M (the service's own feature and model code, in
   process: `drills.calibrate.log_frame`) and the rows go into a prediction log (SQLite), with
   the model version that served them;
2. the month's labels arrive by its end (delayed labels: a flight's outcome is known hours later;
   the monthly cadence is what this replay judges);
3. the monitor judges month M by event time against the champion's frozen profile (hysteresis per
   model version, as in production);
4. policy on only: a raw red verdict records a retrain request, and `handle_pending` consumes it at
   the end of M (cooldown 24 h of event time): a challenger is fitted on the original Jan-Mar window
   plus the last 28 labelled days before M's final 7 days (the shipped defaults; two log-only
   variants run beside it), the gate compares it with the champion on those 7 days, and a promoted
   challenger serves M+1.

Nothing here is simulated beyond the clock: the log store, the monitor, the retrain, the gate and
the registry (MLflow on SQLite) are the production code paths. The HTTP layer is skipped because
it adds only time (the drills and the integration tests exercise it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from core.logstore import LogStore
    from data_contracts.contract import Contract

ROOT = Path(__file__).resolve().parent.parent
MONTHS = [(2013, m) for m in range(4, 13)]


@dataclass
class MonthRow:
    month: str
    served_by: str
    served_validation_auc: float
    rows: int
    labelled: int
    status: str
    raw_status: str
    top: list[str]
    roc_auc: float
    pr_auc: float
    late_rate: float
    mean_prediction: float
    retrain: dict[str, Any] = field(default_factory=dict)


def month_end(year: int, month: int) -> date:
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return nxt - timedelta(days=1)


def write_month(store: LogStore, bundle: Any, version: str, contract: Contract, frame: Any, prefix: str) -> None:
    from drills.calibrate import log_frame

    lf = log_frame(bundle, contract, frame)
    names = list(store.feature_names)
    fields = list(contract.field_names)
    now = datetime.now(UTC)
    rows = []
    raw = lf[fields].astype(object).where(lf[fields].notna(), None)
    feats = lf[[f"f_{n}" for n in names]].to_numpy()
    for i, (rec, t, p) in enumerate(zip(raw.to_dict("records"), lf["event_time"], lf["probability"], strict=True)):
        rec[contract.timestamp_field] = rec[contract.timestamp_field].to_pydatetime()
        rows.append(
            {
                "prediction_id": f"{prefix}{i}",
                "served_at": now,
                "event_time": t.to_pydatetime(),
                "model_name": "flights-late",
                "model_version": version,
                "probability": float(p),
                "late": int(p >= float(bundle.metadata["threshold"])),
                "warnings": [],
                "inputs": rec,
                "features": dict(zip(names, feats[i].tolist(), strict=True)),
            }
        )
    for a in range(0, len(rows), 5000):
        store.insert_predictions(rows[a : a + 5000])
    labels = [{"prediction_id": f"{prefix}{i}", "label": int(y), "received_at": now} for i, y in enumerate(lf["label"]) if y == y]
    for a in range(0, len(labels), 5000):
        store.upsert_labels(labels[a : a + 5000])


def run(policy_on: bool, home: Path, echo: Any = print, **retrain: Any) -> list[MonthRow]:
    from core.logstore import log_store_from_settings
    from core.monitor_job import Monitor
    from core.registry import registry_from_settings
    from core.runs import RunStore
    from core.settings import Settings
    from data_contracts.contract import load_contract
    from data_contracts.windows import select_window
    from training.data import load_flights
    from training.retrain import handle_pending_with_settings
    from training.train import TrainConfig, train

    shutil.rmtree(home, ignore_errors=True)
    settings = Settings(home=home, **{f"retrain_{k}": v for k, v in retrain.items()})
    contract = load_contract()
    registry = registry_from_settings(settings)
    train(contract, registry, TrainConfig())
    flights = load_flights()
    store = log_store_from_settings(settings, contract)
    store.create_schema()
    runs = RunStore(settings.resolved_log_store_url)
    monitor = Monitor(settings)
    out: list[MonthRow] = []
    for year, month in MONTHS:
        first, last = date(year, month, 1), month_end(year, month)
        version = registry.alias_version(settings.model_name, "champion")
        if version is None:
            raise LookupError(f"no {settings.model_name}@champion: the replay trains one first")
        bundle = registry.load(settings.model_name, version)
        frame = select_window(flights, contract, first, last)
        write_month(store, bundle, version, contract, frame, f"{year}{month:02d}-")
        monitor.refresh()
        res = monitor.run_days(first, last, html=False)
        v, perf = res.verdict, res.performance
        row = MonthRow(
            month=f"{year}-{month:02d}",
            served_by=version,
            served_validation_auc=float(bundle.metadata["validation_metrics"]["roc_auc"]),
            rows=res.rows,
            labelled=perf.labelled,
            status=v.status,
            raw_status=v.raw_status,
            top=[f"{r.signal}({r.feature})" if r.feature else r.signal for r in v.top_reasons(3)],
            roc_auc=float(perf.roc_auc),
            pr_auc=float(perf.pr_auc),
            late_rate=float(perf.label_rate),
            mean_prediction=float(perf.mean_prediction),
        )
        if policy_on and res.retrain_withheld:
            row.retrain = {
                "status": "withheld",
                "reasons": [res.retrain_withheld.split(";")[0].removeprefix("retrain withheld: ")],
            }
        if policy_on and res.retrain_request:
            now = datetime(last.year, last.month, last.day, 23, 59, tzinfo=UTC)
            t0 = time.perf_counter()
            r = handle_pending_with_settings(settings, contract, registry, store, runs, now=now)
            row.retrain = {
                "status": r.status,
                "challenger": r.challenger_version,
                "champion_auc": r.holdout_auc("champion") if r.evidence else None,
                "challenger_auc": r.holdout_auc("challenger") if r.evidence else None,
                "holdout": r.windows.get("holdout"),
                "reasons": [x for x in r.reasons if r.status != "promoted" or x.startswith("primary")][:3],
                "seconds": round(time.perf_counter() - t0, 1),
            }
        out.append(row)
        echo(
            f"{'on ' if policy_on else 'off'} {row.month} v{row.served_by}: {row.status:<6} AUC {row.roc_auc:.3f}"
            f" (validation {row.served_validation_auc:.3f}) late {row.late_rate:.1%} pred {row.mean_prediction:.1%}"
            f" {', '.join(row.top)} {row.retrain.get('status', '')} {row.retrain.get('challenger') or ''}"
        )
    return out


def chart(off: list[MonthRow], on: list[MonthRow], path: Path, log_only: list[MonthRow] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colour = {"green": "#2e7d32", "yellow": "#f9a825", "red": "#c62828", "not_enough_data": "#9e9e9e"}
    x = np.arange(len(off))
    labels = [r.month[5:] for r in off]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(x, [r.roc_auc for r in off], "o-", color="#555", label="realised ROC AUC, policy off (Jan-Mar model)")
    ax.plot(x, [r.roc_auc for r in on], "s-", color="#1565c0", label="realised ROC AUC, policy on (red retrains, defaults)")
    if log_only:
        ax.plot(x, [r.roc_auc for r in log_only], "^--", color="#90caf9", label="policy on, challengers from the log only")
    ax.plot(
        x, [r.served_validation_auc for r in on], ":", color="#1565c0", label="validation AUC of the model serving (policy on)"
    )
    ax.axhline(off[0].served_validation_auc, ls="--", color="#555", lw=1, label="Jan-Mar model's validation AUC")
    for i, r in enumerate(on):
        if r.retrain.get("status") == "promoted":
            ax.annotate(f"v{r.retrain['challenger']}", (i + 0.5, r.roc_auc), color="#1565c0", fontsize=8)
            ax.axvline(i + 0.5, color="#1565c0", alpha=0.25)
    ax.set_ylabel("ROC AUC")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("2013 month by month: the Jan-Mar champion with the policy off and on")
    for row_i, (rows, name) in enumerate(((off, "off"), (on, "on"))):
        ax2.scatter(x, [row_i] * len(x), c=[colour[r.status] for r in rows], s=300, marker="s")
        ax2.text(-0.9, row_i, f"policy {name}", va="center", fontsize=8)
    ax2.set_yticks([])
    ax2.set_ylim(-0.7, 1.7)
    ax2.set_xticks(x, labels)
    ax2.set_xlabel("month of 2013 (vertical lines: a promoted challenger starts serving)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(off: list[MonthRow], on: list[MonthRow], seconds: float) -> str:
    def table(rows: list[MonthRow], policy_on: bool) -> list[str]:
        head = "| month | served by | light (raw) | top reasons | ROC AUC | PR AUC | late rate | mean prediction |"
        sep = "| --- | --- | --- | --- | --- | --- | --- | --- |"
        if policy_on:
            head += " retrain at month end |"
            sep += " --- |"
        lines = [head, sep]
        for r in rows:
            line = (
                f"| {r.month} | v{r.served_by} (val {r.served_validation_auc:.3f}) | {r.status} ({r.raw_status}) "
                f"| {', '.join(r.top) or '-'} | {r.roc_auc:.3f} | {r.pr_auc:.3f} | {r.late_rate:.1%} | {r.mean_prediction:.1%} |"
            )
            if policy_on:
                t = r.retrain
                if not t:
                    line += " - |"
                elif t["status"] in ("promoted", "refused"):
                    line += (
                        f" {t['status']} v{t['challenger']}: holdout {t['holdout'][0]}..{t['holdout'][1]},"
                        f" AUC {t['challenger_auc']:.3f} vs champion {t['champion_auc']:.3f} |"
                        if t.get("challenger_auc") is not None
                        else f" {t['status']}: {'; '.join(t['reasons'])} |"
                    )
                else:
                    line += f" {t['status']}: {'; '.join(t['reasons'])} |"
            lines.append(line)
        return lines

    promoted = sum(1 for r in on if r.retrain.get("status") == "promoted")
    attempts = sum(1 for r in on if r.retrain.get("status") in ("promoted", "refused"))
    within = [r for r in on[1:] if r.served_validation_auc - r.roc_auc <= 0.03]
    return "\n".join(
        [
            "# 2013, month by month, with the policy off and on",
            "",
            f"Produced by `python -m drills.year` ({seconds:.0f} s on this machine); figures: docs/year-2013.json;",
            "chart: docs/year-2013.png. The method is in the docstring of `drills/year.py`: the Jan-Mar",
            "champion serves April..December; each month is logged, labelled by its end and judged by the",
            "monitor; with the policy on, a raw red verdict retrains at the month's end (challenger fitted on",
            "the original Jan-Mar window plus the last 28 labelled days before the final 7, gated against the",
            "champion on those 7) and a promoted challenger serves the next month.",
            "",
            "![monthly verdicts and realised AUC](year-2013.png)",
            "",
            "## Policy off: the Jan-Mar model all year",
            "",
            *table(off, False),
            "",
            "## Policy on: red retrains, the gate decides",
            "",
            *table(on, True),
            "",
            f"Retrain attempts: {attempts} (promoted {promoted}) in {len(on)} months.",
            f"Months from May on whose realised AUC is within 0.03 of the serving model's own validation AUC: "
            f"{len(within)} of {len(on) - 1}.",
            "",
        ]
    )


VARIANTS: tuple[tuple[str, bool, dict[str, Any]], ...] = (
    ("off", False, {}),
    ("on", True, {}),  # the shipped defaults: the last 28 labelled days of the log + the original Jan-Mar window
    ("on, log only", True, {"with_original": False}),  # 28 labelled days, nothing else
    ("on, log only, 84 days", True, {"with_original": False, "train_days": 84}),
)


def comparison(results: dict[str, list[MonthRow]]) -> list[str]:
    names = list(results)
    lines = [
        "| month | " + " | ".join(f"{n}: AUC (served by)" for n in names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for i, r in enumerate(results[names[0]]):
        cells = [f"{results[n][i].roc_auc:.3f} (v{results[n][i].served_by})" for n in names]
        lines.append(f"| {r.month} | " + " | ".join(cells) + " |")
    mean = [np.mean([x.roc_auc for x in results[n][1:]]) for n in names]
    lines.append("| mean May-Dec | " + " | ".join(f"**{m:.3f}**" for m in mean) + " |")
    tries = [sum(1 for x in results[n] if x.retrain.get("status") in ("promoted", "refused")) for n in names]
    proms = [sum(1 for x in results[n] if x.retrain.get("status") == "promoted") for n in names]
    lines.append("| retrains (promoted) | " + " | ".join(f"{t} ({p})" for t, p in zip(tries, proms, strict=True)) + " |")
    return lines


# Written for the figures above. Every step is seeded, so re-running reproduces them exactly on the
# same pinned stack; if a change moves them, this text must be re-read and rewritten.
EXPLANATION = """## What happened, and why

- **Four of nine months are red, all four because the model is hurt.** With the light of issue 11
  (nulls by cadence; covariate drift alone is yellow), May to August are yellow for weather the
  Jan-Mar reference never saw (temperature and dew point beyond its range): the world moved, the
  owner is told, nothing retrains; in May the old model's AUC (0.729) is *above* its validation
  AUC (0.714). April, September, October and November are red with `roc_auc_drop` (0.655, 0.662,
  0.646 and 0.651 against 0.714; in September it ranks below the weather reasons, 0.040 over the
  reference). The earlier light was red in every month and retrained 8 times in 9 months.
- **September is no longer a false data alarm.** Until 2026-12-01 it was red first for
  `stuck_run_ratio` of precipitation: a dry month whose run of zeros at one airport beat 3 times
  the longest dry run of the Jan-Mar reference, read as a rain gauge frozen at 0. Red on broken
  data withholds the retrain (`monitoring.policy.retrain_hold`), so that alarm blocked the retrain
  the model-hurt evidence asked for. Prompted by this replay, a run at a field's resting value
  (precipitation 0, visibility 10 miles) now counts only the hours in which another airport read
  otherwise (docs/blind-spots.md): a dry spell is 0 at all three airports at once. September's
  precipitation run is now 6 corroborated hours (ratio 0.25); no threshold was moved.
- **So September's red retrains**: the challenger won the gate (0.614 vs 0.560 on Sep 24-30) and
  served October to December: 0.658, 0.668 and 0.697 against 0.646, 0.651 and 0.698 never
  retraining; mean May-Dec 0.691 against 0.687. With the false alarm, October's red retrained
  instead, a month later (0.667 and 0.705 in November and December, mean 0.690).
- **Two retrain attempts, one promoted**: April's challenger lost the gate (0.650 vs 0.655 on Apr
  24-30); September's won.
- **Challengers trained only on recent labels were worse** (the two "log only" columns: 0.673 and
  0.675 May-Dec): 28 or 84 days of traffic is less than the champion's 76 days plus the season;
  the shipped default adds the original Jan-Mar window to the last 28 labelled days. That default
  was chosen on this same year (2013 is all the data there is).
- TARGETS asks for realised AUC within 0.03 of the serving model's own validation AUC in every
  month from May on: met in 7 of 8 months with the policy on. September (0.662 against 0.714)
  misses: the late rate falls to 14 % and ranking gets harder. October to December are met against
  the September challenger's own validation AUC, 0.610 (its 7 holdout days): a low bar, not a
  sign that the model is good.
"""


def main() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=ROOT / ".driftlight" / "year")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    t0 = time.perf_counter()
    results = {
        name: run(on, args.home / name.replace(" ", "").replace(",", "_").replace("+", "plus"), **kw) for name, on, kw in VARIANTS
    }
    seconds = time.perf_counter() - t0
    off, on = results["off"], results["on"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "year-2013.json").write_text(
        json.dumps({name: [r.__dict__ for r in rows] for name, rows in results.items()}, indent=2, default=str)
    )
    chart(off, on, args.out / "year-2013.png", results.get("on, log only"))
    text = markdown(off, on, seconds)
    text += "\n" + "\n".join(["## Retraining variants side by side", "", *comparison(results), ""])
    (args.out / "year-2013.md").write_text(text + "\n" + EXPLANATION)
    print(f"wrote {args.out / 'year-2013.md'}, .json, .png in {seconds:.0f} s")


if __name__ == "__main__":
    main()
