"""The fleet's 2013, month by month: April..December through the fleet, retrain policy off and on.

    nice -n 10 python -m drills.fleet_year --home COPY [--segments N] [--budget K]

`COPY` is a copy of a home that `driftlight fleet train` wrote, made by `python -m scripts.copy_home HOME COPY`
(a plain `cp -a` still reads the original's artifacts; the replay registers challengers
and moves aliases, so never point it at the home that serves). Challengers go to a separate MLflow
experiment (`fleet-year`) whose artifacts live under COPY. For each month M:

1. both fleets score every flight of M on the replayed routes (the service's own routing and model
   code in process: `drills.fleet.FleetTraffic`, each model's rows of the month as one batch) into
   their own prediction log, labels included (the month's outcomes are known by its end); a row
   whose model (name and version) is the same on both sides is scored once, by policy off;
2. the fleet monitor judges every model on M's last day (`core.fleet_monitor.run_fleet`, the fleet
   file's windows and false-alarm budget);
3. policy off: nothing else, the Jan-Mar champions serve all year. Policy on: one retrain cycle
   (`training.fleet_retrain.run_cycle`): red models queued by expected gain x traffic, at most K
   retrains, each through the single model's gate on M's last 7 days; a promoted challenger
   serves M+1 (the router reloads the moved aliases, the monitor reads the new references).

Per month: counts by colour (off / on), retrains promoted / refused / over budget, and the realised
ROC AUC of each fleet on M's flights, traffic-weighted over models (each model's AUC on the rows it
served, weighted by those rows). Writes docs/fleet-year.md, .json and .png.

Routes: by default the whole fleet, every flight of the month: each route's champion, and the
global model for the routes without one. `--segments N`: only the N largest own-champion routes by
Jan-Mar labelled flights, and only their flights, so the global model serves nothing.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
MONTHS = [(2013, m) for m in range(4, 13)]


def month_days(year: int, month: int) -> tuple[date, date]:
    first = date(year, month, 1)
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return first, nxt - timedelta(days=1)


def realised_auc(store: Any, contract: Any, first: date, last: date) -> dict[str, Any]:
    """Each model's ROC AUC on the labelled rows it served in `first..last`, and the fleet's
    traffic-weighted mean over models with both classes."""
    from sklearn.metrics import roc_auc_score

    from data_contracts.windows import window_bounds

    lo, hi = window_bounds(first, last, contract.timezone)
    parts = [c[["model_name", "probability", "label"]] for c in store.iter_predictions(lo, hi, by="event_time")]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["model_name", "probability", "label"])
    frame = frame[frame["label"].notna()]
    per: dict[str, tuple[int, float]] = {}
    for name, g in frame.groupby("model_name"):
        y = g["label"].astype(int).to_numpy()
        if y.min() != y.max():
            per[str(name)] = (len(g), float(roc_auc_score(y, g["probability"].to_numpy())))
    n = sum(r for r, _ in per.values())
    weighted = sum(r * a for r, a in per.values()) / n if n else float("nan")
    return {"rows": len(frame), "models": len(per), "weighted_auc": weighted}


def top_reasons(verdicts: list[dict[str, Any]], replayed: set[str]) -> dict[str, int]:
    """How many red and yellow models of the replayed routes had each top reason, keyed
    "colour: signal of feature (question)" (verdicts as stored: `ModelVerdict.as_dict()`)."""
    out: dict[str, int] = {}
    for v in verdicts:
        if v["segment"] not in replayed or v["status"] not in ("red", "yellow") or not v["reasons"]:
            continue
        r = v["reasons"][0]
        key = f"{v['status']}: {r['signal']}" + (f" of {r['feature']}" if r.get("feature") else "") + f" ({r['question']})"
        out[key] = out.get(key, 0) + 1
    return out


def write_doc(out: dict[str, Any], path: Path) -> None:
    rows = out["months"]
    if out.get("whole_fleet"):
        routes = (
            f"**Routes replayed: the whole fleet**, every flight of April-December ({out['rows']:,} flights): "
            f"each of the {out['segments']} route champions serves its route, the global model every route "
            "without one. "
        )
    else:
        more = f"; the full fleet has {out['own_total']} route champions" if out["segments"] < out["own_total"] else ""
        routes = (
            f"**Routes replayed: the {out['segments']} largest own-champion routes** by Jan-Mar labelled flights "
            f"({out['rows']:,} flights, April-December{more}). "
            "Only their flights are replayed, so the global model serves nothing here. "
        )
    lines = [
        "# The fleet's 2013: retrain policy off vs on, month by month",
        "",
        "Written by `drills/fleet_year.py`. Command (on a copy of a trained fleet's home):",
        "",
        "```bash",
        out["command"],
        "```",
        "",
        f"Run time {out['seconds'] / 60:.1f} min on 2 shared cores (load average at the start {out['load_start']}, "
        f"at the end {out['load_end']}), {out['when']}.",
        "",
        routes + f"Budget: at most **K = {out['budget']}** retrains per monthly cycle. Windows and the false-alarm budget "
        "are the fleet file's; the gate and the retrain settings are the single model's defaults "
        f"(fleet minimums: {out['min_labels']} labelled rows to fit, {out['min_holdout']} to judge).",
        "",
        "Realised ROC AUC: each model's AUC on the flights it served that month, averaged over models "
        "weighted by their flights (the fleet's traffic-weighted AUC).",
        "",
        "| month | flights | off: red / yellow / green / n.e.d. | on: red / yellow / green / n.e.d. "
        "| retrains on: promoted / refused / over budget | withheld on (red on broken data) | AUC off | AUC on | on - off |",
        "| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]

    def c(d: dict[str, int]) -> str:
        return f"{d['red']} / {d['yellow']} / {d['green']} / {d['not_enough_data']}"

    for r in rows:
        lines.append(
            f"| {r['month']} | {r['flights']:,} | {c(r['off']['counts'])} | {c(r['on']['counts'])} | "
            f"{r['promoted']} / {r['refused']} / {r['over_budget']} | {r.get('withheld', '?')} | "
            f"{r['off']['auc']:.4f} | {r['on']['auc']:.4f} | "
            f"{r['on']['auc'] - r['off']['auc']:+.4f} |"
        )
    t = out["totals"]
    lines += [
        "",
        f"Totals: {t['promoted']} promotions and {t['refused']} refusals in {len(rows)} cycles"
        + (f", {t['withheld']} red model-months withheld (red on broken data: paged, not retrained)" if "withheld" in t else "")
        + "; "
        f"red model-months {t['red_off']} (off) vs {t['red_on']} (on); mean traffic-weighted AUC "
        f"{t['auc_off']:.4f} (off) vs {t['auc_on']:.4f} (on).",
        "",
        "Why models were refused (counts over the year):",
        "",
        *([f"- {n} x {why}" for why, n in sorted(t["refusal_kinds"].items(), key=lambda kv: -kv[1])] or ["- none"]),
        "",
        *why_lines(rows),
        "Colours are judged on each month's last day (the fleet monitor's trailing windows: the shortest "
        "of 1, 7, 28 days holding 30 flights). The months are the evaluation; nothing was tuned on them.",
        "",
        "![fleet AUC and red models by month, policy off vs on](fleet-year.png)",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def why_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The top reason of every red and yellow model-month, per side (the light's three questions)."""
    if not all("why" in r[side] for r in rows for side in ("off", "on")):
        return []
    lines = ["Why models were red or yellow (top reason of each model-month; question in brackets):", ""]
    for side in ("off", "on"):
        tally: dict[str, int] = {}
        for r in rows:
            for k, n in r[side]["why"].items():
                tally[k] = tally.get(k, 0) + n
        lines.append(
            f"- policy {side}: "
            + ("; ".join(f"{n} x {k}" for k, n in sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))) or "none")
        )
    return [*lines, ""]


def plot(out: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = out["months"]
    x = np.arange(len(rows))
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    a1.plot(x, [r["off"]["auc"] for r in rows], "o-", label="policy off (Jan-Mar champions)")
    a1.plot(x, [r["on"]["auc"] for r in rows], "s-", label=f"policy on (queue, K={out['budget']})")
    a1.set_ylabel("traffic-weighted ROC AUC")
    a1.legend()
    what = f"whole fleet ({out['segments']} routes + global)" if out.get("whole_fleet") else f"{out['segments']} routes"
    a1.set_title(f"fleet replay, {what}, April-December 2013")
    w = 0.38
    a2.bar(x - w / 2, [r["off"]["counts"]["red"] for r in rows], w, label="red, off")
    a2.bar(x + w / 2, [r["on"]["counts"]["red"] for r in rows], w, label="red, on")
    a2.plot(x, [r["promoted"] for r in rows], "k^", label="promoted (on)")
    a2.set_ylabel("models")
    a2.set_xticks(x, [r["month"] for r in rows])
    a2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True, help="a COPY of a trained fleet home (challengers are registered)")
    ap.add_argument(
        "--segments", type=int, default=None, help="only the N largest own-champion routes (default: the whole fleet)"
    )
    ap.add_argument("--budget", type=int, default=None, help="retrains per cycle (default DRIFTLIGHT_FLEET_RETRAIN_BUDGET)")
    ap.add_argument("--months", type=int, default=len(MONTHS), help="replay only the first N months (a quick try)")
    ap.add_argument("--docs", type=Path, default=ROOT / "docs", help="where fleet-year.md/.json/.png go")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per model load otherwise

    from core.fleet import GLOBAL, FleetRunStore, champion_versions, load_refs, segment_of_model
    from core.fleet_monitor import run_fleet
    from core.fleet_queue import QueueStore
    from core.logstore import LogStore
    from core.registry import registry_from_settings
    from core.runs import RunStore
    from core.settings import Settings
    from data_contracts.contract import load_contract
    from data_contracts.fleet import load_fleet
    from data_contracts.windows import select_window
    from drills.fleet import FleetTraffic
    from features.pipeline import build_features
    from monitoring.policy import load_policy
    from service.fleet import FleetRouter
    from training.data import load_flights
    from training.fleet import segments_of
    from training.fleet_retrain import FleetRetrainConfig, run_cycle
    from training.gate import GateConfig
    from training.train import labelled

    t0 = time.perf_counter()
    load_start = " ".join(f"{x:.1f}" for x in os.getloadavg())
    # Challengers go to their own experiment, whose artifact root is under the copy (the trained
    # fleet's experiment may point at the original home's artifacts).
    settings = Settings(home=a.home, experiment="fleet-year")
    contract = load_contract()
    spec = load_fleet(settings.fleet_file, contract)
    policy = load_policy()
    registry = registry_from_settings(settings)
    cfg = FleetRetrainConfig.from_settings(settings, budget=a.budget)
    gate = GateConfig.from_settings(settings)
    flights = load_flights()
    t = spec.train
    original = labelled(select_window(flights, contract, t.start, t.end))
    own_all = [segment_of_model(spec, n) for n in champion_versions(registry, spec) if n != spec.global_model]
    sizes = segments_of(spec, original).value_counts()
    own = sorted(own_all, key=lambda s: (-int(sizes.get(s, 0)), s))[: a.segments or len(own_all)]
    whole = a.segments is None  # every flight: the routes without a champion go to the global model
    replayed = set(own) | ({GLOBAL} if whole else set())
    work = a.home / "fleet-year"
    work.mkdir(parents=True, exist_ok=True)
    names = [str(n) for n in build_features(contract).get_feature_names_out()]
    sides: dict[str, dict[str, Any]] = {}
    base: FleetTraffic | None = None
    for side in ("off", "on"):
        db = work / f"{side}.db"
        db.unlink(missing_ok=True)
        url = f"sqlite:///{db}"
        store = LogStore(url, contract, names)
        store.create_schema()
        if base is None:
            traffic = base = FleetTraffic(registry, spec, contract, store)
        else:  # the same loaded champions, its own log and router (only policy on reloads moved aliases)
            traffic = copy.copy(base)
            traffic.store, traffic.router = store, FleetRouter(spec)
            traffic.router.models = dict(base.router.models)
        sides[side] = {
            "store": store,
            "traffic": traffic,
            "refs": load_refs(registry, spec, a.home / "fleet-cache", contract),
            "fleet_runs": FleetRunStore(url),
            "runs": RunStore(url),
            "queue": QueueStore(url),
        }
    what = "and the global model (every flight)" if whole else f"of {len(own_all)} route champions"
    print(f"fleet {spec.name}: replaying {len(own)} {what}, budget {cfg.budget}", flush=True)
    months, total_rows = [], 0
    refusal_kinds: dict[str, int] = {}
    for year, month in MONTHS[: a.months]:
        first, last = month_days(year, month)
        frame = select_window(flights, contract, first, last)
        if not whole:
            frame = frame[segments_of(spec, frame).isin(own).to_numpy()]
        total_rows += len(frame)
        row: dict[str, Any] = {"month": f"{year}-{month:02d}", "flights": len(frame)}
        shared = None  # policy off's scores of the month: policy on rescores only rows its moved aliases serve
        for side, s in sides.items():
            ts = time.perf_counter()
            scores = s["traffic"].score(frame, reuse=shared)
            if shared is None:
                shared = scores
            s["traffic"].serve(frame, served_at=datetime(year, month, 1, tzinfo=UTC), scores=scores)
            res = run_fleet(
                refs=s["refs"], spec=spec, policy=policy, store=s["store"], day=last, timezone=contract.timezone,
                runs=s["fleet_runs"],
            )  # fmt: skip
            auc = realised_auc(s["store"], contract, first, last)
            counts = dict.fromkeys(("red", "yellow", "green", "not_enough_data"), 0)
            for v in res.judgement.verdicts:  # the replayed routes' models only
                counts[v.status] += v.segment in replayed
            why = top_reasons([v.as_dict() for v in res.judgement.verdicts], replayed)
            row[side] = {
                "counts": counts, "auc": auc["weighted_auc"], "models": auc["models"], "why": why, "scored": scores.scored,
            }  # fmt: skip
            if side == "on":
                at = datetime(last.year, last.month, last.day, 23, 0, tzinfo=UTC)
                cycle = run_cycle(
                    contract, registry, s["store"], s["runs"], s["queue"], spec, s["fleet_runs"].latest(spec.name),
                    cfg, gate, owner=policy.owner, webhook_url=None, original=original, at=at,
                )  # fmt: skip
                acts = [d.action for d in cycle.decisions]
                row["promoted"], row["refused"] = acts.count("promoted"), acts.count("refused")
                row["over_budget"], row["withheld"] = acts.count("over_budget"), acts.count("withheld")
                row["decisions"] = [d.as_dict() for d in cycle.decisions if d.action in ("promoted", "refused", "withheld")]
                for r in cycle.retrains:
                    if r.status == "refused":
                        kind = r.reasons[0].split(":")[0]
                        refusal_kinds[kind] = refusal_kinds.get(kind, 0) + 1
                if row["promoted"]:
                    s["traffic"].router.reload(registry)
                    s["refs"] = load_refs(registry, spec, a.home / "fleet-cache", contract)
            row[side]["seconds"] = round(time.perf_counter() - ts, 1)
        months.append(row)
        print(
            f"{row['month']}: {row['flights']} flights; off {row['off']['counts']} AUC {row['off']['auc']:.4f}; "
            f"on {row['on']['counts']} AUC {row['on']['auc']:.4f}; promoted {row['promoted']} refused {row['refused']} "
            f"over budget {row['over_budget']} withheld {row['withheld']} ({row['off']['seconds']} s / {row['on']['seconds']} s)",
            flush=True,
        )
    out = {
        "command": "nice -n 10 python -m drills.fleet_year --home COPY_OF_FLEET_HOME"
        + (f" --segments {a.segments}" if a.segments else "")
        + (f" --budget {a.budget}" if a.budget is not None else "")
        + (f" --months {a.months}" if a.months != len(MONTHS) else ""),
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(time.perf_counter() - t0, 1),
        "load_start": load_start,
        "load_end": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "segments": len(own),
        "whole_fleet": whole,
        "own_total": len(own_all),
        "routes": own,
        "rows": total_rows,
        "budget": cfg.budget,
        "min_labels": cfg.min_labels,
        "min_holdout": cfg.min_holdout,
        "months": months,
        "totals": {
            "promoted": sum(r["promoted"] for r in months),
            "refused": sum(r["refused"] for r in months),
            "withheld": sum(r["withheld"] for r in months),
            "red_off": sum(r["off"]["counts"]["red"] for r in months),
            "red_on": sum(r["on"]["counts"]["red"] for r in months),
            "auc_off": float(np.nanmean([r["off"]["auc"] for r in months])),
            "auc_on": float(np.nanmean([r["on"]["auc"] for r in months])),
            "refusal_kinds": refusal_kinds,
        },
    }
    a.docs.mkdir(parents=True, exist_ok=True)
    (a.docs / "fleet-year.json").write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")
    write_doc(out, a.docs / "fleet-year.md")
    plot(out, a.docs / "fleet-year.png")
    if a.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        print(f"wrote {a.docs / 'fleet-year.md'} in {out['seconds']} s")


if __name__ == "__main__":
    main()
