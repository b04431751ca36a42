"""The model registry seam: an MLflow implementation and an in-memory one for unit tests.

A registered model version is a `ModelBundle`: the served Pipeline (features + booster), the
non-ML baseline (the promotion bar and the serving fallback) and a metadata mapping (threshold,
training window, validation metrics, contract version, feature names). Both training and serving
use this module; mlflow is imported lazily so importing it costs nothing.

Serialisation is skops (no arbitrary code on load): our own classes are listed as trusted types.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from core.settings import Settings

# Trust decision (say it, don't hide it): skops refuses these by default. Our two classes hold only
# numbers, strings and dicts. The booster's TreePredictor stores node indices that sklearn uses
# without bounds checks, so a *tampered* file could crash the process on predict; functools.partial
# and check_array are referenced by the booster's internal preprocessing. We accept them because
# only our own training pipeline writes to the registry's artifact store: protect that store's
# write access (in compose, only the trainer and the api's retrain path hold it). Still far safer
# than cloudpickle, which would run arbitrary code on load.
TRUSTED_TYPES = [
    "features.transformers.FlightFeatures",
    "features.baseline.HistoricalRateBaseline",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "functools.partial",
    "sklearn.utils.validation.check_array",
]
# What the model needs at inference, stated (MLflow's inference would take seconds and list test tools).
PIP_REQUIREMENTS = ["scikit-learn==1.9.1", "numpy==2.4.6", "pandas==2.3.3", "skops==0.16.0"]
# Exit code of `driftlight promote|rollback` when the challenger gate refuses the change (the admin
# endpoints map it to a 409 with the gate's reasons; any other non-zero code is an error).
GATE_REFUSED_EXIT = 3


@dataclass(frozen=True)
class ModelBundle:
    pipeline: Any
    baseline: Any
    metadata: Mapping[str, Any]
    profile: Mapping[str, Any] | None = None  # monitoring.profile.ReferenceProfile.to_dict()


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    run_id: str | None = None
    aliases: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


class Registry(Protocol):
    def register(
        self,
        name: str,
        bundle: ModelBundle,
        *,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        artifacts: Mapping[str, str],
        tags: Mapping[str, str] | None = None,
        input_example: Any = None,
    ) -> ModelVersion: ...

    def set_alias(self, name: str, alias: str, version: str) -> None: ...
    def delete_alias(self, name: str, alias: str) -> None: ...
    def alias_version(self, name: str, alias: str) -> str | None: ...
    def load(self, name: str, version: str) -> ModelBundle: ...
    def versions(self, name: str) -> list[ModelVersion]: ...
    def record_evidence(self, name: str, version: str, evidence: Mapping[str, Any], tags: Mapping[str, str]) -> None: ...


class InMemoryRegistry:
    """A dict-backed `Registry` for unit tests (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bundles: dict[tuple[str, str], ModelBundle] = {}
        self._aliases: dict[tuple[str, str], str] = {}
        self.logged: list[dict[str, Any]] = []
        self.evidence: list[dict[str, Any]] = []

    def register(self, name, bundle, *, params, metrics, artifacts, tags=None, input_example=None):  # type: ignore[no-untyped-def]
        with self._lock:
            version = str(1 + sum(1 for n, _ in self._bundles if n == name))
            self._bundles[(name, version)] = bundle
            self.logged.append({"params": dict(params), "metrics": dict(metrics), "artifacts": dict(artifacts)})
            return ModelVersion(name, version, tags=dict(tags or {}))

    def set_alias(self, name: str, alias: str, version: str) -> None:
        with self._lock:
            if (name, version) not in self._bundles:
                raise KeyError(f"{name} v{version} is not registered")
            self._aliases[(name, alias)] = version

    def delete_alias(self, name: str, alias: str) -> None:
        with self._lock:
            self._aliases.pop((name, alias), None)

    def alias_version(self, name: str, alias: str) -> str | None:
        with self._lock:
            return self._aliases.get((name, alias))

    def load(self, name: str, version: str) -> ModelBundle:
        with self._lock:
            return self._bundles[(name, version)]

    def record_evidence(self, name: str, version: str, evidence: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        with self._lock:
            self.evidence.append({"name": name, "version": version, "evidence": dict(evidence), "tags": dict(tags)})

    def names(self) -> list[str]:
        """Every registered model name (the fleet helpers list a fleet's models by prefix)."""
        with self._lock:
            return sorted({n for n, _ in self._bundles})

    def versions(self, name: str) -> list[ModelVersion]:
        with self._lock:
            return [
                ModelVersion(n, v, aliases=tuple(a for (nn, a), vv in self._aliases.items() if nn == n and vv == v))
                for n, v in self._bundles
                if n == name
            ]


class MlflowRegistry:
    """`Registry` over an MLflow tracking server or local store (`sqlite:///…` + artifact folder)."""

    def __init__(self, tracking_uri: str, artifact_root: str | None = None, experiment: str = "driftlight") -> None:
        # Entry points set this; the guard covers library use (a notebook building a registry):
        # MLflow's telemetry thread would try the network, and it reads the flag at import.
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        import mlflow
        from mlflow import MlflowClient

        self._mlflow = mlflow
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._experiment_name = experiment
        self._artifact_root = artifact_root

    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self._experiment_name)
        if exp is not None:
            return str(exp.experiment_id)
        return str(self.client.create_experiment(self._experiment_name, artifact_location=self._artifact_root))

    def register(self, name, bundle, *, params, metrics, artifacts, tags=None, input_example=None):  # type: ignore[no-untyped-def]
        """Log a run (params, metrics, artifacts, baseline, model) and register the model.

        `input_example` (a small DataFrame of contract fields) gives the model a signature.
        """
        mlflow = self._mlflow
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        with mlflow.start_run(experiment_id=self._experiment_id()) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})
            mlflow.set_tags(dict(tags or {}))
            with tempfile.TemporaryDirectory() as tmp:
                files = {**artifacts, "driftlight/metadata.json": json.dumps(bundle.metadata, indent=2, sort_keys=True)}
                if bundle.profile is not None:
                    files["driftlight/profile.json"] = json.dumps(bundle.profile)
                for rel, text in files.items():
                    p = Path(tmp) / rel
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_text(text, encoding="utf-8")
                mlflow.log_artifacts(tmp)
            mlflow.sklearn.log_model(
                bundle.baseline,
                name="baseline",
                signature=False,
                serialization_format="skops",
                skops_trusted_types=TRUSTED_TYPES,
                pip_requirements=PIP_REQUIREMENTS,
            )
            signature = None
            if input_example is not None:
                from mlflow.models import infer_signature

                signature = infer_signature(input_example, bundle.pipeline.predict_proba(input_example)[:, 1])
            info = mlflow.sklearn.log_model(
                bundle.pipeline,
                name="model",
                signature=signature,
                serialization_format="skops",
                skops_trusted_types=TRUSTED_TYPES,
                pip_requirements=PIP_REQUIREMENTS,
            )
            mv = mlflow.register_model(info.model_uri, name, tags=dict(tags or {}))
            return ModelVersion(name, str(mv.version), run_id=run.info.run_id, tags=dict(tags or {}))

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)

    def delete_alias(self, name: str, alias: str) -> None:
        self.client.delete_registered_model_alias(name, alias)

    def alias_version(self, name: str, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    def load(self, name: str, version: str) -> ModelBundle:
        mlflow = self._mlflow
        mlflow.set_tracking_uri(self.tracking_uri)
        mv = self.client.get_model_version(name, version)
        # Resolve through *this* registry's client: `models:/…` URIs go through MLflow's
        # process-global registry URI, which another registry object may have pointed elsewhere
        # (a test caught a model loaded from the wrong store that way).
        pipeline = mlflow.sklearn.load_model(self.client.get_model_version_download_uri(name, version))
        # MLflow 3 stores a logged model outside the run's artifact folder; `runs:/` resolves it
        # through the tracking URI, which was set to this registry's at the top of this method.
        run_id = _run_of(mv)
        baseline = mlflow.sklearn.load_model(f"runs:/{run_id}/baseline")
        profile = None
        with tempfile.TemporaryDirectory() as tmp:
            path = self.client.download_artifacts(run_id, "driftlight/metadata.json", tmp)
            metadata = json.loads(Path(path).read_text(encoding="utf-8"))
            names = {a.path for a in self.client.list_artifacts(run_id, "driftlight")}
            if "driftlight/profile.json" in names:
                ppath = self.client.download_artifacts(run_id, "driftlight/profile.json", tmp)
                profile = json.loads(Path(ppath).read_text(encoding="utf-8"))
        return ModelBundle(pipeline=pipeline, baseline=baseline, metadata=metadata, profile=profile)

    def record_evidence(self, name: str, version: str, evidence: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        """Keep a gate decision with the model version: tags on the version, and on its run a JSON
        artifact (the full evidence) plus the numeric metrics under `gate_`."""
        mv = self.client.get_model_version(name, version)
        for k, v in tags.items():
            self.client.set_model_version_tag(name, version, k, str(v)[:5000])
        stamp = str(evidence.get("decided_at", "")).replace(":", "").replace("-", "") or "decision"
        run_id = _run_of(mv)
        self.client.log_dict(run_id, json.loads(json.dumps(dict(evidence), default=str)), f"driftlight/gate-{stamp}.json")
        for side in ("champion", "challenger"):
            for k, v in (evidence.get(side) or {}).get("metrics", {}).items():
                if isinstance(v, int | float) and v == v:
                    self.client.log_metric(run_id, f"gate_{side}_{k}", float(v))

    def versions(self, name: str) -> list[ModelVersion]:
        from mlflow.exceptions import MlflowException

        try:
            model_aliases = self.client.get_registered_model(name).aliases or {}
        except MlflowException:  # no such model yet
            return []
        by_version: dict[str, list[str]] = {}
        for alias, version in model_aliases.items():
            by_version.setdefault(str(version), []).append(alias)
        # search_model_versions does not fill in aliases in MLflow 3: take them from the model.
        out = [
            ModelVersion(
                name,
                str(mv.version),
                run_id=mv.run_id,
                aliases=tuple(sorted(by_version.get(str(mv.version), ()))),
                tags=dict(mv.tags or {}),
            )
            for mv in self.client.search_model_versions(f"name='{name}'")
        ]
        return sorted(out, key=lambda m: int(m.version))


def registry_from_settings(settings: Settings) -> MlflowRegistry:
    return MlflowRegistry(settings.resolved_tracking_uri, settings.resolved_artifact_root, settings.experiment)


def _run_of(mv: Any) -> str:
    """The run a registered version was logged from (driftlight registers only from runs)."""
    if not mv.run_id:
        raise LookupError(f"model version {mv.name} v{mv.version} has no run: it was not registered by driftlight")
    return str(mv.run_id)


def required_alias(registry: Registry, name: str, alias: str) -> str:
    """The version `alias` points at, or a LookupError that says what to run."""
    version = registry.alias_version(name, alias)
    if version is None:
        raise LookupError(f"no version of {name!r} has alias {alias!r}: run `driftlight train` first")
    return version
