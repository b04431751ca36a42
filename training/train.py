"""The training pipeline: load -> contract check -> time split -> fit -> evaluate -> register.

`fit_bundle` is the pure part (frames in, fitted bundle and metrics out, no I/O), reused by
retraining; `train` adds the data loading, the Great Expectations gate and the registry.

The time split: the last `validation_days` local days of the window are the validation window;
everything before is fitted. Never a random split: flights in the same hour share one weather
observation, so a random split leaks the weather of validation days into training.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from core.compiled import FORMAT as COMPILED_FORMAT
from core.compiled import CompilationError, compile_booster
from core.registry import ModelBundle, Registry
from data_contracts.batch import ContractViolation, validate_with_gx
from data_contracts.contract import Contract
from data_contracts.windows import local_dates, select_window
from features.baseline import HistoricalRateBaseline
from features.pipeline import build_pipeline
from training.data import contract_frame, load_flights, load_report
from training.evaluate import Metrics, best_f1_threshold, evaluate, slice_metrics
from training.reference import monitoring_reference

DEFAULT_START = date(2013, 1, 1)
DEFAULT_END = date(2013, 3, 31)


@dataclass(frozen=True)
class TrainConfig:
    start: date = DEFAULT_START
    end: date = DEFAULT_END
    validation_days: int = 14
    seed: int = 0
    model_params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def fit_end(self) -> date:
        return self.end - timedelta(days=self.validation_days)

    @property
    def validation_start(self) -> date:
        return self.fit_end + timedelta(days=1)

    def check(self) -> None:
        if self.end < self.start:
            raise ValueError(f"--to ({self.end}) is before --from ({self.start})")
        if self.validation_days < 1 or self.validation_start <= self.start:
            raise ValueError(f"the window {self.start}..{self.end} is too short for {self.validation_days} validation days")


@dataclass(frozen=True)
class FitOutcome:
    bundle: ModelBundle
    model: Metrics
    baseline: Metrics
    slices: Mapping[str, Metrics]
    beats_baseline: bool
    n_fit: int
    n_validation: int


@dataclass(frozen=True)
class TrainResult:
    model_name: str
    version: str
    promoted: bool
    reason: str
    model_metrics: Mapping[str, float]
    baseline_metrics: Mapping[str, float]
    slices: Mapping[str, Mapping[str, float]]
    n_fit: int
    n_validation: int
    seconds: float
    window: tuple[str, str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with a label (cancelled flights have none; see training.data)."""
    return frame[frame["late"].notna()]


def split(contract: Contract, frame: pd.DataFrame, config: TrainConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fit rows, validation rows), both labelled, split by local date."""
    config.check()
    fit = labelled(select_window(frame, contract, config.start, config.fit_end))
    val = labelled(select_window(frame, contract, config.validation_start, config.end))
    if fit.empty or val.empty:
        raise ValueError(f"no labelled flights in {config.start}..{config.end}")
    return fit, val


def beats(model: Metrics, baseline: Metrics) -> bool:
    """The registration bar: better ranking AND better precision-recall than the lookup table."""
    return model.roc_auc > baseline.roc_auc and model.pr_auc > baseline.pr_auc


@dataclass(frozen=True)
class Fitted:
    """A Pipeline and its lookup-table baseline fitted on `fit`, the threshold chosen and both
    evaluated on `val` (the single model, every fleet segment and the fleet's global model)."""

    pipeline: Any
    baseline: HistoricalRateBaseline
    X_fit: pd.DataFrame
    X_val: pd.DataFrame
    y_val: Any
    p_val: Any
    threshold: float
    model: Metrics
    baseline_metrics: Metrics


def fit_and_evaluate(
    contract: Contract, fit: pd.DataFrame, val: pd.DataFrame, *, seed: int, model_params: Mapping[str, Any] | None = None
) -> Fitted:
    X_fit, y_fit = contract_frame(contract, fit), fit["late"].astype(int).to_numpy()
    X_val, y_val = contract_frame(contract, val), val["late"].astype(int).to_numpy()
    pipeline = build_pipeline(contract, seed=seed, model_params=model_params)
    pipeline.fit(X_fit, y_fit)
    baseline = HistoricalRateBaseline().fit(X_fit, y_fit)
    p_val = pipeline.predict_proba(X_val)[:, 1]
    b_val = baseline.predict_proba(X_val)[:, 1]
    threshold = best_f1_threshold(y_val, p_val)
    model_m = evaluate(y_val, p_val, threshold)
    base_m = evaluate(y_val, b_val, best_f1_threshold(y_val, b_val))
    return Fitted(pipeline, baseline, X_fit, X_val, y_val, p_val, threshold, model_m, base_m)


def fit_bundle(contract: Contract, fit: pd.DataFrame, val: pd.DataFrame, config: TrainConfig) -> FitOutcome:
    """Fit the Pipeline and the baseline on `fit`, choose the threshold and evaluate on `val`."""
    f = fit_and_evaluate(contract, fit, val, seed=config.seed, model_params=config.model_params)
    pipeline, baseline, X_fit, X_val, y_val, p_val = f.pipeline, f.baseline, f.X_fit, f.X_val, f.y_val, f.p_val
    threshold, model_m, base_m = f.threshold, f.model, f.baseline_metrics
    compiled, compiled_info = compile_for_serving(pipeline, X_val)
    slices = slice_metrics(y_val, p_val, val["origin"].to_numpy(), threshold)
    p_fit = pipeline.predict_proba(X_fit)[:, 1]
    monitoring, profile = monitoring_reference(
        contract, fit, p_fit, config.seed, pipeline.named_steps["features"], pipeline=pipeline
    )
    monitoring["importance"] = field_importance(pipeline, X_val, y_val, config.seed)
    monitoring.update(validation_blocks(contract, val, p_val))
    metadata = {
        "contract": {"name": contract.name, "version": contract.version},
        "window": {"start": config.start.isoformat(), "end": config.end.isoformat()},
        "fit_window": {"start": config.start.isoformat(), "end": config.fit_end.isoformat(), "rows": len(fit)},
        "validation_window": {"start": config.validation_start.isoformat(), "end": config.end.isoformat(), "rows": len(val)},
        "threshold": threshold,
        "seed": config.seed,
        "validation_metrics": model_m.as_dict(),
        "baseline_metrics": base_m.as_dict(),
        "slices": {k: v.as_dict() for k, v in slices.items()},
        "input_columns": list(pipeline.named_steps["features"].input_columns()),
        "feature_names": [str(n) for n in pipeline.named_steps["features"].get_feature_names_out()],
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "monitoring": monitoring,
        "compiled": compiled_info,
    }
    return FitOutcome(
        bundle=ModelBundle(pipeline=pipeline, baseline=baseline, metadata=metadata, profile=profile, compiled=compiled),
        model=model_m,
        baseline=base_m,
        slices=slices,
        beats_baseline=beats(model_m, base_m),
        n_fit=len(fit),
        n_validation=len(val),
    )


def compile_for_serving(pipeline: Any, X_check: pd.DataFrame) -> tuple[bytes | None, dict[str, Any]]:
    """The booster compiled for the service's single-record path (core.compiled), checked to give
    exactly the Pipeline's probabilities on `X_check` (the validation rows). A model that cannot be
    compiled is still registered: the service then serves single records with sklearn (slower, same
    answers), and the metadata says why."""
    from importlib.metadata import version

    t0 = time.perf_counter()
    rows = pipeline.named_steps["features"].transform(X_check)
    try:
        blob = compile_booster(pipeline.named_steps["model"], check_rows=rows)
    except (CompilationError, ImportError) as exc:
        return None, {"format": None, "error": str(exc)}
    info = {
        "format": COMPILED_FORMAT,
        "treelite": version("treelite"),
        "bytes": len(blob),
        "exact_on_rows": len(rows),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return blob, info


def validation_blocks(contract: Contract, val: pd.DataFrame, p_val: np.ndarray) -> dict[str, Any]:
    """What the monitor's "is the model hurt?" question compares a window with, from the
    validation days (held out from the fit, so the AUC is honest):
    - `validation_auc_by_cadence`: the mean ROC AUC of every run of c consecutive validation days,
      c in the null cadences (one day's AUC is lower than the pooled AUC: pooling adds the contrast
      between calm and stormy days); a cadence longer than the validation takes the pooled AUC;
    - `validation_auc_sd_by_cadence`: how much that block AUC varies from block to block (a hard
      day is not a hurt model: the monitor widens its interval by it);
    - `block_logit_sd`: how much the outcomes of one airport-hour move together beyond the model's
      probabilities (the label-free estimate's interval draws its labels with that shared shock);
    - `estimate_error_rms_by_cadence`: the RMS of (label-free estimate - realised AUC) over the same
      runs of validation days: the concept wobble the estimate's interval starts from before any
      production window's labels are in (the monitor then learns it from the errors it makes)."""
    from sklearn.metrics import roc_auc_score

    from monitoring.monitor import airport_hours
    from monitoring.null import CADENCES
    from monitoring.performance import block_logit_sd, expected_auc_interval

    y = val["late"].astype(int).to_numpy()
    days = local_dates(val, contract).to_numpy()
    order = sorted(set(days))
    idx = pd.Index(order).get_indexer(days)
    groups = airport_hours(
        pd.DataFrame({"event_time": val[contract.timestamp_field].to_numpy(), "origin": val["origin"].to_numpy()})
    )
    shock = block_logit_sd(p_val, y.astype("float64"), groups)
    by: dict[str, float] = {}
    sd: dict[str, float] = {}
    err: dict[str, float] = {}
    for c in CADENCES:
        if c >= len(order):
            by[str(c)] = float(roc_auc_score(y, p_val))
            continue
        aucs, errors = [], []
        for s in range(len(order) - c + 1):
            m = (idx >= s) & (idx < s + c)
            if len(np.unique(y[m])) == 2:
                aucs.append(float(roc_auc_score(y[m], p_val[m])))
                est = expected_auc_interval(p_val[m], groups[m], block_sd=shock, n_boot=100, seed=s).estimate
                errors.append(est - aucs[-1])
        by[str(c)] = float(np.mean(aucs))
        sd[str(c)] = float(np.std(aucs, ddof=1)) if len(aucs) > 1 else 0.0
        err[str(c)] = float(np.sqrt(np.mean(np.square(errors))))
    return {
        "validation_auc_by_cadence": by,
        "validation_auc_sd_by_cadence": sd,
        "block_logit_sd": shock,
        "estimate_error_rms_by_cadence": err,
    }


def field_importance(pipeline: Any, X: pd.DataFrame, y: np.ndarray, seed: int, rows: int = 3000) -> dict[str, float]:
    """Permutation importance of each raw contract field (drop in validation ROC AUC when the field
    is shuffled; negatives clipped to 0) on a seeded sample. The Pipeline takes raw fields, so this
    maps straight onto the monitor's drift columns: it weights the window's drift score."""
    from sklearn.inspection import permutation_importance

    idx = np.random.default_rng(seed).choice(len(X), size=min(rows, len(X)), replace=False)
    r = permutation_importance(pipeline, X.iloc[idx], y[idx], scoring="roc_auc", n_repeats=2, random_state=seed)
    return {str(c): max(0.0, float(v)) for c, v in zip(X.columns, r.importances_mean, strict=True)}


def check_contract(contract: Contract, frame: pd.DataFrame) -> None:
    """Stop training if the data breaks the contract (Great Expectations suite)."""
    report = validate_with_gx(contract, contract_frame(contract, frame))
    if not report.success:
        raise ContractViolation(report)


def train(
    contract: Contract,
    registry: Registry,
    config: TrainConfig,
    *,
    model_name: str = "flights-late",
    alias: str = "champion",
    frame: pd.DataFrame | None = None,
    contract_yaml: str | None = None,
) -> TrainResult:
    """Train on the 2013 flights (or `frame`), register the model, alias it if it beats the baseline."""
    t0 = time.perf_counter()
    data = load_flights() if frame is None else frame
    fit, val = split(contract, data, config)
    check_contract(contract, pd.concat([fit, val]))
    out = fit_bundle(contract, fit, val, config)
    params = {
        "window_start": config.start,
        "window_end": config.end,
        "validation_days": config.validation_days,
        "seed": config.seed,
        "contract_version": contract.version,
        "rows_fit": out.n_fit,
        "rows_validation": out.n_validation,
        **{
            f"model__{k}": v
            for k, v in out.bundle.pipeline.named_steps["model"].get_params().items()
            if k != "categorical_features"
        },
    }
    if frame is None:
        params.update({f"data__{k}": v for k, v in asdict(load_report()).items()})
    metrics = {**out.model.as_dict("val_"), **out.baseline.as_dict("baseline_val_")}
    for origin, m in out.slices.items():
        metrics[f"val_roc_auc__{origin}"] = m.roc_auc
    artifacts = {"contract/" + contract.name + ".yaml": contract_yaml} if contract_yaml else {}
    mv = registry.register(
        model_name,
        out.bundle,
        params=params,
        metrics=metrics,
        artifacts=artifacts,
        tags={"contract_version": contract.version, "beats_baseline": str(out.beats_baseline).lower()},
        input_example=contract_frame(contract, val.head(5)),
    )
    if out.beats_baseline:
        registry.set_alias(model_name, alias, mv.version)
        reason = f"beats the baseline on validation (ROC AUC {out.model.roc_auc:.3f} vs {out.baseline.roc_auc:.3f})"
    else:
        reason = f"does not beat the baseline (ROC AUC {out.model.roc_auc:.3f} vs {out.baseline.roc_auc:.3f}): not aliased"
    return TrainResult(
        model_name=model_name,
        version=mv.version,
        promoted=out.beats_baseline,
        reason=reason,
        model_metrics=out.model.as_dict(),
        baseline_metrics=out.baseline.as_dict(),
        slices={k: v.as_dict() for k, v in out.slices.items()},
        n_fit=out.n_fit,
        n_validation=out.n_validation,
        seconds=round(time.perf_counter() - t0, 2),
        window=(config.start.isoformat(), config.end.isoformat()),
    )
