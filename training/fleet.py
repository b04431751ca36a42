"""`driftlight fleet train`: one model per segment (a route) plus a global model, in parallel.

Per segment (`fit_segment`, pure, runs in a worker process): the same Pipeline as the single model
(shared feature code) with smaller trees (`segment_params` in the fleet file: a route has 200 to
4,000 labelled flights in Jan-Mar), the same time split, the non-ML baseline fitted on the same
rows, the threshold chosen on validation, the frozen drift profile and quality reference on the
segment's reference days, and the fleet null (monitoring.fleet.estimate_null): overdispersion
factors from resampled whole reference days. Reference and control days are drawn once for the
whole fleet, so every model's control days are the same days (a no-drift fleet day is one day).

A segment gets its own model when it has `min_rows` labelled rows and both classes in validation;
its model serves (alias `champion`) when it beats its own baseline on validation, the single
model's bar. Every other segment is served by the global model, fitted on all rows; the global
model's monitoring profile is built from the rows it will actually serve (the pooled small and
fallen-back segments), so its drift is measured against its own traffic mix.

Workers fit; the parent registers (MLflow on SQLite takes one writer at a time) while the next
fits run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from core.registry import ModelBundle, Registry
from data_contracts.contract import Contract
from data_contracts.fleet import GLOBAL, FleetSpec
from data_contracts.windows import local_dates, on_days, select_window
from monitoring.fleet import count_days, estimate_null
from monitoring.profile import ReferenceProfile
from training.data import contract_frame, load_flights
from training.evaluate import evaluate
from training.reference import PREDICTION_COLUMN, derived_features, drift_profile, quality_reference, split_days
from training.train import Fitted, beats, check_contract, fit_and_evaluate, labelled


@dataclass(frozen=True)
class SegmentOutcome:
    segment: str
    model_name: str
    rows_fit: int
    rows_validation: int
    status: str  # trained | skipped
    reason: str
    beats_baseline: bool = False
    roc_auc: float = float("nan")
    baseline_roc_auc: float = float("nan")
    global_roc_auc: float = float("nan")  # the global model on this segment's validation rows
    seconds: float = 0.0
    bundle: ModelBundle | None = None
    version: str | None = None
    served_by: str = ""  # own | global

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("bundle")
        return d


@dataclass(frozen=True)
class FleetTrainResult:
    fleet: str
    segments: list[dict[str, Any]]
    models_registered: int
    own_champions: int
    beat_baseline: int
    fell_back: dict[str, str]
    global_model: dict[str, Any]
    seconds: float
    workers: int
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _frames_with_derived(contract: Contract, ref: pd.DataFrame, transformer: Any, p: np.ndarray) -> pd.DataFrame:
    """The reference rows as the log holds them: contract fields, derived `f_` features, the
    model's probability and the label (what the fleet monitor counts)."""
    frame = contract_frame(contract, ref).reset_index(drop=True)
    names = [str(n) for n in transformer.get_feature_names_out()]
    X = transformer.transform(contract_frame(contract, ref))
    for name in derived_features(contract, transformer):
        frame[f"f_{name}"] = X[:, names.index(name)]
    frame[PREDICTION_COLUMN] = p
    frame["label"] = ref["late"].to_numpy()
    return frame


def monitoring_section(
    contract: Contract, spec: FleetSpec, ref: pd.DataFrame, pipeline: Any, ref_days: list[str], control_days: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata["monitoring"], drift profile) of a fleet model, on its reference rows `ref`."""
    transformer = pipeline.named_steps["features"]
    p = pipeline.predict_proba(contract_frame(contract, ref))[:, 1]
    profile = drift_profile(contract, ref, transformer, p, spec.train.seed, declared_categories=True)
    label_rate = float(ref["late"].mean())
    frame = _frames_with_derived(contract, ref, transformer, p)
    prof = ReferenceProfile.from_dict(profile)
    day_of = local_dates(ref, contract).map(str).to_numpy()
    per_day = count_days(prof, frame, day_of)
    # each day's values of every numeric column: the held-out null of "beyond the reference range"
    rows_of = {str(d): np.flatnonzero(day_of == d) for d in np.unique(day_of)}
    by_day = {
        c.name: {
            d: pd.to_numeric(frame[c.name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)[i]
            for d, i in rows_of.items()
        }
        for c in prof.numeric
        if c.name in frame
    }
    null = estimate_null(
        prof,
        per_day,
        label_rate,
        days=spec.train.null_days,
        resamples=spec.train.null_resamples,
        seed=spec.train.seed,
        day_values=by_day,
    )
    section = {
        "reference_days": ref_days,
        "control_days": control_days,
        "reference_rows": len(ref),
        "label_rate": label_rate,
        "mean_prediction": float(p.mean()),
        "quality_reference": quality_reference(contract, ref),
        "fleet_null": null,
    }
    return section, profile


def fit_segment(
    contract: Contract,
    spec: FleetSpec,
    segment: str,
    fit: pd.DataFrame,
    val: pd.DataFrame,
    ref_days: list[str],
    control_days: list[str],
    params: Mapping[str, Any],
) -> SegmentOutcome:
    """Fit and evaluate one segment's model (pure: frames in, outcome out; runs in a worker)."""
    t0 = time.perf_counter()
    name = spec.model_name(segment)
    n_fit, n_val = len(fit), len(val)
    total = n_fit + n_val
    if total < spec.train.min_rows:
        return SegmentOutcome(segment, name, n_fit, n_val, "skipped", f"{total} labelled rows < min_rows {spec.train.min_rows}")
    k = int(val["late"].sum())
    if min(k, n_val - k) < spec.train.min_validation_class_rows:
        return SegmentOutcome(
            segment, name, n_fit, n_val, "skipped",
            f"validation has {k} late / {n_val - k} on-time rows (< {spec.train.min_validation_class_rows} of a class)",
        )  # fmt: skip
    f = fit_and_evaluate(contract, fit, val, seed=spec.train.seed, model_params=params)
    pipeline, baseline, threshold, model_m, base_m = f.pipeline, f.baseline, f.threshold, f.model, f.baseline_metrics
    ref = on_days(contract, fit, ref_days)
    monitoring, profile = monitoring_section(contract, spec, ref if len(ref) else fit, pipeline, ref_days, control_days)
    t = spec.train
    metadata = {
        "contract": {"name": contract.name, "version": contract.version},
        "fleet": {"name": spec.name, "segment": segment, "segment_by": list(spec.segment_by)},
        "window": {"start": t.start.isoformat(), "end": t.end.isoformat()},
        "fit_window": {
            "start": t.start.isoformat(),
            "end": (t.end - timedelta(days=t.validation_days)).isoformat(),
            "rows": n_fit,
        },
        "validation_window": {
            "start": (t.end - timedelta(days=t.validation_days - 1)).isoformat(),
            "end": t.end.isoformat(),
            "rows": n_val,
        },
        "threshold": threshold,
        "seed": t.seed,
        "validation_metrics": model_m.as_dict(),
        "baseline_metrics": base_m.as_dict(),
        "slices": {},
        "input_columns": list(pipeline.named_steps["features"].input_columns()),
        "feature_names": [str(n) for n in pipeline.named_steps["features"].get_feature_names_out()],
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "monitoring": monitoring,
    }
    bundle = ModelBundle(pipeline=pipeline, baseline=baseline, metadata=metadata, profile=profile)
    ok = beats(model_m, base_m)
    return SegmentOutcome(
        segment, name, n_fit, n_val, "trained",
        f"ROC AUC {model_m.roc_auc:.3f} vs baseline {base_m.roc_auc:.3f}"
        + ("" if ok else ": does not beat its baseline, the global model serves"),
        ok, model_m.roc_auc, base_m.roc_auc, seconds=time.perf_counter() - t0, bundle=bundle,
    )  # fmt: skip


def _register(
    registry: Registry,
    spec: FleetSpec,
    contract: Contract,
    name: str,
    bundle: ModelBundle,
    segment: str,
    champion: bool,
    val: pd.DataFrame,
) -> str:
    md = bundle.metadata
    metrics = {f"val_{k}": v for k, v in md["validation_metrics"].items()}
    metrics.update({f"baseline_val_{k}": v for k, v in md["baseline_metrics"].items()})
    params = {
        "fleet": spec.name,
        "segment": segment,
        "rows_fit": md["fit_window"]["rows"],
        "rows_validation": md["validation_window"]["rows"],
        **{f"model__{k}": v for k, v in bundle.pipeline.named_steps["model"].get_params().items() if k != "categorical_features"},
    }
    tags = {"fleet": spec.name, "segment": segment, "contract_version": contract.version, "beats_baseline": str(champion).lower()}
    mv = registry.register(
        name, bundle, params=params, metrics=metrics, artifacts={}, tags=tags, input_example=contract_frame(contract, val.head(5))
    )
    if champion:
        registry.set_alias(name, spec.alias, mv.version)
    return mv.version


def segments_of(spec: FleetSpec, frame: pd.DataFrame) -> pd.Series:
    return pd.Series(spec.segment_values([frame[k].to_numpy() for k in spec.segment_by]), index=frame.index)


def train_fleet(
    contract: Contract,
    registry: Registry,
    spec: FleetSpec,
    *,
    frame: pd.DataFrame | None = None,
    workers: int = 2,
    limit: int | None = None,
    on_progress: Callable[[SegmentOutcome], None] | None = None,
) -> FleetTrainResult:
    """Train, evaluate and register every segment's model and the global model.

    `limit` keeps only the `limit` largest segments (tests); `on_progress` is called once per
    segment as it is registered (the CLI's progress bar).
    """
    from joblib import Parallel, delayed

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    t = spec.train
    data = load_flights() if frame is None else frame
    fit_end = t.end - timedelta(days=t.validation_days)
    fit_all = labelled(select_window(data, contract, t.start, fit_end))
    val_all = labelled(select_window(data, contract, fit_end + timedelta(days=1), t.end))
    check_contract(contract, pd.concat([fit_all, val_all]))
    timings["load_and_contract_s"] = round(time.perf_counter() - t0, 2)
    ref_days, control_days = split_days(contract, fit_all, t.seed)
    seg_fit, seg_val = segments_of(spec, fit_all), segments_of(spec, val_all)
    sizes = (seg_fit.value_counts().add(seg_val.value_counts(), fill_value=0)).sort_values(ascending=False, kind="mergesort")
    names = [str(s) for s in sizes.index]
    if limit is not None:
        names = names[:limit]
    fit_groups = dict(tuple(fit_all.groupby(seg_fit, sort=False)))
    val_groups = dict(tuple(val_all.groupby(seg_val, sort=False)))
    empty = fit_all.iloc[:0]

    jobs = [
        delayed(fit_segment)(
            contract, spec, s, fit_groups.get(s, empty), val_groups.get(s, empty), ref_days, control_days, t.segment_params
        )
        for s in names
    ]
    outcomes: list[SegmentOutcome] = []
    # The global fit is the longest job: it goes first, beside the segments.
    runner = Parallel(n_jobs=workers, return_as="generator_unordered")
    glob_job = [delayed(fit_and_evaluate)(contract, fit_all, val_all, seed=spec.train.seed)]
    glob: Fitted | None = None
    for out in runner([*glob_job, *jobs]):
        if isinstance(out, Fitted):
            glob = out
            continue
        if out.bundle is not None:
            version = _register(
                registry, spec, contract, out.model_name, out.bundle, out.segment, out.beats_baseline, val_groups[out.segment]
            )
            out = SegmentOutcome(
                **{**out.__dict__, "version": version, "bundle": None, "served_by": "own" if out.beats_baseline else "global"}
            )
        else:
            out = SegmentOutcome(**{**out.__dict__, "served_by": "global"})
        outcomes.append(out)
        if on_progress is not None:
            on_progress(out)
    timings["segments_s"] = round(time.perf_counter() - t0, 2)
    assert glob is not None
    pipeline, baseline, gm, gb = glob.pipeline, glob.baseline, glob.model, glob.baseline_metrics
    own = {o.segment for o in outcomes if o.served_by == "own"}
    # The global model's reference: the rows it will serve (every segment without a champion).
    pooled = fit_all[~seg_fit.isin(own)]
    ref = on_days(contract, pooled, ref_days)
    monitoring, profile = monitoring_section(contract, spec, ref, pipeline, ref_days, control_days)
    metadata = {
        "contract": {"name": contract.name, "version": contract.version},
        "fleet": {"name": spec.name, "segment": GLOBAL, "segment_by": list(spec.segment_by), "serves_except": sorted(own)},
        "window": {"start": t.start.isoformat(), "end": t.end.isoformat()},
        "fit_window": {"start": t.start.isoformat(), "end": fit_end.isoformat(), "rows": len(fit_all)},
        "validation_window": {"start": (fit_end + timedelta(days=1)).isoformat(), "end": t.end.isoformat(), "rows": len(val_all)},
        "threshold": gm.threshold,
        "seed": t.seed,
        "validation_metrics": gm.as_dict(),
        "baseline_metrics": gb.as_dict(),
        "slices": {},
        "input_columns": list(pipeline.named_steps["features"].input_columns()),
        "feature_names": [str(n) for n in pipeline.named_steps["features"].get_feature_names_out()],
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "monitoring": monitoring,
    }
    gbundle = ModelBundle(pipeline=pipeline, baseline=baseline, metadata=metadata, profile=profile)
    gversion = _register(registry, spec, contract, spec.global_model, gbundle, GLOBAL, beats(gm, gb), val_all)
    # How the global model does on each segment's validation rows (is a segment model worth it?).
    if len(val_all):
        gp = pipeline.predict_proba(contract_frame(contract, val_all))[:, 1]
        by_seg = pd.DataFrame({"s": seg_val.to_numpy(), "y": val_all["late"].to_numpy(), "p": gp})
        g_auc = {
            s: float(evaluate(g["y"].to_numpy(), g["p"].to_numpy(), 0.5).roc_auc)
            for s, g in by_seg.groupby("s")
            if g["y"].nunique() == 2
        }
        outcomes = [SegmentOutcome(**{**o.__dict__, "global_roc_auc": g_auc.get(o.segment, float("nan"))}) for o in outcomes]
    timings["total_s"] = round(time.perf_counter() - t0, 2)
    trained = [o for o in outcomes if o.status == "trained"]
    return FleetTrainResult(
        fleet=spec.name,
        segments=[o.row() for o in sorted(outcomes, key=lambda o: -(o.rows_fit + o.rows_validation))],
        models_registered=len(trained) + 1,
        own_champions=len(own),
        beat_baseline=sum(o.beats_baseline for o in trained),
        fell_back={o.segment: o.reason for o in outcomes if o.served_by == "global"},
        global_model={
            "name": spec.global_model,
            "version": gversion,
            "roc_auc": gm.roc_auc,
            "baseline_roc_auc": gb.roc_auc,
            "reference_rows": len(ref),
            "serves_segments_except": len(own),
        },
        seconds=round(time.perf_counter() - t0, 2),
        workers=workers,
        timings=timings,
    )
