"""Fleet routing in the service: each request goes to its segment's champion, else the global model.

Loading is eager but off the critical path: at start the global model is loaded like the single
model (it is `ModelHolder.model`, so /ready, the fallback and hot reload work as before), then a
background thread loads every segment champion (~1 s each from MLflow here) and swaps them in one
by one. Until a segment's champion is in, the global model serves that segment — and the response
and the logged row say so (`model_name`), so nothing is mislabelled while warming. The alias poll
reads every champion's version in one registry query and reloads only the models that moved, each
swap one dict assignment (a request reads the dict once).

Shadow scoring works per model: with `shadow_alias` set (e.g. `challenger`), every segment whose
registered model has a version under that alias (other than its champion) gets that version
loaded beside its champion, and its traffic is scored by it off the request path
(`service.lifecycle.ShadowScorer`), each score stored against the served prediction with the shadow
version. The global model's shadow is the holder's, as for the single model.
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

    def __init__(self, spec: FleetSpec, shadow_alias: str | None = None) -> None:
        self.spec = spec
        self.shadow_alias = shadow_alias
        self.models: dict[str, LoadedModel] = {}
        self.shadows: dict[str, LoadedModel] = {}  # registered model name -> its shadow version
        self.expected = 0  # champions the registry listed at the last poll (segments only)
        self.loaded_in_s: float | None = None
        self.errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def route(self, record: Mapping[str, Any]) -> LoadedModel | None:
        """The champion of `record`'s segment, or None (the global model serves)."""
        return self.models.get(self.spec.segment_of(record))

    def shadow_of(self, model_name: str) -> LoadedModel | None:
        """The shadow version loaded beside segment model `model_name`, if any."""
        return self.shadows.get(model_name)

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
            out: dict[str, Any] = {"loaded": len(self.models), "changed": changed, "dropped": gone}
            if self.shadow_alias:
                out["shadows"] = self._reload_shadows(registry, {n: v for n, v in wanted.values()})
            return out

    def _reload_shadows(self, registry: Registry, champions: Mapping[str, str]) -> dict[str, str]:
        """Load the `shadow_alias` version of every segment model that has one other than its
        champion; drop shadows whose alias moved away or now names the champion. One query."""
        from core.fleet import champion_versions

        assert self.shadow_alias is not None
        wanted = {
            n: v
            for n, v in champion_versions(registry, self.spec, self.shadow_alias).items()
            if n in champions and champions[n] != v
        }
        new = {n: m for n, m in self.shadows.items() if wanted.get(n) == m.version}
        for name, version in sorted(wanted.items()):
            if name in new:
                continue
            try:
                bundle = registry.load(name, version)
            except Exception as exc:  # a shadow that cannot load is not scored; serving is untouched
                log.error("fleet: shadow %s v%s failed to load: %s", name, version, exc)
                continue
            new[name] = LoadedModel(name=name, version=version, alias=self.shadow_alias, bundle=bundle)
            log.info("fleet: shadow scoring %s v%s (%s) beside its champion", name, version, self.shadow_alias)
        self.shadows = new  # the swap: one assignment
        return {n: m.version for n, m in sorted(new.items())}

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
            "shadow_alias": self.shadow_alias,
            "shadows": {n: m.version for n, m in sorted(self.shadows.items())},
        }
