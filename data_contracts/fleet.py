"""The fleet file (YAML): which segments get their own model, how they are trained and watched.

`load_fleet` is the only function that reads a file; `FleetSpec` is frozen and pure. A record's
segment is the values of `segment_by` joined by "-" (origin + dest = a route, "EWR-ATL"); the
model serving it is `<model_prefix><segment>` when that segment has a champion, else the global
model `<model_prefix>global`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from data_contracts.contract import Contract

GLOBAL = "global"


@dataclass(frozen=True)
class FleetTrain:
    start: date
    end: date
    validation_days: int = 14
    seed: int = 0
    min_rows: int = 200
    min_validation_class_rows: int = 5
    segment_params: Mapping[str, Any] = field(default_factory=dict)
    null_resamples: int = 200
    null_days: tuple[int, ...] = (1, 3, 7, 14, 28)


@dataclass(frozen=True)
class FleetMonitor:
    lookback_days: tuple[int, ...] = (1, 7, 28)
    min_rows: int = 30
    min_labels: int = 50
    fdr: float = 0.01
    yellow_only: tuple[str, ...] = ("psi", "label_rate_shift", "expected_roc_auc_drop")
    # "longest": the label tests (realised ROC AUC, label rate) count the longest lookback's labels
    # while the data tests judge the shortest span holding min_rows; "window": both on that span.
    label_span: str = "longest"


@dataclass(frozen=True)
class FleetSpec:
    name: str
    segment_by: tuple[str, ...]
    model_prefix: str
    alias: str
    train: FleetTrain
    monitor: FleetMonitor

    @property
    def global_model(self) -> str:
        return self.model_name(GLOBAL)

    def model_name(self, segment: str) -> str:
        return f"{self.model_prefix}{segment}"

    def segment_of(self, record: Mapping[str, Any]) -> str:
        """The segment id of one record (a mapping of contract fields)."""
        return "-".join(str(record[k]) for k in self.segment_by)

    def segment_values(self, columns: Sequence[Any]) -> list[str]:
        """Segment ids of many rows, from one sequence per `segment_by` field."""
        return ["-".join(str(v) for v in vals) for vals in zip(*columns, strict=True)]

    def check(self, contract: Contract) -> None:
        names = set(contract.field_names)
        bad = [k for k in self.segment_by if k not in names]
        if bad:
            raise ValueError(f"fleet {self.name!r}: segment_by {bad} are not contract fields")
        if not self.segment_by:
            raise ValueError(f"fleet {self.name!r}: segment_by is empty")
        if not 0 < self.monitor.fdr < 1:
            raise ValueError(f"fleet {self.name!r}: monitor.fdr must be in (0, 1), got {self.monitor.fdr}")
        if sorted(self.monitor.lookback_days) != list(self.monitor.lookback_days) or min(self.monitor.lookback_days) < 1:
            raise ValueError(f"fleet {self.name!r}: monitor.lookback_days must be increasing and >= 1")


def parse_fleet(doc: Mapping[str, Any]) -> FleetSpec:
    unknown = set(doc) - {"name", "segment_by", "model_prefix", "alias", "train", "monitor"}
    if unknown:
        raise ValueError(f"fleet file: unknown keys {sorted(unknown)}")
    t = dict(doc.get("train") or {})
    m = dict(doc.get("monitor") or {})

    def as_date(v: Any, key: str) -> date:
        if isinstance(v, date):
            return v
        try:
            return date.fromisoformat(str(v))
        except ValueError as exc:
            raise ValueError(f"fleet file: train.{key} must be a date (YYYY-MM-DD), got {v!r}") from exc

    train = FleetTrain(
        start=as_date(t.pop("from", "2013-01-01"), "from"),
        end=as_date(t.pop("to", "2013-03-31"), "to"),
        validation_days=int(t.pop("validation_days", 14)),
        seed=int(t.pop("seed", 0)),
        min_rows=int(t.pop("min_rows", 200)),
        min_validation_class_rows=int(t.pop("min_validation_class_rows", 5)),
        segment_params=dict(t.pop("segment_params", {}) or {}),
        null_resamples=int(t.pop("null_resamples", 200)),
        null_days=tuple(int(d) for d in t.pop("null_days", (1, 3, 7, 14, 28))),
    )
    if t:
        raise ValueError(f"fleet file: unknown train keys {sorted(t)}")
    monitor = FleetMonitor(
        lookback_days=tuple(int(d) for d in m.pop("lookback_days", (1, 7, 28))),
        min_rows=int(m.pop("min_rows", 30)),
        min_labels=int(m.pop("min_labels", 50)),
        fdr=float(m.pop("fdr", 0.01)),
        yellow_only=tuple(str(x) for x in m.pop("yellow_only", ("psi", "label_rate_shift", "expected_roc_auc_drop"))),
        label_span=str(m.pop("label_span", "longest")),
    )
    if monitor.label_span not in ("longest", "window"):
        raise ValueError(f"fleet file: monitor.label_span must be 'longest' or 'window', got {monitor.label_span!r}")
    if m:
        raise ValueError(f"fleet file: unknown monitor keys {sorted(m)}")
    seg = doc.get("segment_by") or ()
    return FleetSpec(
        name=str(doc.get("name", "fleet")),
        segment_by=(seg,) if isinstance(seg, str) else tuple(str(s) for s in seg),
        model_prefix=str(doc.get("model_prefix", "flights-late--")),
        alias=str(doc.get("alias", "champion")),
        train=train,
        monitor=monitor,
    )


def default_fleet_path() -> Path:
    return Path(str(resources.files("data_contracts") / "fleet.yaml"))


def load_fleet(path: str | Path | None = None, contract: Contract | None = None) -> FleetSpec:
    """Read and check a fleet file (default: the packaged routes fleet)."""
    p = Path(path) if path is not None else default_fleet_path()
    with open(p, encoding="utf-8") as fh:
        spec = parse_fleet(yaml.safe_load(fh) or {})
    if contract is not None:
        spec.check(contract)
    return spec
