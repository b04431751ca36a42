"""The service's typed context: every app-scoped collaborator, created once per worker.

`create_app` builds one `ServiceContext`; the route modules close over it (a closure costs ~94 µs
less per request than resolving a plain `def` dependency on the hot path, STYLE.md #3). What needs
I/O (the registry, the log writer, the run store, the violation counter, the reloader, the shadow
scorer) is created in `start()`, called by the lifespan, never at import or in the factory, and
stopped in reverse order by `stop()`. Collaborators passed to `create_app` (fakes in tests) are
used as they are.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from core.registry import Registry
from core.runs import RunStore
from core.settings import Settings
from data_contracts.contract import Contract
from service.fleet_view import FleetRunCache
from service.lifecycle import ModelHolder, Reloader, ShadowScorer
from service.metrics import ServiceMetrics, multiprocess_dir
from service.violations import ViolationCounter

log = logging.getLogger("driftlight.service")


class PredictionSink(Protocol):
    """Where served predictions and delayed labels go (service.predlog.PredictionLog, or a fake)."""

    def log_prediction(self, row: Mapping[str, Any]) -> None: ...

    def log_label(self, row: Mapping[str, Any]) -> None: ...

    def pending(self) -> int: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class ServiceContext:
    settings: Settings
    contract: Contract
    metrics: ServiceMetrics
    holder: ModelHolder
    record_model: type[BaseModel]
    feature_names: list[str]
    registry: Registry | None = None
    log: PredictionSink | None = None
    runs: RunStore | None = None
    violations: ViolationCounter | None = None
    reloader: Reloader | None = None
    shadow: ShadowScorer | None = None
    fleet_runs: FleetRunCache | None = None  # the latest fleet run, cached (a fleet is configured)
    flagged: dict[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Categories the contract serves as unknown (with a warning) rather than rejecting.
        self.flagged = {f.name: frozenset(f.categories) for f in self.contract.category_fields if f.unseen == "flag"}

    @property
    def id_key(self) -> bytes:
        return self.settings.id_key

    def run_store(self) -> RunStore:
        if self.runs is None:
            self.runs = RunStore(self.settings.resolved_log_store_url)
        return self.runs

    def start(self) -> None:
        """Open what the worker needs: registry + first model load, alias polling, the log writer,
        the violation counter, the shadow scorer."""
        s = self.settings
        if self.registry is None:
            from core.registry import registry_from_settings

            self.registry = registry_from_settings(s)
        self.holder.start(self.registry)
        self.reloader = Reloader(self.holder, self.registry, s.reload_interval)
        self.reloader.start()
        if self.log is None:
            self.log = self._open_log()
        self.log.start()
        if self.violations is None:
            self.violations = ViolationCounter(self.run_store())
        self.violations.start()
        if s.shadow_alias:
            self.shadow = ShadowScorer(self.holder, self.run_store(), list(self.contract.field_names), self.metrics)
            self.shadow.start()

    def _open_log(self) -> PredictionSink:
        from core.logstore import LogStore
        from service.predlog import PredictionLog

        s = self.settings
        store = LogStore(s.resolved_log_store_url, self.contract, self.feature_names)
        ensure_schema = None
        try:
            store.create_schema()
        except Exception as exc:  # store down at start: rows wait in memory / spool, /ready says degraded
            from core.logstore import store_error_message

            log.error("%s; rows will wait and be retried", store_error_message(store.url, exc))
            ensure_schema = store.create_schema
        return PredictionLog(
            store,
            spool_dir=s.spool_dir,
            batch_size=s.log_batch_size,
            flush_interval=s.log_flush_interval,
            max_memory_rows=s.log_max_memory_rows,
            suspect_after=s.log_suspect_after,
            spool_reserve_bytes=s.log_spool_reserve_bytes,
            durable=s.log_durability == "local",
            ensure_schema=ensure_schema,
            metrics=self.metrics,
        )

    def stop(self) -> None:
        """Stop in reverse: no more reloads or shadow scores, then flush the log and the counts."""
        if self.reloader is not None:
            self.reloader.stop()
        if self.shadow is not None:
            self.shadow.stop()
        if self.log is not None:
            self.log.stop()
        if self.violations is not None:
            self.violations.stop()
        if multiprocess_dir():
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())

    async def acknowledged(self) -> JSONResponse | None:
        """None once the rows this request logged may be acknowledged (durable mode: fsync'd in the
        local journal); a 503 if they could not be made durable (the caller should retry)."""
        barrier = getattr(self.log, "barrier", None)
        fut = barrier() if callable(barrier) else None
        if fut is None:
            return None
        try:
            await asyncio.wrap_future(fut)
        except OSError as exc:
            from service.errors import error_response, item

            detail = item("log", "unavailable", "a writable journal in DRIFTLIGHT_HOME/spool", None, type(exc).__name__)
            return error_response(503, "log_not_durable", "the prediction could not be written durably: retry", [detail])
        return None

    def count_unseen(self, record: Mapping[str, Any]) -> list[str]:
        """Warnings for categories the contract flags as unseen (served as unknown), counted."""
        out: list[str] = []
        for name, known in self.flagged.items():
            value = record[name]
            if value not in known:
                self.metrics.violations.labels(name, "unseen_category").inc()
                out.append(f"{name}={value!r} is not in the contract's known categories: served as unknown to the model")
        return out

    def log_row(
        self,
        pid: str,
        rec: Mapping[str, Any],
        p: float,
        late: bool,
        x: Any,
        warns: list[str],
        version: str,
        now: datetime,
        *,
        model_name: str | None = None,
    ) -> None:
        assert self.log is not None, "the log writer is opened in start()"
        self.log.log_prediction(
            {
                "prediction_id": pid,
                "served_at": now,
                "event_time": rec[self.contract.timestamp_field],
                "model_name": model_name or self.holder.model_name,
                "model_version": version,
                "probability": p,
                "late": int(late),
                "warnings": warns,
                "inputs": rec,
                # The fallback computes no features: their columns stay NULL for its rows.
                "features": dict(zip(self.feature_names, x.tolist(), strict=True)) if x is not None else None,
            }
        )
