"""What training freezes for the monitor: reference days, no-drift control days, quality reference.

The fit window's local days are split, with a seeded draw, into reference days (two thirds) and
control days (one third). The reference describes "normal" for the monitor; the control days are
real traffic from the same period that the monitor must call green (the false-alarm check). Days,
not rows, are drawn because every flight in the same hour at an airport shares one weather
observation: rows of one day are not independent (TARGETS.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from data_contracts.contract import Contract
from data_contracts.windows import local_dates, on_days
from features.transformers import CALENDAR_FEATURES
from monitoring.null import (
    CADENCES,
    MIN_BLOCKS,
    NullBook,
    block_constant_fields,
    blocks,
    effective_blocks,
    estimate_nulls,
    estimate_value_nulls,
)
from monitoring.profile import ReferenceProfile, build_profile, category_counts, numeric_counts
from monitoring.quality import reference_for, reference_to_mapping
from training.data import contract_frame

log = logging.getLogger("driftlight.training")

CONTROL_SHARE = 1 / 3
OOF_FOLDS = 4  # week-interleaved folds of the reference days for the out-of-fold probabilities
# The fold models are cheaper than the served one (50 trees at 4x the step instead of 200): on the
# Jan-Mar reference their out-of-fold calibration gaps have the same spread (RMS 1 d 0.109 vs
# 0.106, 7 d 0.042 vs 0.041 with the full setting, 8 folds 0.106 / 0.037) at a third of the time.
OOF_MODEL_PARAMS: dict[str, Any] = {"max_iter": 50, "learning_rate": 0.24}


def split_days(contract: Contract, frame: pd.DataFrame, seed: int) -> tuple[list[str], list[str]]:
    """(reference days, control days) as ISO dates, a seeded draw over the local days of `frame`."""
    days = sorted({d.isoformat() for d in local_dates(frame, contract)})
    rng = np.random.default_rng(seed)
    n_control = round(len(days) * CONTROL_SHARE)
    control = set(rng.choice(days, size=n_control, replace=False).tolist()) if n_control else set()
    return [d for d in days if d not in control], sorted(control)


def quality_reference(contract: Contract, frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """JSON form of `monitoring.quality.FieldReference` for every non-timestamp contract field."""
    out: dict[str, dict[str, Any]] = {}
    for f in contract.fields:
        if f.type == "timestamp":
            continue
        kind = "numeric" if f.is_numeric else "categorical"
        out[f.name] = reference_to_mapping(reference_for(frame, f.name, kind, f.unit))
    return out


PREDICTION_COLUMN = "probability"


def derived_features(contract: Contract, transformer: Any) -> list[str]:
    """Served features that are not a raw field passed through, a category code or a pure calendar
    function of the date: their drift is distribution-level skew (e.g. a local hour computed in
    UTC) rather than a copy of input drift or of the window's calendar."""
    cats = {n for n, m in zip(transformer.get_feature_names_out(), transformer.categorical_mask(), strict=True) if m}
    skip = set(contract.field_names) | cats | set(CALENDAR_FEATURES)
    return [str(n) for n in transformer.get_feature_names_out() if n not in skip]


def profile_frame(contract: Contract, ref: pd.DataFrame, transformer: Any, probabilities: np.ndarray) -> pd.DataFrame:
    """The columns the drift profile describes: raw fields, derived `f_` features, the model's output."""
    frame = contract_frame(contract, ref).reset_index(drop=True)
    names = [str(n) for n in transformer.get_feature_names_out()]
    X = transformer.transform(contract_frame(contract, ref))
    derived = derived_features(contract, transformer)
    for name in derived:
        frame[f"f_{name}"] = X[:, names.index(name)]
    frame[PREDICTION_COLUMN] = probabilities
    return frame


def drift_profile(
    contract: Contract,
    ref: pd.DataFrame,
    transformer: Any,
    probabilities: np.ndarray,
    seed: int,
    *,
    declared_categories: bool = False,
) -> dict[str, Any]:
    """The frozen drift profile (JSON form): raw fields, derived `f_` features, the model's output.

    `declared_categories`: every category the contract declares gets a bin, seen or not. A fleet
    segment's reference sees a few carriers of one route; a carrier the contract knows starting on
    that route is then a mix change (drift: has the world moved?), and only a code outside the
    contract falls in the UNSEEN bin (is the data broken?)."""
    frame = profile_frame(contract, ref, transformer, probabilities)
    derived = [c for c in frame.columns if c.startswith("f_")]
    numeric = [f.name for f in contract.numeric_fields] + derived + [PREDICTION_COLUMN]
    categorical = [f.name for f in contract.category_fields]
    declared = {f.name: f.categories for f in contract.category_fields} if declared_categories else None
    return build_profile(frame, numeric, categorical, seed=seed, declared=declared).to_dict()


def out_of_fold_probabilities(
    contract: Contract,
    ref: pd.DataFrame,
    pipeline: Any,
    folds: int = OOF_FOLDS,
    model_params: dict[str, Any] | None = OOF_MODEL_PARAMS,
) -> np.ndarray:
    """The probability of every row of `ref` (the reference days) from a model that never saw its
    day: the reference's local days, in time order, are cut into weeks and the weeks dealt to
    `folds` folds in turn (week w -> fold w mod folds); a clone of `pipeline` (same steps and
    parameters, unfitted; its "model" step's parameters in `model_params` replaced where it has
    them) is fitted on the labelled rows of the other folds and scores the fold.

    The calibration gap (late rate - mean probability) of a window the model never saw is what the
    monitor judges; on the days the model was fitted on the gap is fitted away (in-sample), so its
    no-drift spread must come from days scored out of sample. Whole weeks, not single days, are
    held out so that a held-out day's neighbours (same weather spell) are mostly held out too.
    Raises ValueError with fewer than 2 weeks of reference days."""
    from sklearn.base import clone

    days = local_dates(ref, contract).to_numpy()
    order = sorted(set(days))
    week = pd.Index(order).get_indexer(days) // 7
    n_weeks = int(week.max()) + 1 if week.size else 0
    k = min(folds, n_weeks)
    if k < 2:
        raise ValueError(f"out-of-fold probabilities need at least 2 weeks of reference days, got {len(order)} days")
    fold = week % k
    template = clone(pipeline)
    own = template.named_steps["model"].get_params() if hasattr(template, "named_steps") else {}
    template.set_params(**{f"model__{p}": v for p, v in (model_params or {}).items() if p in own})
    X = contract_frame(contract, ref)
    y = ref["late"].to_numpy(dtype="float64")
    out = np.full(len(ref), np.nan)
    for f in range(k):
        train = (fold != f) & ~np.isnan(y)
        model = clone(template).fit(X[train], y[train].astype(int))
        out[fold == f] = model.predict_proba(X[fold == f])[:, 1]
    return out


@dataclass(frozen=True)
class DayStatistics:
    """Per reference day (rows in time order) what the nulls are estimated from: `counts[column]`
    (days, bins) in the frozen profile's bins, `late`/`labelled`/`predicted` (days,) label sums
    (`predicted`: the probabilities summed over labelled rows, out of fold when given),
    `missing_bin` per categorical column, `values[field]` ((days, distinct values) counts, numeric)."""

    days: list[Any]
    counts: dict[str, np.ndarray]
    late: np.ndarray
    labelled: np.ndarray
    predicted: np.ndarray
    missing_bin: dict[str, int]
    values: dict[str, tuple[np.ndarray, bool]]


def null_distributions(
    contract: Contract,
    ref: pd.DataFrame,
    transformer: Any,
    probabilities: np.ndarray,
    profile: ReferenceProfile,
    cadences: tuple[int, ...] = CADENCES,
    out_of_fold: np.ndarray | None = None,
) -> dict[str, Any]:
    """No-drift nulls (JSON form, monitoring.null) from whole reference days held back in blocks of
    each cadence, every statistic taken in the frozen profile's bins against the other days. The
    calibration-gap null needs `out_of_fold` probabilities of the rows (`out_of_fold_probabilities`);
    without them it is not estimated (the in-sample gap is too tight to judge a window by)."""
    d = day_statistics(contract, ref, transformer, probabilities, profile, out_of_fold)
    summaries = estimate_nulls(
        d.counts,
        (d.late, d.labelled),
        cadences=cadences,
        missing_bin=d.missing_bin,
        day_predicted=d.predicted if out_of_fold is not None else None,
    )
    summaries += estimate_value_nulls(d.values, cadences=cadences)
    book = NullBook(tuple(summaries))
    return {**book.to_dict(), "reference_days": len(d.days)}


def day_statistics(
    contract: Contract,
    ref: pd.DataFrame,
    transformer: Any,
    probabilities: np.ndarray,
    profile: ReferenceProfile,
    out_of_fold: np.ndarray | None = None,
) -> DayStatistics:
    """The per-day statistics of the reference rows `ref` (see `DayStatistics`); `predicted` sums
    `out_of_fold` when given, else `probabilities` (the profile always describes `probabilities`,
    the served model's output)."""
    frame = profile_frame(contract, ref, transformer, probabilities)
    days = local_dates(ref, contract).to_numpy()
    order = sorted(set(days))
    day_index = pd.Index(order).get_indexer(days)
    counts: dict[str, np.ndarray] = {}
    for p in profile.numeric:
        vals = pd.to_numeric(frame[p.name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        counts[p.name] = np.stack([numeric_counts(vals[day_index == i], p) for i in range(len(order))])
    for c in profile.categorical:
        col = frame[c.name].astype("object")
        col = col.where(col.notna(), None)
        counts[c.name] = np.stack([category_counts(col[day_index == i], c) for i in range(len(order))])
    y = ref["late"].to_numpy(dtype="float64")
    have = ~np.isnan(y)
    late = np.bincount(day_index[have], weights=y[have], minlength=len(order))
    n = np.bincount(day_index[have], minlength=len(order)).astype("float64")
    scored = np.asarray(probabilities if out_of_fold is None else out_of_fold, dtype="float64")
    predicted = np.bincount(day_index[have], weights=scored[have], minlength=len(order))
    missing_bin = {c.name: len(c.categories) for c in profile.categorical}
    values: dict[str, tuple[np.ndarray, bool]] = {}
    for f in contract.fields:
        if f.type == "timestamp" or f.name not in frame:
            continue
        col = frame[f.name]
        present = col.notna().to_numpy()
        codes, _ = pd.factorize(col[present], sort=True)
        k = int(codes.max()) + 1 if codes.size else 0
        if k == 0:
            continue
        flat = day_index[present] * k + codes
        values[f.name] = (np.bincount(flat, minlength=len(order) * k).reshape(len(order), k).astype("float64"), f.is_numeric)
    return DayStatistics(order, counts, late, n, predicted, missing_bin, values)


def volume_reference(contract: Contract, ref: pd.DataFrame, segment_field: str = "origin") -> dict[str, Any]:
    """Records per reference day, local hour and segment (JSON form of monitoring.volume.VolumeReference):
    the traffic a window's hours of the week are expected to carry."""
    local = ref[contract.timestamp_field].dt.tz_convert(contract.timezone)
    segments = list(contract.field(segment_field).categories) or sorted(ref[segment_field].dropna().astype(str).unique())
    days = sorted({d.isoformat() for d in local.dt.date})
    counts = np.zeros((len(days), 24, len(segments)), dtype="int64")
    day_i = pd.Index(days).get_indexer(local.dt.date.map(lambda d: d.isoformat()))
    seg_i = pd.Index(segments).get_indexer(ref[segment_field].astype(str))
    ok = seg_i >= 0
    np.add.at(counts, (day_i[ok], local.dt.hour.to_numpy()[ok], seg_i[ok]), 1)
    return {
        "timezone": contract.timezone,
        "segment_field": segment_field,
        "segments": segments,
        "days": days,
        "counts": counts.tolist(),
    }


def out_of_fold_auc_spread(
    contract: Contract, ref: pd.DataFrame, out_of_fold: np.ndarray, cadences: tuple[int, ...] = CADENCES
) -> dict[str, float]:
    """How much the ROC AUC of a run of c consecutive reference days moves from run to run, scored
    out of fold (each day by a model that never saw it), for each cadence c with at least
    `MIN_BLOCKS` independent runs (as the nulls: ~51 reference days give 1 and 7 days, not 28).

    The monitor's "is the model hurt?" interval is widened by the block-to-block spread of AUC (a
    hard week is not a hurt model). The validation days alone estimate it poorly: 14 days hold 2
    independent weeks, and Mar 18-31 were two calm weeks (7-day sd 0.017, against 0.029 over the
    reference's out-of-fold weeks). The monitor takes the larger of the two (`ModelContext.reference_auc`)."""
    from sklearn.metrics import roc_auc_score

    y = ref["late"].to_numpy(dtype="float64")
    days = local_dates(ref, contract).to_numpy()
    order = sorted(set(days))
    idx = pd.Index(order).get_indexer(days)
    ok = ~np.isnan(y) & ~np.isnan(out_of_fold)
    out: dict[str, float] = {}
    for c in cadences:
        if effective_blocks(len(order), c) < MIN_BLOCKS:
            continue
        aucs = []
        for start, stop in blocks(len(order), c):
            m = ok & (idx >= start) & (idx < stop)
            if len(np.unique(y[m])) == 2:
                aucs.append(float(roc_auc_score(y[m].astype(int), out_of_fold[m])))
        if len(aucs) >= MIN_BLOCKS:
            out[str(c)] = float(np.std(aucs, ddof=1))
    return out


def monitoring_reference(
    contract: Contract,
    fit: pd.DataFrame,
    probabilities: np.ndarray,
    seed: int,
    transformer: Any | None = None,
    pipeline: Any | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the monitoring section of the model's metadata, the drift profile), both JSON-safe.
    `pipeline`: the fitted model, whose clones give the reference days' out-of-fold probabilities
    for the calibration-gap null (`out_of_fold_probabilities`; none without it)."""
    ref_days, control_days = split_days(contract, fit, seed)
    ref = on_days(contract, fit, ref_days)
    ref_p = probabilities[fit.index.isin(ref.index)]
    profile = drift_profile(contract, ref, transformer, ref_p, seed) if transformer is not None else None
    oof = None
    if pipeline is not None and profile is not None:
        try:
            oof = out_of_fold_probabilities(contract, ref, pipeline)
        except ValueError as exc:  # a reference too short to cross-fit (under 2 weeks, a fold without a feature)
            log.warning("no calibration-gap null for this model (the other nulls are built): %s", exc)
    null = (
        null_distributions(contract, ref, transformer, ref_p, ReferenceProfile.from_dict(profile), out_of_fold=oof)
        if profile is not None
        else None
    )
    block_fields = None
    if profile is not None:
        from monitoring.monitor import airport_hours

        groups = airport_hours(
            pd.DataFrame({"event_time": ref[contract.timestamp_field].to_numpy(), "origin": ref["origin"].to_numpy()})
        )
        block_fields = block_constant_fields(ref, groups, [f.name for f in contract.numeric_fields])
    section = {
        "reference_days": ref_days,
        "control_days": control_days,
        "reference_rows": len(ref),
        "label_rate": float(ref["late"].mean()),
        "mean_prediction": float(ref_p.mean()) if ref_p.size else None,
        "quality_reference": quality_reference(contract, ref),
        "null": null,
        "block_constant_fields": block_fields,
        "volume": volume_reference(contract, ref),
        "oof_auc_sd_by_cadence": out_of_fold_auc_spread(contract, ref, oof) if oof is not None else {},
    }
    return section, profile
