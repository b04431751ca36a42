"""Replay real 2013 flights through a live driftlight API, then send their true labels.

Flights are sent in event-time order to `/predict/batch` (or one by one to `/predict` with
`batch_size=1`); the true outcome of each flight that flew goes to `/feedback/batch`, optionally
`label_delay` seconds later (labels arrive late in real life). Cancelled flights are predicted but
never labelled (see training.data). Bounded: it sends exactly the rows of the window, stops on its
own, and only talks to the URL it is given.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd

from data_contracts.contract import Contract


@dataclass
class ReplayResult:
    window: tuple[str, str]
    sent: int = 0
    served: int = 0
    rejected: int = 0
    failed_requests: int = 0
    labels_sent: int = 0
    labels_accepted: int = 0
    unlabelled: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    errors: list[str] = field(default_factory=list)
    prediction_ids: list[str] = field(default_factory=list, repr=False)
    versions: dict[str, int] = field(default_factory=dict)  # model version (or "fallback") -> answers

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("latencies_ms")
        d.pop("prediction_ids")
        lat = np.asarray(self.latencies_ms)
        d["request_p50_ms"] = float(np.percentile(lat, 50)) if lat.size else None
        d["request_p99_ms"] = float(np.percentile(lat, 99)) if lat.size else None
        d["errors"] = self.errors[:5]
        return d


def to_record(row: dict[str, Any], contract: Contract) -> dict[str, Any]:
    """One JSON-ready record of contract fields (NaN -> null, timestamps ISO-8601 UTC)."""
    out: dict[str, Any] = {}
    for f in contract.fields:
        v = row[f.name]
        if f.type == "timestamp":
            out[f.name] = pd.Timestamp(v).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
        elif v is None or (isinstance(v, float) and math.isnan(v)):
            out[f.name] = None
        elif f.type == "integer":
            out[f.name] = int(v)
        elif f.type == "number":
            out[f.name] = float(v)
        else:
            out[f.name] = str(v)
    return out


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for i in range(0, n, size):
        yield i, min(n, i + size)


def replay_frame(
    base_url: str,
    frame: pd.DataFrame,
    contract: Contract,
    *,
    batch_size: int = 200,
    label_delay: float = 0.0,
    send_labels: bool = True,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    client: httpx.Client | None = None,
    on_progress: Callable[[int], None] | None = None,
    window: tuple[str, str] = ("", ""),
    timeout: float = 30.0,
    rate: float | None = None,
    drill: str | None = None,
) -> ReplayResult:
    """Send the rows of `frame` (contract fields + `late`) to the API at `base_url`.

    `transform` may rewrite each JSON record before sending (drills use it to inject faults).
    `rate` caps the pace in records per second (a demo stack's steady trickle); None = as fast as
    the API answers. `drill` tags the traffic as that drill's (`X-Driftlight-Drill`): served as
    usual, kept out of the real light and of retraining.
    """
    tag = {"X-Driftlight-Drill": drill} if drill else None
    own = client is None
    http = client or httpx.Client(base_url=base_url, timeout=timeout)
    res = ReplayResult(window=window)
    rows = frame.to_dict("records")
    labels = frame["late"].to_numpy() if "late" in frame else np.full(len(frame), np.nan)
    due: deque[tuple[float, list[dict[str, Any]]]] = deque()
    t0 = time.perf_counter()

    def send_labels_now(items: list[dict[str, Any]]) -> None:
        for a, b in _chunks(len(items), 1000):
            part = items[a:b]
            res.labels_sent += len(part)
            try:
                r = http.post("/feedback/batch", json={"labels": part})
            except httpx.HTTPError as exc:  # the server went away: these labels were not accepted
                res.failed_requests += 1
                res.errors.append(f"/feedback/batch: {type(exc).__name__}: {exc}")
                continue
            if r.status_code == 202:
                res.labels_accepted += int(r.json()["accepted"])
            else:
                res.errors.append(f"/feedback/batch -> {r.status_code}: {r.text[:200]}")

    def flush_due(force: bool) -> None:
        while due and (force or due[0][0] <= time.perf_counter()):
            when, items = due.popleft()
            if force and when > time.perf_counter():
                time.sleep(when - time.perf_counter())
            send_labels_now(items)

    try:
        for a, b in _chunks(len(rows), batch_size):
            records = [to_record(r, contract) for r in rows[a:b]]
            if transform is not None:
                records = [transform(r) for r in records]
            res.sent += len(records)
            s = time.perf_counter()
            try:
                if batch_size == 1:
                    r = http.post("/predict", json=records[0], headers=tag)
                else:
                    r = http.post("/predict/batch", json={"records": records}, headers=tag)
            except httpx.HTTPError as exc:
                res.failed_requests += 1
                res.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            res.latencies_ms.append(1000 * (time.perf_counter() - s))
            if r.status_code != 200:
                res.rejected += len(records)
                res.errors.append(f"{r.status_code}: {r.text[:300]}")
                continue
            body = r.json()
            preds = [body] if batch_size == 1 else body["predictions"]
            if batch_size != 1 and body.get("refused"):  # served per item: the rest were refused
                res.rejected += int(body["refused"])
                res.errors.append(f"200 with {body['refused']} refused: {str(body['errors'][:3])[:300]}")
            res.served += len(preds)
            items = []
            for p in preds:
                y = labels[a + int(p.get("index", 0))]
                res.prediction_ids.append(p["prediction_id"])
                res.versions[p["model_version"]] = res.versions.get(p["model_version"], 0) + 1
                if np.isnan(y):
                    res.unlabelled += 1
                else:
                    items.append({"prediction_id": p["prediction_id"], "label": int(y)})
            if send_labels and items:
                due.append((time.perf_counter() + label_delay, items))
            flush_due(force=False)
            if on_progress is not None:
                on_progress(len(records))
            if rate:
                ahead = res.sent / rate - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        flush_due(force=True)
    finally:
        if own:
            http.close()
    res.seconds = round(time.perf_counter() - t0, 3)
    return res
