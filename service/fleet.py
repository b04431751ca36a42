"""Fleet routing in the service: each request goes to its segment's champion, else the global model.

Loading is eager but off the critical path: at start the global model is loaded like the single
model (it is `ModelHolder.model`, so /ready, the fallback and hot reload work as before), then a
background thread loads every segment champion (~1 s each from MLflow here) and swaps them in one
by one. Until a segment's champion is in, the global model serves that segment — and the response
and the logged row say so (`model_name`), so nothing is mislabelled while warming. The alias poll
reads every champion's version in one registry query and reloads only the models that moved, each
swap one dict assignment (a request reads the dict once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from data_contracts.fleet import FleetSpec
from service.model import LoadedModel

if TYPE_CHECKING:
    from core.registry import Registry

log = logging.getLogger("driftlight.service")


class FleetRouter:
    """The segment champions (segment -> LoadedModel), swapped as a whole dict on every change."""

    def __init__(self, spec: FleetSpec) -> None:
        self.spec = spec
        self.models: dict[str, LoadedModel] = {}
        self.expected = 0  # champions the registry listed at the last poll (segments only)
        self.loaded_in_s: float | None = None
        self.errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def route(self, record: Mapping[str, Any]) -> LoadedModel | None:
        """The champion of `record`'s segment, or None (the global model serves)."""
        return self.models.get(self.spec.segment_of(record))

    def start(self, registry: Registry) -> None:
        """Load every segment champion in a background thread."""
        self._thread = threading.Thread(target=self._warm, args=(registry,), name="driftlight-fleet-load", daemon=True)
        self._thread.start()

    def _warm(self, registry: Registry) -> None:
        t0 = time.perf_counter()
        try:
            self.reload(registry)
        except Exception as exc:
            log.error("fleet: loading the segment champions failed (%s); the global model serves them", exc)
        self.loaded_in_s = round(time.perf_counter() - t0, 2)
        log.info("fleet %s: %d segment champions loaded in %.1f s", self.spec.name, len(self.models), self.loaded_in_s)

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def reload(self, registry: Registry) -> dict[str, Any]:
        """Load champions that are new or moved; drop segments whose alias is gone. Thread-safe."""
        from core.fleet import champion_versions, segment_of_model

        with self._lock:
            wanted = {
                segment_of_model(self.spec, n): (n, v)
                for n, v in champion_versions(registry, self.spec).items()
                if n != self.spec.global_model
            }
            self.expected = len(wanted)
            changed = []
            for segment, (name, version) in sorted(wanted.items()):
                old = self.models.get(segment)
                if old is not None and old.version == version:
                    continue
                try:
                    bundle = registry.load(name, version)
                except Exception as exc:  # keep what serves; the global model covers the segment
                    self.errors[segment] = f"{type(exc).__name__}: {exc}"
                    log.error("fleet: %s v%s failed to load: %s", name, version, exc)
                    continue
                self.errors.pop(segment, None)
                new = dict(self.models)
                new[segment] = LoadedModel(name=name, version=version, alias=self.spec.alias, bundle=bundle)
                self.models = new  # the swap: one assignment
                changed.append(segment)
            gone = [s for s in self.models if s not in wanted]
            if gone:
                self.models = {s: m for s, m in self.models.items() if s in wanted}
            return {"loaded": len(self.models), "changed": changed, "dropped": gone}

    def describe(self) -> dict[str, Any]:
        models = self.models
        return {
            "fleet": self.spec.name,
            "segment_by": list(self.spec.segment_by),
            "global_model": self.spec.global_model,
            "segment_champions": self.expected,
            "loaded": len(models),
            "loaded_in_s": self.loaded_in_s,
            "load_errors": dict(self.errors),
            "models": {s: {"name": m.name, "version": m.version} for s, m in sorted(models.items())},
        }
