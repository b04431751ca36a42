"""Fleet drills and the fleet's no-drift evaluation.

`FleetTraffic` serves real flights the way the API does (the same `score_fleet` routing and
`LoadedModel` code, in process, so thousands of rows take seconds instead of HTTP round trips)
and writes them, with their labels, to a prediction log. On top of it:

- `no_drift_days`: the fleet's control days (held out of every model's reference) are logged and
  every one of them is judged as a fleet day: how many models are non-green / red per day.
- `fault_drill`: a named fault is injected into the traffic of k of the N segment models (a unit
  change on their temperature feed, a new carrier, a pressure sensor dropping out); the fleet run
  must turn exactly those k red (recall and precision of red).
- `concept_drill`: concept drift on k segments: their flights' labels are changed (inverted, or
  shuffled among the segment's own flights), the inputs are not, so no drift or quality signal can
  see it; only the labelled, model-hurt test (realised ROC AUC) can. Judged at a fixed cadence
  (`lookback` days of labels per model), because the AUC test needs many labels: the fleet's own
  shortest-span-with-30-rows choice judges a large route on one day.

    python -m drills.fleet --home .driftlight [--json]    (after `driftlight fleet train`)
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from core.fleet import champion_versions, load_refs, segment_of_model
from core.fleet_monitor import Key, count_local, judge_counts
from core.logstore import LogStore
from core.registry import Registry
from data_contracts.contract import Contract
from data_contracts.fleet import FleetSpec
from data_contracts.windows import local_dates, on_days
from drills.calibrate import nan_spike
from drills.catalogue import fahrenheit_to_celsius, new_category
from drills.replay import to_record
from monitoring.fleet import Counts, ModelRef
from monitoring.policy import PolicySettings
from service.fleet import FleetRouter
from service.model import LoadedModel, frame_from_records

Fault = Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame]
FAULTS: dict[str, tuple[str, Fault]] = {
    "unit-change": ("temperature sent in °C on these routes' feed", fahrenheit_to_celsius("temp")),
    "new-carrier": ("a new carrier code on 30 % of these routes' flights", new_category("carrier", "ZZ", 0.3)),
    "pressure-dropout": ("the pressure feed of these routes is dead: every reading missing", nan_spike("pressure", 1.0)),
}

LabelFault = Callable[[pd.Series, np.random.Generator], pd.Series]


def invert_labels(share: float) -> LabelFault:
    """A seeded `share` of the rows get the opposite label (late <-> on time)."""

    def inject(y: pd.Series, rng: np.random.Generator) -> pd.Series:
        out = y.copy()
        hit = rng.random(len(y)) < share
        out[hit] = 1 - out[hit]
        return out

    return inject


def permute_labels(share: float) -> LabelFault:
    """A seeded `share` of the rows get their labels shuffled among themselves: the late rate stays,
    the relation to the inputs goes (ROC AUC tends to 0.5 at share 1)."""

    def inject(y: pd.Series, rng: np.random.Generator) -> pd.Series:
        out = y.copy()
        idx = np.flatnonzero(rng.random(len(y)) < share)
        out.iloc[idx] = y.iloc[rng.permutation(idx)].to_numpy()
        return out

    return inject


CONCEPTS: dict[str, tuple[str, LabelFault]] = {
    "concept-inverted": ("concept drift: late means on time on these routes (every label inverted)", invert_labels(1.0)),
    "concept-permuted": ("concept drift: these routes' labels shuffled among their flights (rate kept)", permute_labels(1.0)),
    "concept-permuted-half": ("concept drift, half strength: half of these routes' labels shuffled", permute_labels(0.5)),
}


def serial_ids(start: int = 1) -> Iterator[str]:
    """Prediction ids start, start + 1, ... as 32 hex digits (never a drill id: core.ids marks those
    at digit 12, which stays 0 here).

    For a drill that must give the same answer twice: the log is read back ordered by (event time,
    prediction id), and the flights of one hour share their event time, so uuid4 ids handed them back
    in a new order each run; `concept_power`'s seeded label shuffle, applied by position, then gave
    different flights each label (two runs on one fleet found 0 and 1 of 30 shuffled routes red).
    With these ids the log holds each hour's flights in the order they were served, run after run.
    Unique within one iterator: give one `FleetTraffic` per store, or one iterator to all of them."""
    return (f"{n:032x}" for n in itertools.count(start))


class FleetTraffic:
    """The fleet's champions loaded in process, serving frames of flights into a log store.

    `ids`: where prediction ids come from (default a uuid4 each, as the service's are random);
    `serial_ids()` makes the log, and everything read from it, the same on every run."""

    def __init__(
        self, registry: Registry, spec: FleetSpec, contract: Contract, store: LogStore, *, ids: Iterator[str] | None = None
    ) -> None:
        self.spec, self.contract, self.store = spec, contract, store
        self._ids = ids
        versions = champion_versions(registry, spec)
        self.router = FleetRouter(spec)
        self.router.reload(registry)
        gv = versions[spec.global_model]
        self.global_model = LoadedModel(spec.global_model, gv, spec.alias, registry.load(spec.global_model, gv))
        self.feature_names = [str(n) for n in self.global_model.features.get_feature_names_out()]

    def records(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """`frame`'s rows as the service receives them (contract fields; the timestamp validated
        into a datetime)."""
        recs = [to_record(r, self.contract) for r in frame.to_dict("records")]
        for r in recs:
            r["time_hour"] = datetime.fromisoformat(r["time_hour"].replace("Z", "+00:00"))
        return recs

    def score(self, frame: pd.DataFrame, reuse: FleetScores | None = None) -> FleetScores:
        """Every row of `frame` scored by its route's champion, else the global model: the routing
        of `service.scoring.score_fleet` and its batch path (`LoadedModel.predict_frame`), with each
        model's rows of the whole frame as one batch.

        `reuse`: scores of the same `frame` by another fleet (e.g. the replay's other side); rows
        whose model (name and version) is the same here keep those scores, only the others are
        scored. A row's score does not depend on the rows batched with it, so this is the score
        the model would give. One OpenMP thread, as each service worker scores (service/app.py):
        on 2 shared cores under load the tree predictor's 2 threads took ~10x as long as one."""
        recs = reuse.records if reuse is not None else self.records(frame)
        models, seg = self.router.models, self.spec.segment_of
        chosen = [models.get(seg(r), self.global_model) for r in recs]
        n = len(recs)
        probs = list(reuse.probabilities) if reuse is not None else [0.0] * n
        feats = list(reuse.features) if reuse is not None else [None] * n
        per_row = list(reuse.per_row) if reuse is not None else [("", "", 0.0)] * n
        by_model: dict[str, tuple[LoadedModel, list[int]]] = {}
        for i, m in enumerate(chosen):
            if reuse is None or reuse.per_row[i][:2] != (m.name, m.version):
                by_model.setdefault(m.name, (m, []))[1].append(i)
        with threadpool_limits(limits=1, user_api="openmp"):
            for m, idx in by_model.values():
                ps, xs = m.predict_frame(frame_from_records([recs[i] for i in idx], self.contract.field_names))
                for j, i in enumerate(idx):
                    probs[i], feats[i], per_row[i] = float(ps[j]), xs[j], (m.name, m.version, m.threshold)
        return FleetScores(recs, probs, feats, per_row, sum(len(idx) for _, idx in by_model.values()))

    def serve(
        self, frame: pd.DataFrame, *, labels: bool = True, served_at: datetime | None = None, scores: FleetScores | None = None
    ) -> int:
        """Score and log every row of `frame` (flights with contract fields and `late`); then log
        the labels of the rows that have one. Returns the rows logged. `scores`: `frame` already
        scored by this fleet (`score`)."""
        now = served_at or datetime.now(UTC)
        sc = scores if scores is not None else self.score(frame)
        late = frame["late"].to_numpy(dtype="float64", na_value=np.nan) if labels else None
        rows, lab = [], []
        for i, rec in enumerate(sc.records):
            name, version, thr = sc.per_row[i]
            pid = next(self._ids) if self._ids is not None else uuid.uuid4().hex
            p, x = sc.probabilities[i], sc.features[i]
            rows.append(
                {"prediction_id": pid, "served_at": now, "event_time": rec["time_hour"], "model_name": name,
                 "model_version": version, "probability": p, "late": int(p >= thr), "warnings": [], "inputs": rec,
                 "features": dict(zip(self.feature_names, np.asarray(x).tolist(), strict=True))}
            )  # fmt: skip
            if late is not None and not math.isnan(late[i]):
                lab.append({"prediction_id": pid, "label": int(late[i]), "received_at": now})
        self.store.insert_predictions(rows)
        if lab:
            self.store.upsert_labels(lab)
        return len(rows)


@dataclass(frozen=True)
class FleetScores:
    """One frame scored by a fleet: per row the served record, P(late), the served feature vector
    and (model name, version, threshold); `scored`: rows the models scored (the rest reused)."""

    records: list[dict[str, Any]]
    probabilities: list[float]
    features: list[Any]
    per_row: list[tuple[str, str, float]]
    scored: int


def judge_days(
    refs: Mapping[str, ModelRef], counts: Mapping[Key, Counts], spec: FleetSpec, policy: PolicySettings, days: Sequence[date]
) -> list[dict[str, Any]]:
    """One fleet verdict per day in `days` from counts of the whole log (each day sees its trailing window)."""
    out = []
    for d in days:
        j = judge_counts(refs, counts, spec, policy, d)
        c = j.counts
        out.append(
            {
                "day": d.isoformat(),
                **c,
                "non_green": c["red"] + c["yellow"],
                "flagged": [
                    (v.segment, v.status, v.reasons[0].message if v.reasons else "")
                    for v in j.verdicts
                    if v.status in ("red", "yellow")
                ],
                "tests": j.tests,
                "discoveries": j.discoveries,
            }
        )
    return out


@dataclass(frozen=True)
class DrillResult:
    fault: str
    faulty: list[str]
    red: list[str]
    yellow: list[str]
    recall: float
    precision: float
    discoveries: int
    why_red: dict[str, str] = dataclasses.field(
        default_factory=dict
    )  # red segment -> "signal:feature (question)" of its top reason
    cadence: str = "monitor"  # "monitor" (the fleet file's lookback) or "<d>d" (every model judged on d days)
    labelled: dict[str, int] = dataclasses.field(default_factory=dict)  # faulty segment -> labelled rows judged

    @property
    def exact(self) -> bool:
        return sorted(self.faulty) == sorted(self.red)


def at_cadence(spec: FleetSpec, days: int | None) -> FleetSpec:
    """`spec` judging every model on exactly `days` trailing days (None: the fleet file's own
    shortest span of its lookbacks with min_rows rows)."""
    if days is None:
        return spec
    return dataclasses.replace(spec, monitor=dataclasses.replace(spec.monitor, lookback_days=(days,)))


def segments(spec: FleetSpec, frame: pd.DataFrame) -> pd.Series:
    return pd.Series(spec.segment_values([frame[k].to_numpy() for k in spec.segment_by]), index=frame.index)


def judge_drill(
    traffic: FleetTraffic,
    refs: Mapping[str, ModelRef],
    first_day: date,
    fault: str,
    faulty_segments: Sequence[str],
    spec: FleetSpec,
    policy: PolicySettings,
    day: date,
    cadence: int | None = None,
) -> DrillResult:
    """Count the drill's log from `first_day` to `day`, judge the fleet on `day` (at `cadence` days,
    or the fleet file's own lookback) and compare the red models with the faulty ones."""
    from data_contracts.windows import window_bounds

    lo, hi = window_bounds(first_day, day, traffic.contract.timezone)
    counts, _ = count_local(refs, traffic.store, lo, hi, traffic.contract.timezone)
    j = judge_counts(refs, counts, at_cadence(spec, cadence), policy, day)
    red = [v.segment for v in j.verdicts if v.status == "red"]
    yellow = [v.segment for v in j.verdicts if v.status == "yellow"]
    why = {
        v.segment: f"{v.reasons[0].signal}:{v.reasons[0].feature or ''} ({v.reasons[0].question})"
        for v in j.verdicts
        if v.status == "red"
    }
    labelled = {v.segment: v.labelled for v in j.verdicts if v.segment in set(faulty_segments)}
    tp = len(set(red) & set(faulty_segments))
    return DrillResult(
        fault, sorted(faulty_segments), sorted(red), sorted(yellow),
        tp / len(faulty_segments) if faulty_segments else 1.0, tp / len(red) if red else 1.0, j.discoveries, why,
        "monitor" if cadence is None else f"{cadence}d", labelled,
    )  # fmt: skip


def fault_drill(
    traffic: FleetTraffic,
    refs: Mapping[str, ModelRef],
    frame: pd.DataFrame,
    fault: str,
    faulty_segments: Sequence[str],
    spec: FleetSpec,
    policy: PolicySettings,
    day: date,
    *,
    seed: int = 0,
) -> DrillResult:
    """Serve `frame` (days ending on `day`) with `fault` injected into `faulty_segments`' rows only,
    judge the fleet on `day`, and compare the red models with the faulty ones."""
    _, inject = FAULTS[fault]
    hit = segments(traffic.spec, frame).isin(set(faulty_segments))
    rng = np.random.default_rng(seed)
    bad = inject(frame[hit].copy(), rng)
    traffic.serve(pd.concat([frame[~hit], bad]).sort_values("time_hour", kind="mergesort"))
    lo_day = min(local_dates(frame, traffic.contract))
    return judge_drill(traffic, refs, lo_day, fault, faulty_segments, spec, policy, day)


def concept_drill(
    traffic: FleetTraffic,
    refs: Mapping[str, ModelRef],
    frame: pd.DataFrame,
    concept: str,
    faulty_segments: Sequence[str],
    spec: FleetSpec,
    policy: PolicySettings,
    day: date,
    *,
    cadences: Sequence[int | None] = (28,),
    seed: int = 0,
) -> list[DrillResult]:
    """Serve `frame` (labelled flights of days ending on `day`) with the labels of
    `faulty_segments`' flights changed by `concept` (each segment on its own rows; inputs, hence
    predictions, untouched), then judge the fleet on `day` once per cadence in `cadences` (days
    of labels per model; None = the fleet file's own lookback)."""
    _, inject = CONCEPTS[concept]
    seg = segments(traffic.spec, frame)
    rng = np.random.default_rng(seed)
    out = frame.copy()
    for s in sorted(set(faulty_segments)):
        rows = (seg == s).to_numpy() & out["late"].notna().to_numpy()
        out.loc[rows, "late"] = inject(out.loc[rows, "late"], rng).to_numpy()
    traffic.serve(out)
    lo_day = min(local_dates(frame, traffic.contract))
    return [judge_drill(traffic, refs, lo_day, concept, faulty_segments, spec, policy, day, c) for c in cadences]


def split_halves(days: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Control days in date order: the tuning half (1st, 3rd, ...) and the held-out half (2nd, 4th, ...)."""
    ordered = sorted(days, key=lambda d: str(d["day"]))
    return {"tuning": ordered[0::2], "held_out": ordered[1::2]}


def own_segments(registry: Registry, spec: FleetSpec) -> list[str]:
    return sorted(segment_of_model(spec, n) for n in champion_versions(registry, spec) if n != spec.global_model)


# The concept drills judge the control days of the longest lookback (28 days) ending on the last
# control day, on routes with at least this many labelled flights there (the AUC test's power
# grows with labels: docs/fleet.md has the figures by cadence and strength).
CONCEPT_DAYS = 28
CONCEPT_MIN_LABELS = 200
CONCEPT_CADENCES: tuple[int | None, ...] = (None, 1, 7, 28)


def concept_drills(
    home: Path, traffic: FleetTraffic, refs: Mapping[str, ModelRef], spec: FleetSpec, policy: PolicySettings,
    contract: Contract, data: pd.DataFrame, control: Sequence[str], names: list[str], rng: np.random.Generator, k: int,
    registry: Registry,
) -> dict[str, Any]:  # fmt: skip
    """Every concept in CONCEPTS on the same k routes, each judged at every cadence in CONCEPT_CADENCES."""
    last = date.fromisoformat(sorted(control)[-1])
    month = [d for d in sorted(control) if (last - date.fromisoformat(d)).days < CONCEPT_DAYS]
    frame = on_days(contract, data, month)
    n_lab = segments(spec, frame)[frame["late"].notna()].value_counts()
    cands = [s for s in own_segments(registry, spec) if n_lab.get(s, 0) >= CONCEPT_MIN_LABELS]
    faulty = sorted(rng.choice(cands, size=min(k, len(cands)), replace=False).tolist())
    out: list[dict[str, Any]] = []
    for concept, (what, _) in CONCEPTS.items():
        db = home / "fleet-eval" / f"drill-{concept}.db"
        db.unlink(missing_ok=True)
        traffic.store = LogStore(f"sqlite:///{db}", contract, names)
        traffic.store.create_schema()
        for res in concept_drill(traffic, refs, frame, concept, faulty, spec, policy, last, cadences=CONCEPT_CADENCES):
            out.append({**res.__dict__, "exact": res.exact, "what": what})
    return {
        "concept_day": last.isoformat(), "concept_control_days": month, "concept_candidates": len(cands),
        "concept_candidate_labels": {s: int(n_lab[s]) for s in cands}, "concept_faulty": faulty, "concept_drills": out,
    }  # fmt: skip


def concept_labels(
    logged: pd.DataFrame, seg: pd.Series, faulty: Sequence[str], inject: LabelFault, rng: np.random.Generator,
    received_at: datetime,
) -> list[dict[str, Any]]:  # fmt: skip
    """The labels `inject` gives the `faulty` routes' rows of `logged` (labelled rows of the log, as
    `iter_predictions` orders them; `seg`: each row's route), route by route in `faulty`'s order, as
    label rows for `LogStore.upsert_labels`. A shuffle moves labels by position: the same log order
    (`serial_ids`) and the same `rng` state give the same labels to the same flights."""
    out: list[dict[str, Any]] = []
    for s in faulty:
        mine = logged[(seg == s).to_numpy()]
        y = inject(mine["label"].astype("float64"), rng)
        out += [
            {"prediction_id": p, "label": int(v), "received_at": received_at}
            for p, v in zip(mine["prediction_id"], y, strict=True)
        ]
    return out


def concept_power(
    traffic: FleetTraffic, refs: Mapping[str, ModelRef], frame: pd.DataFrame, spec: FleetSpec, policy: PolicySettings,
    day: date, candidates: Sequence[str], k: int, draws: int, rng: np.random.Generator, workdir: Path,
    concepts: Sequence[str] = ("concept-inverted", "concept-permuted"), cadences: Sequence[int | None] = CONCEPT_CADENCES,
) -> dict[str, Any]:  # fmt: skip
    """Power of the concept drills beyond one draw: `draws` random sets of k routes among
    `candidates`, each concept on each set, judged at each cadence. The clean traffic is served
    once; each variant is a copy of that log with the faulty routes' labels rewritten (the labels
    the injection gives; predictions do not depend on labels). Returns every faulty model's
    labelled rows and whether it was red, and the red models that were not faulty, per cadence."""
    import sqlite3
    from contextlib import closing

    from data_contracts.windows import window_bounds

    base = workdir / "concept-power-base.db"
    base.unlink(missing_ok=True)
    names = traffic.feature_names
    traffic.store = LogStore(f"sqlite:///{base}", traffic.contract, names)
    traffic.store.create_schema()
    traffic.serve(frame)
    tz = traffic.contract.timezone
    lo, hi = window_bounds(min(local_dates(frame, traffic.contract)), day, tz)
    logged = pd.concat(list(traffic.store.iter_predictions(lo, hi, chunksize=100_000)), ignore_index=True)
    logged = logged[logged["label"].notna()]
    seg = segments(spec, logged)
    later = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    false_red: dict[str, int] = {}
    for draw in range(draws):
        faulty = sorted(rng.choice(list(candidates), size=min(k, len(candidates)), replace=False).tolist())
        for concept in concepts:
            _, inject = CONCEPTS[concept]
            db = workdir / "concept-power.db"
            db.unlink(missing_ok=True)
            with closing(sqlite3.connect(base)) as src, closing(sqlite3.connect(db)) as dst:
                src.backup(dst)  # the log is in WAL mode: a file copy would miss what the WAL holds
            store = LogStore(f"sqlite:///{db}", traffic.contract, names)
            store.upsert_labels(concept_labels(logged, seg, faulty, inject, rng, later))
            counts, _ = count_local(refs, store, lo, hi, tz)
            store.engine.dispose()
            for c in cadences:
                j = judge_counts(refs, counts, at_cadence(spec, c), policy, day)
                cad = "monitor" if c is None else f"{c}d"
                red = {v.segment for v in j.verdicts if v.status == "red"}
                for v in j.verdicts:
                    if v.segment in faulty:
                        rows.append(
                            {"draw": draw, "concept": concept, "cadence": cad, "segment": v.segment, "labelled": v.labelled,
                             "days": v.days, "validation_auc": round(refs[v.name].validation_auc, 3), "red": v.status == "red",
                             "model_hurt": bool(v.reasons) and v.reasons[0].question == "model_hurt"}
                        )  # fmt: skip
                key = f"{concept}@{cad}"
                false_red[key] = false_red.get(key, 0) + len(red - set(faulty))
    return {"draws": draws, "k": k, "rows": rows, "false_red": false_red}


def power_table(rows: Sequence[Mapping[str, Any]], buckets: Sequence[int] = (0, 50, 100, 200, 400)) -> list[dict[str, Any]]:
    """Recall of red by concept, cadence and labelled rows judged (buckets: [0, 50) = no AUC test
    below the fleet's min_labels 50, [50, 100), [100, 200), ...)."""
    out = []
    keys = sorted({(r["concept"], r["cadence"]) for r in rows})
    edges = [*buckets, math.inf]
    for concept, cad in keys:
        for a, b in itertools.pairwise(edges):
            hit = [r for r in rows if r["concept"] == concept and r["cadence"] == cad and a <= r["labelled"] < b]
            if hit:
                out.append(
                    {"concept": concept, "cadence": cad, "labels": f"{a}-{'' if b == math.inf else b - 1}",
                     "faulty_models": len(hit), "red": sum(r["red"] for r in hit)}
                )  # fmt: skip
    return out


def main() -> None:
    # An entry point, like the CLI: MLflow reads these at import (telemetry would try the network;
    # without the second, every model load drew a progress bar: 305 of them on stderr per run).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from core.registry import registry_from_settings
    from core.settings import Settings
    from data_contracts.contract import load_contract
    from data_contracts.fleet import load_fleet
    from features.pipeline import build_features
    from monitoring.policy import load_policy
    from training.data import load_flights

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True, help="the home `driftlight fleet train` wrote to")
    ap.add_argument("--k", type=int, default=5, help="faulty models per drill")
    ap.add_argument("--concept-draws", type=int, default=6, help="random sets of k routes for the concept drills' power")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    settings = Settings(home=a.home)
    contract = load_contract()
    spec = load_fleet(settings.fleet_file, contract)
    policy = load_policy()
    registry = registry_from_settings(settings)
    refs = load_refs(registry, spec, a.home / "fleet-cache", contract)
    data = load_flights()
    md_days = json.loads((a.home / "fleet-cache" / f"{spec.global_model}@{refs[spec.global_model].version}.json").read_text())
    control = md_days["metadata"]["monitoring"]["control_days"]
    names = [str(n) for n in build_features(contract).get_feature_names_out()]
    out: dict[str, Any] = {"fleet": spec.name, "models": len(refs), "control_days": len(control)}

    t0 = time.perf_counter()
    db = a.home / "fleet-eval" / "nodrift.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)
    store = LogStore(f"sqlite:///{db}", contract, names)
    store.create_schema()
    traffic = FleetTraffic(registry, spec, contract, store, ids=serial_ids())  # the same log on every run
    out["load_seconds"] = round(time.perf_counter() - t0, 1)
    frame = on_days(contract, data, control)
    traffic.serve(frame)
    out["serve_seconds"] = round(time.perf_counter() - t0 - out["load_seconds"], 1)
    out["nodrift_rows"] = len(frame)
    lo, hi = (
        pd.Timestamp(min(control)).tz_localize(contract.timezone),
        pd.Timestamp(max(control)).tz_localize(contract.timezone) + pd.Timedelta(days=1),
    )
    counts, _ = count_local(refs, store, lo.to_pydatetime(), hi.to_pydatetime(), contract.timezone)
    days = judge_days(refs, counts, spec, policy, [date.fromisoformat(d) for d in control])
    out["nodrift_days"] = days
    out["nodrift_mean_non_green"] = float(np.mean([d["non_green"] for d in days]))
    out["nodrift_red_days"] = sum(1 for d in days if d["red"])
    out["nodrift_total_red"] = sum(d["red"] for d in days)
    # The budget's knobs were chosen on alternate control days (the 1st, 3rd, ... in date order);
    # the others are held out: report both, and the held-out half as the result.
    for half, picked in split_halves(days).items():
        out[f"nodrift_{half}"] = {
            "days": [d["day"] for d in picked],
            "mean_non_green": float(np.mean([d["non_green"] for d in picked])) if picked else math.nan,
            "red_model_days": sum(d["red"] for d in picked),
        }
    out["nodrift_seconds"] = round(time.perf_counter() - t0, 1)

    rng = np.random.default_rng(0)
    last7 = sorted(control)[-7:]
    # Faults go into models the window can judge (>= min_rows rows over these days): a model below
    # that is not_enough_data by design, whatever its traffic carries.
    window = on_days(contract, data, last7)
    sizes = pd.Series(spec.segment_values([window[k].to_numpy() for k in spec.segment_by])).value_counts()
    own = [s for s in own_segments(registry, spec) if sizes.get(s, 0) >= spec.monitor.min_rows]
    out["drill_candidates"] = len(own)
    drills = []
    for fault in FAULTS:
        db = a.home / "fleet-eval" / f"drill-{fault}.db"
        db.unlink(missing_ok=True)
        store = LogStore(f"sqlite:///{db}", contract, names)
        store.create_schema()
        traffic.store = store
        faulty = sorted(rng.choice(own, size=a.k, replace=False).tolist())
        res = fault_drill(
            traffic, refs, on_days(contract, data, last7), fault, faulty, spec, policy, date.fromisoformat(last7[-1])
        )
        drills.append({**res.__dict__, "exact": res.exact, "what": FAULTS[fault][0]})
    out["drills"] = drills
    out.update(concept_drills(a.home, traffic, refs, spec, policy, contract, data, control, names, rng, a.k, registry))
    t1 = time.perf_counter()
    # Power: every route whose 28 days hold enough labels for the AUC test to exist (min_labels).
    cframe = on_days(contract, data, out["concept_control_days"])
    n_lab = segments(spec, cframe)[cframe["late"].notna()].value_counts()
    judged = [s for s in own_segments(registry, spec) if n_lab.get(s, 0) >= spec.monitor.min_labels]
    power = concept_power(
        traffic, refs, cframe, spec, policy, date.fromisoformat(out["concept_day"]), judged, a.k, a.concept_draws, rng,
        a.home / "fleet-eval",
    )  # fmt: skip
    out["concept_power"] = {**power, "candidates": len(judged), "table": power_table(power["rows"])}
    out["concept_seconds"] = round(time.perf_counter() - t1, 1)
    if a.json:
        print(json.dumps(out, indent=2, default=str))
        return
    print(f"fleet {spec.name}: {len(refs)} models, {len(control)} no-drift control days, {out['nodrift_rows']} flights")
    mean, red = out["nodrift_mean_non_green"], out["nodrift_total_red"]
    print(f"  no-drift: mean non-green models per day {mean:.2f}; red models in total {red}")
    for half in ("tuning", "held_out"):
        h = out[f"nodrift_{half}"]
        print(
            f"    {half}: {len(h['days'])} days, mean non-green {h['mean_non_green']:.2f}, red model-days {h['red_model_days']}"
        )
    for d in days:
        print(f"    {d['day']}: red {d['red']} yellow {d['yellow']} green {d['green']} n/e/d {d['not_enough_data']}")
    for r in drills:
        print(f"  drill {r['fault']} on {r['faulty']}: red {r['red']} (recall {r['recall']:.0%}, precision {r['precision']:.0%})")
    print(
        f"  concept drift on {out['concept_faulty']} (of {out['concept_candidates']} routes with >= {CONCEPT_MIN_LABELS}"
        f" labelled flights in the {CONCEPT_DAYS} days to {out['concept_day']}), by cadence:"
    )
    for r in out["concept_drills"]:
        print(
            f"    {r['fault']:<22} {r['cadence']:<8} red {r['red']} (recall {r['recall']:.0%}, precision {r['precision']:.0%});"
            f" labels judged {r['labelled']}"
        )
    p = out["concept_power"]
    print(f"  concept power: {p['draws']} draws of {p['k']} among {p['candidates']} routes with >= min_labels labels")
    for t in p["table"]:
        print(f"    {t['concept']:<22} {t['cadence']:<8} labels {t['labels']:<8} red {t['red']}/{t['faulty_models']}")
    print(f"    red models not faulty: {p['false_red']}")


if __name__ == "__main__":
    main()
