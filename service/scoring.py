"""One way to score records, single or batch: the model if it can, else the fallback.

`score` decides model vs fallback once for the whole call (a request is served wholly by one model
read once from the holder); `answer` turns the scores into the API's prediction bodies and does the
per-row work: unseen-category warnings, a signed id, the log row, the shadow submission, counters.
One record goes through the fitted transformer's per-record path (bit-identical to the batch path,
~250x cheaper than a one-row DataFrame); more go through the batch path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core.ids import new_id
from service.context import ServiceContext
from service.fleet import FleetRouter
from service.lifecycle import FALLBACK_VERSION
from service.model import LoadedModel, frame_from_records

log = logging.getLogger("driftlight.service")


@dataclass(frozen=True)
class Scored:
    probabilities: list[float]
    features: Sequence[Any] | np.ndarray  # the served feature vector per row; None for rows the fallback served
    version: str
    threshold: float
    served_by: str  # "model" or "fallback"
    warnings: tuple[str, ...] = ()  # added to every row (why the fallback served)
    # A fleet serves rows of one call by different models: per row (name, version, threshold).
    per_row: Sequence[tuple[str, str, float]] | None = None


def score_fleet(fleet: FleetRouter, default: LoadedModel, recs: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Scored:
    """Each record by its segment's champion, or by `default` (the global model)."""
    models = fleet.models  # read once: the call sees one set of champions
    seg = fleet.spec.segment_of
    if len(recs) == 1:
        m = models.get(seg(recs[0]), default)
        p, x = m.predict_record(recs[0])
        return Scored([p], [x], m.version, m.threshold, "model", per_row=[(m.name, m.version, m.threshold)])
    by_model: dict[str, tuple[LoadedModel, list[int]]] = {}
    for i, rec in enumerate(recs):
        m = models.get(seg(rec), default)
        by_model.setdefault(m.name, (m, []))[1].append(i)
    probs: list[float] = [0.0] * len(recs)
    feats: list[Any] = [None] * len(recs)
    per_row: list[tuple[str, str, float]] = [("", "", 0.0)] * len(recs)
    for m, idx in by_model.values():
        ps, xs = m.predict_frame(frame_from_records([recs[i] for i in idx], columns))
        for j, i in enumerate(idx):
            probs[i], feats[i], per_row[i] = float(ps[j]), xs[j], (m.name, m.version, m.threshold)
    return Scored(probs, feats, default.version, default.threshold, "model", per_row=per_row)


def score(ctx: ServiceContext, recs: list[Mapping[str, Any]]) -> Scored | None:
    """P(late) for each record, or None when nothing can serve (no model, fallback disabled)."""
    holder = ctx.holder
    model = holder.model  # read once: the whole call is served by this model
    why = holder.load_error or "no model"
    if model is not None:
        try:
            if holder.fleet is not None:
                return score_fleet(holder.fleet, model, recs, ctx.contract.field_names)
            if len(recs) == 1:
                p, x = model.predict_record(recs[0])
                return Scored([p], [x], model.version, model.threshold, "model")
            probs, X = model.predict_frame(frame_from_records(recs, ctx.contract.field_names))
            return Scored(probs.tolist(), X, model.version, model.threshold, "model")
        except Exception as exc:
            ctx.metrics.model_failures.inc()
            log.exception("model v%s failed on %d record(s): serving the fallback", model.version, len(recs))
            why = f"model v{model.version} failed: {type(exc).__name__}"
    fb = holder.fallback
    if fb is None:
        return None
    if len(recs) == 1:
        probs_fb = [fb.predict_record(recs[0])]
    else:
        probs_fb = fb.predict_frame(frame_from_records(recs, ctx.contract.field_names)).tolist()
    return Scored(
        probs_fb,
        [None] * len(recs),
        FALLBACK_VERSION,
        fb.threshold,
        "fallback",
        (f"served by the fallback ({fb.source}): {why}",),
    )


def answer(ctx: ServiceContext, recs: list[Mapping[str, Any]], scored: Scored, *, drill: bool = False) -> list[dict[str, Any]]:
    """The prediction bodies (PredictionOut), each row logged (off the request path) and counted.
    Drill traffic gets drill ids (core.ids): logged like any row, left out of the real light."""
    now = datetime.now(UTC)
    shadow = ctx.shadow if scored.served_by == "model" else None
    key, name = ctx.id_key, ctx.holder.model_name
    version, threshold, served_by = scored.version, scored.threshold, scored.served_by
    per_row = scored.per_row
    counter = ctx.metrics.predictions
    out = []
    n_late = 0
    for i, (rec, p, x) in enumerate(zip(recs, scored.probabilities, scored.features, strict=True)):
        if per_row is not None:
            name, version, threshold = per_row[i]
        warns = [*ctx.count_unseen(rec), *scored.warnings]
        late = p >= threshold
        n_late += late
        if per_row is not None and len(recs) > 1:
            counter.labels(version, "late" if late else "on_time", served_by).inc()
        pid = new_id(key, drill=drill)
        ctx.log_row(pid, rec, p, late, x, warns, version, now, model_name=name)
        if shadow is not None:
            shadow.submit(pid, rec, name)
        out.append(
            {
                "prediction_id": pid,
                "probability": p,
                "late": late,
                "threshold": threshold,
                "model_name": name,
                "model_version": version,
                "served_by": served_by,
                "warnings": warns,
            }
        )
    if len(recs) == 1:
        counter.labels(version, "late" if n_late else "on_time", served_by).inc()
    elif per_row is None:
        counter.labels(version, "late", served_by).inc(n_late)
        counter.labels(version, "on_time", served_by).inc(len(recs) - n_late)
    return out
