"""A realistic prediction log for the read benchmarks: real 2013 flights as the service logs them.

`fill_log(store, bundle, contract, n)` writes n prediction rows (resampled real flights with the
fitted model's features and probabilities, a few with warnings, a few served by the fallback with no
features) and labels for ~95 % of them, through `LogStore`'s own write path.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

BATCH = 5_000


def fill_log(store: Any, bundle: Any, contract: Any, flights: Any, n: int, *, seed: int = 0) -> datetime:
    """Write `n` rows to `store` (schema created); returns the first `served_at` (rows are 1 µs apart)."""
    from drills.calibrate import log_frame

    store.create_schema()
    names = [str(x) for x in bundle.pipeline.named_steps["features"].get_feature_names_out()]
    src = log_frame(bundle, contract, flights[flights["late"].notna()].sample(n, replace=True, random_state=seed))
    rng = np.random.default_rng(seed)
    fallback = rng.random(n) < 0.01
    warned = rng.random(n) < 0.02
    labelled = rng.random(n) < 0.95
    lag = rng.integers(60, 7 * 86_400, n)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    fields = list(contract.field_names)
    for a in range(0, n, BATCH):
        part = src.iloc[a : a + BATCH]
        rows, labels = [], []
        for i, r in enumerate(part.to_dict("records")):
            k = a + i
            served = start + timedelta(microseconds=k)
            fb = bool(fallback[k])
            rows.append(
                {
                    "prediction_id": f"b{k:012d}",
                    "served_at": served,
                    "event_time": r[contract.timestamp_field],
                    "model_name": "flights-late",
                    "model_version": "fallback" if fb else "1",
                    "probability": r["probability"],
                    "late": int(r["probability"] >= 0.2),
                    "warnings": ["unseen carrier 'ZZ'"] if warned[k] else [],
                    "inputs": {c: (None if isinstance(r[c], float) and np.isnan(r[c]) else r[c]) for c in fields},
                    "features": {} if fb else {x: r[f"f_{x}"] for x in names},
                }
            )
            if labelled[k]:
                received = served + timedelta(seconds=int(lag[k]))
                labels.append({"prediction_id": f"b{k:012d}", "label": int(r["label"]), "received_at": received})
        store.insert_predictions(rows)
        store.upsert_labels(labels)
    return start
