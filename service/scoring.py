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
from service.lifecycle import FALLBACK_VERSION
from service.model import frame_from_records

log = logging.getLogger("driftlight.service")


@dataclass(frozen=True)
class Scored:
    probabilities: list[float]
    features: Sequence[Any] | np.ndarray  # the served feature vector per row; None for rows the fallback served
    version: str
    threshold: float
    served_by: str  # "model" or "fallback"
    warnings: tuple[str, ...] = ()  # added to every row (why the fallback served)


def score(ctx: ServiceContext, recs: list[Mapping[str, Any]]) -> Scored | None:
    """P(late) for each record, or None when nothing can serve (no model, fallback disabled)."""
    holder = ctx.holder
    model = holder.model  # read once: the whole call is served by this model
    why = holder.load_error or "no model"
    if model is not None:
        try:
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
    key, name = ctx.id_key, ctx.settings.model_name
    version, threshold, served_by = scored.version, scored.threshold, scored.served_by
    out = []
    n_late = 0
    for rec, p, x in zip(recs, scored.probabilities, scored.features, strict=True):
        warns = [*ctx.count_unseen(rec), *scored.warnings]
        late = p >= threshold
        n_late += late
        pid = new_id(key, drill=drill)
        ctx.log_row(pid, rec, p, late, x, warns, version, now)
        if shadow is not None:
            shadow.submit(pid, rec)
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
    counter = ctx.metrics.predictions
    if len(recs) == 1:
        counter.labels(version, "late" if n_late else "on_time", served_by).inc()
    else:
        counter.labels(version, "late", served_by).inc(n_late)
        counter.labels(version, "on_time", served_by).inc(len(recs) - n_late)
    return out
