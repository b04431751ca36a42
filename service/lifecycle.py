"""What the service serves and how that changes while it runs: hot reload, fallback, shadow.

- `ModelHolder` holds one immutable `LoadedModel` reference. A reload loads the new version fully
  (in a background thread, or in the admin endpoint's thread pool) and then swaps the reference in
  one assignment: a request reads `holder.model` once, so it is served wholly by the old model or
  wholly by the new one. Reloads are serialised by a lock; requests never take it.
- `Reloader` polls the registry's alias every `reload_interval` seconds (each worker polls on its
  own; `POST /admin/reload` forces the worker that receives it).
- `Fallback` is the non-ML baseline (late rate by carrier x hour). It serves when no model could
  be loaded at start, and per request when the model raises. Its table comes from, in order: the
  last champion this service loaded (written to `<home>/fallback-baseline.json` on every load, so
  it survives a registry outage at the next start), then the table shipped with the package.
- `ShadowScorer` scores the `shadow_alias` model (e.g. `challenger`) on live traffic off the
  request path, in batches, into the run store. It is never returned; when its queue is full the
  shadow score is dropped and counted, never the served prediction.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.baseline import PACKAGED_FALLBACK, HistoricalRateBaseline
from service.model import LoadedModel, frame_from_records

if TYPE_CHECKING:
    from core.registry import Registry
    from core.runs import RunStore
    from core.settings import Settings
    from service.fleet import FleetRouter
    from service.metrics import ServiceMetrics

log = logging.getLogger("driftlight.service")
FALLBACK_VERSION = "fallback"


@dataclass(frozen=True)
class Fallback:
    baseline: HistoricalRateBaseline
    threshold: float
    source: str

    def predict_record(self, record: Mapping[str, Any]) -> float:
        return float(self.baseline.predict_record(record))

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        return self.baseline.predict_proba(frame)[:, 1]


def fallback_from_bundle(model: LoadedModel) -> Fallback:
    threshold = float((model.bundle.metadata.get("baseline_metrics") or {}).get("threshold", 0.5))
    return Fallback(model.bundle.baseline, threshold, f"baseline of v{model.version}")


def read_fallback(paths: list[tuple[Path, str]]) -> Fallback | None:
    """The first readable baseline table among `paths` ((path, description) pairs)."""
    for path, what in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return Fallback(HistoricalRateBaseline.from_dict(data), float(data.get("threshold", 0.5)), data.get("source") or what)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("fallback table %s unreadable (%s); trying the next", path, exc)
    return None


def write_fallback(path: Path, fb: Fallback) -> None:
    """Atomically keep `fb` as the last known good fallback (tmp file + rename)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        doc = {**fb.baseline.to_dict(), "threshold": fb.threshold, "source": fb.source}
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home must not stop serving
        log.error("could not keep the fallback table at %s: %s", path, exc)


class ModelHolder:
    """The one mutable reference to the served model (and the shadow model and the fallback)."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics, fleet: FleetRouter | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        # With a fleet, `model` is the fleet's global model and `fleet` routes segments to their champions.
        self.fleet = fleet
        self.model_name = fleet.spec.global_model if fleet is not None else settings.model_name
        self.alias = fleet.spec.alias if fleet is not None else settings.model_alias
        self.model: LoadedModel | None = None
        self.shadow: LoadedModel | None = None
        self.fallback: Fallback | None = None
        self.load_error: str | None = "not loaded yet"
        self.reloads = 0
        self._lock = threading.Lock()

    @property
    def serving(self) -> str:
        if self.model is not None:
            return "model"
        return "fallback" if self.fallback is not None else "nothing"

    def start(self, registry: Registry) -> None:
        """First load at start-up; on failure, the fallback (unless disabled) and the reason."""
        try:
            self.reload(registry)
            if self.fleet is not None:
                self.fleet.start(registry)
        except Exception as exc:  # the service still starts: /ready says what serves and why
            self.load_error = f"{type(exc).__name__}: {exc}"
            self.metrics.model_loaded.set(0)
            log.error("no model loaded: %s", self.load_error)
            if self.settings.fallback == "baseline":
                self.fallback = read_fallback(
                    [
                        (self.settings.fallback_path, "the last champion's baseline"),
                        (PACKAGED_FALLBACK, "the packaged 2013 baseline"),
                    ]
                )
            self.metrics.fallback_active.set(1 if self.fallback is not None else 0)
            if self.fallback is not None:
                log.warning("serving the fallback: %s", self.fallback.source)

    def reload(self, registry: Registry) -> dict[str, Any]:
        """Serve the version the alias points at now (no-op if it already does). Thread-safe."""
        s = self.settings
        name, alias = self.model_name, self.alias
        with self._lock:
            version = registry.alias_version(name, alias)
            if version is None:
                what = "driftlight fleet train" if self.fleet is not None else "driftlight train"
                raise LookupError(f"no version of {name!r} has alias {alias!r}: run `{what}`")
            old = self.model
            changed = old is None or old.version != version
            if changed:
                bundle = registry.load(name, version)
                new = LoadedModel(name=name, version=version, alias=alias, bundle=bundle)
                fb = fallback_from_bundle(new) if s.fallback == "baseline" else None
                self.model, self.fallback, self.load_error = new, fb, None  # the swap: one assignment each
                self.reloads += 1
                if old is not None:
                    self.metrics.model_info.labels(old.name, old.version).set(0)
                self.metrics.model_info.labels(new.name, new.version).set(1)
                self.metrics.model_loaded.set(1)
                self.metrics.fallback_active.set(0)
                self.metrics.reloads.labels("loaded").inc()
                log.info("serving %s v%s (%s)%s", new.name, new.version, new.alias, f", was v{old.version}" if old else "")
                if fb is not None:
                    write_fallback(s.fallback_path, fb)
            self._reload_shadow(registry)
            out: dict[str, Any] = {
                "changed": changed,
                "version": version,
                "previous": old.version if old is not None else None,
                "shadow": self.shadow.version if self.shadow else None,
            }
            if self.fleet is not None:
                # After the first warm-up (the background thread does that one).
                out["fleet"] = self.fleet.reload(registry) if self.fleet.loaded_in_s is not None else None
            return out

    def _reload_shadow(self, registry: Registry) -> None:
        """The shadow of the model `self.model_name` (the single model, or a fleet's global model;
        a fleet's segment shadows are the router's)."""
        s, name = self.settings, self.model_name
        if not s.shadow_alias:
            return
        version = registry.alias_version(name, s.shadow_alias)
        champion = self.model.version if self.model is not None else None
        if version is None or version == champion:
            if self.shadow is not None:
                log.info("shadow scoring stops (%s@%s is %s)", name, s.shadow_alias, version or "unset")
            self.shadow = None
        elif self.shadow is None or self.shadow.version != version:
            bundle = registry.load(name, version)
            self.shadow = LoadedModel(name=name, version=version, alias=s.shadow_alias, bundle=bundle)
            log.info("shadow scoring %s v%s (%s) beside the champion", name, version, s.shadow_alias)

    def shadow_for(self, model_name: str) -> LoadedModel | None:
        """The shadow version loaded beside the model that served a row (`model_name`), if any."""
        if model_name == self.model_name:
            return self.shadow
        return self.fleet.shadow_of(model_name) if self.fleet is not None else None


class Reloader:
    """Poll the registry every `interval` seconds and reload when the alias moved."""

    def __init__(self, holder: ModelHolder, registry: Registry, interval: float) -> None:
        self.holder, self.registry, self.interval = holder, registry, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="driftlight-reloader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.holder.reload(self.registry)
            except Exception as exc:  # keep serving what is loaded; try again next time
                self.holder.metrics.reloads.labels("failed").inc()
                log.error("reload check failed (still serving %s): %s", self.holder.serving, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class ShadowScorer:
    """Score the shadow model on served records in a background thread; store, never return."""

    def __init__(
        self, holder: ModelHolder, runs: RunStore, columns: list[str], metrics: ServiceMetrics, max_queue: int = 20_000
    ) -> None:
        self.holder, self.runs, self.columns, self.metrics = holder, runs, columns, metrics
        self.queue: queue.Queue[tuple[str, Mapping[str, Any], str] | None] = queue.Queue(max_queue)
        self._thread = threading.Thread(target=self._run, name="driftlight-shadow", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, pid: str, record: Mapping[str, Any], model_name: str) -> None:
        """Queue a served record for the shadow of `model_name` (the model that served it)."""
        if self.holder.shadow_for(model_name) is None:
            return  # nothing shadows that model: no work, nothing dropped
        try:
            self.queue.put_nowait((pid, record, model_name))
        except queue.Full:
            self.metrics.shadow.labels("dropped").inc()

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self.queue.get()
            batch = []
            while item is not None:
                batch.append(item)
                if len(batch) >= 500:
                    break
                try:
                    item = self.queue.get(timeout=0.2)
                except queue.Empty:
                    break
            stop = item is None
            if batch:
                self._score(batch)

    def _score(self, batch: list[tuple[str, Mapping[str, Any], str]]) -> None:
        """Score each model's rows with that model's shadow (one frame per model), store them."""
        by_model: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
        for pid, rec, name in batch:
            by_model.setdefault(name, []).append((pid, rec))
        for name, rows in by_model.items():
            shadow = self.holder.shadow_for(name)
            if shadow is None:  # the shadow alias moved away since the row was queued
                continue
            try:
                probs, _ = shadow.predict_frame(frame_from_records([r for _, r in rows], self.columns))
                self.runs.add_shadow_scores(
                    [
                        {"prediction_id": pid, "model_version": shadow.version, "probability": float(p)}
                        for (pid, _), p in zip(rows, probs, strict=True)
                    ]
                )
                self.metrics.shadow.labels("scored").inc(len(rows))
            except Exception as exc:  # the shadow must never hurt serving
                self.metrics.shadow.labels("failed").inc(len(rows))
                log.error("shadow scoring of %s failed for %d rows: %s", name, len(rows), exc)

    def stop(self) -> None:
        try:
            self.queue.put(None, timeout=5)
        except queue.Full:
            log.error("shadow queue still full at shutdown: unscored shadow rows are dropped")
        self._thread.join(timeout=10)
