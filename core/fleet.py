"""Fleet helpers over the registry and the run store: champions, monitoring artifacts, fleet runs.

- `champion_versions`: every segment's champion version in one registry query (MLflow's
  `search_registered_models` returns all aliases at once: 0.16 s for 107 models here, against
  ~0.08 s per alias lookup), for the service's reload poll and the fleet monitor.
- `load_refs`: what the fleet monitor needs of each model, read from the two JSON artifacts
  (metadata, profile) only — no skops model load — and cached on disk by (name, version), which
  MLflow never changes.
- `FleetRunStore`: one row per fleet monitor run (every verdict, the summary) in the run database.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, create_engine, insert, select

from core.registry import Registry
from data_contracts.contract import Contract
from data_contracts.fleet import GLOBAL, FleetSpec
from monitoring.fleet import ModelRef


def champion_versions(registry: Registry, spec: FleetSpec, alias: str | None = None) -> dict[str, str]:
    """{model name: version} of every fleet model with `alias` (default: the fleet's champion alias,
    `spec.alias`) set, segments and global, in one registry query where the registry allows it."""
    alias = alias or spec.alias
    client = getattr(registry, "client", None)
    if client is not None and hasattr(client, "search_registered_models"):
        out: dict[str, str] = {}
        token = None
        while True:
            page = client.search_registered_models(
                filter_string=f"name LIKE '{spec.model_prefix}%'", max_results=1000, page_token=token
            )
            for rm in page:
                v = (rm.aliases or {}).get(alias)
                if v is not None:
                    out[rm.name] = str(v)
            token = getattr(page, "token", None)
            if not token:
                return out
    names = getattr(registry, "names", None)
    candidates = names() if callable(names) else []
    return {n: v for n in candidates if n.startswith(spec.model_prefix) and (v := registry.alias_version(n, alias))}


def segment_of_model(spec: FleetSpec, name: str) -> str:
    return name[len(spec.model_prefix) :] if name.startswith(spec.model_prefix) else name


def _artifacts(registry: Registry, name: str, version: str) -> tuple[dict[str, Any], dict[str, Any]]:
    client = getattr(registry, "client", None)
    if client is None:  # the in-memory registry (tests): the bundle holds both
        b = registry.load(name, version)
        return dict(b.metadata), dict(b.profile or {})
    run_id = client.get_model_version(name, version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        md = json.loads(Path(client.download_artifacts(run_id, "driftlight/metadata.json", tmp)).read_text(encoding="utf-8"))
        pr = json.loads(Path(client.download_artifacts(run_id, "driftlight/profile.json", tmp)).read_text(encoding="utf-8"))
    return md, pr


def load_refs(
    registry: Registry, spec: FleetSpec, cache_dir: Path | None = None, contract: Contract | None = None
) -> dict[str, ModelRef]:
    """{model name: ModelRef} of every fleet champion (segments and global). `contract` bounds the
    unit conversions the unit check tries (else each reference's observed range does)."""
    out: dict[str, ModelRef] = {}
    for name, version in sorted(champion_versions(registry, spec).items()):
        cached = cache_dir / f"{name}@{version}.json" if cache_dir is not None else None
        if cached is not None and cached.exists():
            doc = json.loads(cached.read_text(encoding="utf-8"))
            md, pr = doc["metadata"], doc["profile"]
        else:
            md, pr = _artifacts(registry, name, version)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(".tmp")
                tmp.write_text(json.dumps({"metadata": md, "profile": pr}), encoding="utf-8")
                tmp.replace(cached)
        segment = (md.get("fleet") or {}).get("segment") or segment_of_model(spec, name)
        out[name] = ModelRef.from_artifacts(name, version, segment, md, pr, contract)
    if spec.global_model not in out:
        raise LookupError(f"no {spec.global_model}@{spec.alias}: run `driftlight fleet train` first")
    return out


_meta = MetaData()
fleet_runs = Table(
    "fleet_runs",
    _meta,
    Column("run_id", String(36), primary_key=True),
    Column("fleet", String(128), nullable=False),
    Column("finished_at", DateTime(), nullable=False),
    Column("window_end", String(32)),
    Column("engine", String(16)),
    Column("summary", Text(), nullable=False),
    Column("verdicts", Text(), nullable=False),
)


class FleetRunStore:
    """Fleet monitor runs in the run database (the log store's URL): one row per run."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        _meta.create_all(self.engine, tables=[fleet_runs])

    def record(self, fleet: str, window_end: str, engine: str, summary: Mapping[str, Any], verdicts: list[dict[str, Any]]) -> str:
        run_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(
                insert(fleet_runs).values(
                    run_id=run_id,
                    fleet=fleet,
                    finished_at=datetime.now(UTC).replace(tzinfo=None),
                    window_end=window_end,
                    engine=engine,
                    summary=json.dumps(summary, default=str),
                    verdicts=json.dumps(verdicts, default=str),
                )
            )
        return run_id

    def latest(self, fleet: str | None = None) -> dict[str, Any] | None:
        stmt = select(fleet_runs).order_by(fleet_runs.c.finished_at.desc()).limit(1)
        if fleet is not None:
            stmt = stmt.where(fleet_runs.c.fleet == fleet)
        with self.engine.connect() as conn:
            row = conn.execute(stmt).mappings().first()
        if row is None:
            return None
        return {
            "run_id": row["run_id"],
            "fleet": row["fleet"],
            "finished_at": row["finished_at"].replace(tzinfo=UTC).isoformat(timespec="seconds"),
            "window_end": row["window_end"],
            "engine": row["engine"],
            "summary": json.loads(row["summary"]),
            "verdicts": json.loads(row["verdicts"]),
        }

    def dispose(self) -> None:
        self.engine.dispose()


__all__ = ["GLOBAL", "FleetRunStore", "champion_versions", "load_refs", "segment_of_model"]
