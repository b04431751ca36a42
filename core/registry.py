"""The model registry seam: an MLflow implementation and an in-memory one for unit tests.

A registered model version is a `ModelBundle`: the served Pipeline (features + booster), the
non-ML baseline (the promotion bar and the serving fallback) and a metadata mapping (threshold,
training window, validation metrics, contract version, feature names). Both training and serving
use this module; mlflow is imported lazily so importing it costs nothing.

Serialisation is skops (no arbitrary code on load): our own classes are listed as trusted types.
Loading enforces it: a version's artifacts are downloaded to a local folder and its `MLmodel` file
is checked (sklearn flavour, `serialization_format: skops`, a `.skops` model file, no other
flavour that could load code) before MLflow deserialises anything; a pickle or cloudpickle model
is refused with `UnsafeArtifactError`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from core.settings import Settings

from core.compiled import TREELITE_ARTIFACT

log = logging.getLogger("driftlight.registry")

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
PIP_REQUIREMENTS = ["scikit-learn==1.9.1", "numpy==2.4.6", "pandas==2.3.3", "skops==0.16.0", "treelite==4.8.1"]
# The one serialization driftlight writes (and therefore the only one it loads).
SERIALIZATION_FORMAT = "skops"


class UnsafeArtifactError(RuntimeError):
    """A registry artifact is not in the format driftlight writes: refused before deserialising."""


def check_mlmodel(model_dir: Path) -> None:
    """Raise `UnsafeArtifactError` unless `model_dir` holds a skops-serialised sklearn model.

    Reads only the `MLmodel` YAML (safe_load): nothing in the folder is deserialised here.
    """
    import yaml

    try:
        doc = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UnsafeArtifactError(f"{model_dir.name}: no readable MLmodel file ({type(exc).__name__})") from None
    flavors = doc.get("flavors") if isinstance(doc, dict) else None
    sk = flavors.get("sklearn") if isinstance(flavors, dict) else None
    if not isinstance(flavors, dict) or not isinstance(sk, dict):
        raise UnsafeArtifactError(f"{model_dir.name}: not an sklearn-flavoured model")
    fmt = sk.get("serialization_format")
    if fmt != SERIALIZATION_FORMAT:
        raise UnsafeArtifactError(
            f"{model_dir.name}: serialization_format {fmt!r} refused; driftlight only loads {SERIALIZATION_FORMAT!r} "
            "(pickle and cloudpickle run arbitrary code on load)"
        )
    model_file = str(sk.get("pickled_model", ""))
    if not model_file.endswith(".skops") or "/" in model_file or ".." in model_file:
        raise UnsafeArtifactError(f"{model_dir.name}: model file {model_file!r} is not a local .skops file")
    loader = (flavors.get("python_function") or {}).get("loader_module", "mlflow.sklearn")
    if loader != "mlflow.sklearn" or set(flavors) - {"sklearn", "python_function"}:
        raise UnsafeArtifactError(f"{model_dir.name}: unexpected flavours {sorted(flavors)} / loader {loader!r}")


@dataclass(frozen=True)
class ModelBundle:
    pipeline: Any
    baseline: Any
    metadata: Mapping[str, Any]
    profile: Mapping[str, Any] | None = None  # monitoring.profile.ReferenceProfile.to_dict()
    # The booster compiled for single-record inference (core.compiled; a Treelite checkpoint), or
    # None: a bundle without it (an older version, or a failed compile/load) is served by the Pipeline.
    compiled: bytes | None = None


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


class _LevelledPrints:
    """MLflow's print stream (`eprint`), passing text on only while the `mlflow` logger is at INFO or
    below; its on/off switch (`mlflow.utils.logging_utils.disable_logging`) still applies."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    @property
    def enabled(self) -> bool:
        return bool(self._inner.enabled)

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._inner.enabled = value

    def write(self, text: str) -> int:
        if logging.getLogger("mlflow").isEnabledFor(logging.INFO):
            self._inner.write(text)
        return len(text)

    def flush(self) -> None:
        self._inner.flush()


def _mlflow_prints_follow_its_level() -> None:
    """Make MLflow's prints obey the `mlflow` logger's level (MLFLOW_LOGGING_LEVEL; the CLI sets it from
    DRIFTLIGHT_LOG_LEVEL, WARNING by default).

    Some of its INFO-grade lines ("Successfully registered model 'x'.", "Created version '1' of model
    'x'.") are printed by `eprint` to the module's stream, around the logger, so no level silenced
    them. `eprint` looks that stream up at each call: wrap it. Its logging handlers keep the stream
    object they were built with, so warnings are untouched. (Flipping the stream's own switch
    instead does not hold: MLflow switches it back on after some of its imports.) Idempotent."""
    from mlflow.utils import logging_utils

    if not isinstance(logging_utils.MLFLOW_LOGGING_STREAM, _LevelledPrints):
        logging_utils.MLFLOW_LOGGING_STREAM = _LevelledPrints(logging_utils.MLFLOW_LOGGING_STREAM)  # type: ignore[assignment]


class MlflowRegistry:
    """`Registry` over an MLflow tracking server or local store (`sqlite:///…` + artifact folder)."""

    def __init__(self, tracking_uri: str, artifact_root: str | None = None, experiment: str = "driftlight") -> None:
        # Entry points set this; the guard covers library use (a notebook building a registry):
        # MLflow's telemetry thread would try the network, and it reads the flag at import.
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        import mlflow
        from mlflow import MlflowClient

        _mlflow_prints_follow_its_level()
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
                if bundle.compiled is not None:
                    p = Path(tmp) / TREELITE_ARTIFACT
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_bytes(bundle.compiled)
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
        run_id = _run_of(mv)
        profile = None
        with tempfile.TemporaryDirectory() as tmp:
            # Resolve through *this* registry's client: `models:/…` URIs go through MLflow's
            # process-global registry URI, which another registry object may have pointed elsewhere
            # (a test caught a model loaded from the wrong store that way). MLflow 3 stores a logged
            # model outside the run's artifact folder; `runs:/` resolves it through the tracking
            # URI, which was set to this registry's at the top of this method.
            pipeline = self._load_checked(self.client.get_model_version_download_uri(name, version), Path(tmp) / "model")
            baseline = self._load_checked(f"runs:/{run_id}/baseline", Path(tmp) / "baseline")
            path = self.client.download_artifacts(run_id, "driftlight/metadata.json", tmp)
            metadata = json.loads(Path(path).read_text(encoding="utf-8"))
            names = {a.path for a in self.client.list_artifacts(run_id, "driftlight")}
            if "driftlight/profile.json" in names:
                ppath = self.client.download_artifacts(run_id, "driftlight/profile.json", tmp)
                profile = json.loads(Path(ppath).read_text(encoding="utf-8"))
            compiled = self._load_compiled(str(mv.run_id), tmp, names)
        return ModelBundle(pipeline=pipeline, baseline=baseline, metadata=metadata, profile=profile, compiled=compiled)

    def _load_compiled(self, run_id: str, tmp: str, names: set[str]) -> bytes | None:
        """The compiled booster's bytes, or None if this version has none or it cannot be read
        (the service then serves the Pipeline: a missing fast path must never stop a model)."""
        if "driftlight/compiled" not in names:
            return None
        try:
            return Path(self.client.download_artifacts(run_id, TREELITE_ARTIFACT, tmp)).read_bytes()
        except Exception as exc:  # any failure here means "no fast path", said once
            log.warning("compiled booster of run %s not loaded (%s): serving the Pipeline", run_id, exc)
            return None

    def _load_checked(self, uri: str, dst: Path) -> Any:
        """Download the model at `uri` to `dst`, check its format, and only then deserialise it
        (from the checked local copy, so what is checked is what is loaded)."""
        dst.mkdir(parents=True)
        local = Path(self._mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
        check_mlmodel(local)
        return self._mlflow.sklearn.load_model(str(local))

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
