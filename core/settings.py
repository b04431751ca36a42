"""The one settings object of a driftlight process.

Built once at the entry point (a CLI command, the app factory's caller) and passed down; nothing
else reads the environment. Every field can be set as `DRIFTLIGHT_<NAME>` (e.g.
`DRIFTLIGHT_LOG_STORE_URL=postgresql+psycopg://...`). Bad values fail at start-up with a message
naming the variable. Embedded defaults (SQLite, local files under `home`) need no services.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Usable only in the dev profile: it makes prediction ids verifiable across workers on one machine.
_DEV_ID_SECRET = "driftlight-dev-only-id-secret"
# Secrets shorter than this are refused in prod: 32 URL-safe characters carry ~190 bits.
MIN_SECRET_LENGTH = 32
# Values that are public: this repository's dev secret and the placeholders of examples and docs.
PUBLISHED_SECRETS = frozenset(
    {_DEV_ID_SECRET, "change-me", "changeme", "change_me", "secret", "password", "admin", "token", "example", "test"}
)
_GENERATE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


def weak_secret(value: str) -> str | None:
    """Why `value` must not protect anything in prod (empty, short, placeholder, published), or None."""
    v = value.strip()
    if not v:
        return "is empty"
    if v.lower() in PUBLISHED_SECRETS or "change-me" in v.lower() or "changeme" in v.lower():
        return "is a published placeholder"
    if len(v) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    if len(set(v)) < 8:
        return "has fewer than 8 distinct characters"
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DRIFTLIGHT_", extra="forbid", validate_default=True)

    profile: Literal["dev", "prod"] = Field("dev", description="prod refuses dev defaults for secrets")
    home: Path = Field(Path(".driftlight"), description="folder for the embedded stores, artifacts, reports")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING",
        description="what the libraries (MLflow, alembic, urllib3, httpx...) may write to a command's stderr: WARNING "
        "keeps a cron mail to driftlight's own lines and real warnings; INFO (`driftlight -v`) brings MLflow's back",
    )

    # MLflow and the model
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; default sqlite:///<home>/mlflow.db")
    artifact_root: str | None = Field(None, description="MLflow artifact location; default <home>/mlartifacts")
    experiment: str = "driftlight"
    model_name: str = "flights-late"
    model_alias: str = "champion"
    fleet_file: Path | None = Field(
        None, description="fleet file (YAML): serve one model per segment plus a global one; unset = the one model above"
    )

    # Serving
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_batch: int = Field(1000, ge=1, le=100_000, description="largest batch accepted by /predict/batch")
    id_secret: SecretStr | None = Field(None, description="HMAC key that signs prediction ids (shared by workers)")
    metrics_dir: Path | None = Field(
        None, description="Prometheus multiprocess folder; default <home>/prometheus when workers > 1"
    )
    # Request limits: a hostile or broken client must not exhaust a worker's memory or connections.
    max_body_bytes: int = Field(
        2 * 1024 * 1024,
        ge=1024,
        le=1024**3,
        description="largest request body in bytes (413 beyond); a full batch of 1,000 records is ~0.35 MB",
    )
    header_timeout: float = Field(
        10.0, gt=0, le=300, description="seconds a connection may take to send a request's headers (slowloris guard)"
    )
    keep_alive_timeout: int = Field(5, ge=1, le=300, description="seconds an idle keep-alive connection is kept open")
    limit_concurrency: int = Field(
        1000, ge=0, description="connections + tasks per worker before uvicorn answers 503; 0 = unlimited"
    )

    # Prediction log
    log_store_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<home>/predictions.db")
    log_batch_size: int = Field(500, ge=1, le=100_000)
    log_flush_interval: float = Field(0.2, gt=0, le=60)
    log_max_memory_rows: int = Field(100_000, ge=1_000)
    log_spool_reserve_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="disk space each worker reserves in the spool folder at start and gives back if the disk is full at shutdown",
    )
    log_durability: Literal["memory", "local"] = Field(
        "memory",
        description="memory: answer once a row is queued (a SIGKILL loses the queue); local: answer only after the row "
        "is fsync'd to a local group-committed journal (a SIGKILL loses nothing answered)",
    )
    log_suspect_after: int = Field(
        3, ge=1, le=1000, description="failed attempts of one batch, the store answering, before its rows are tried one by one"
    )

    # Model lifecycle in the service: hot reload, shadow scoring, fallback, admin endpoints
    reload_interval: float = Field(10.0, ge=0, le=3600, description="seconds between alias checks; 0 = never poll")
    shadow_alias: str | None = Field(None, description="also score this alias (e.g. challenger) on live traffic, log only")
    fallback: Literal["baseline", "none"] = Field(
        "baseline", description="what serves when the model cannot load or fails: the non-ML baseline, or nothing (503)"
    )
    admin_token: SecretStr | None = Field(None, description="bearer token of /admin/*; unset = admin endpoints disabled")
    drills: bool | None = Field(
        None,
        description="accept traffic tagged `X-Driftlight-Drill` (kept out of the real light and of retraining); "
        "default: on in the dev profile, off in prod (a tag hides traffic from the light: enable it deliberately)",
    )

    # The Parquet archive of the log's closed days (core.archive): the monitor reads archived days from it
    archive_dir: Path | None = Field(None, description="Parquet archive of the log's closed days; default <home>/archive")
    archive_closed_days: bool = Field(
        True, description="before each run the monitor archives the closed days of the window it judges (new or changed)"
    )
    archive_day_parts: bool = Field(
        True,
        description="keep each archived day's folded state per model beside its Parquet file (core.day_parts): later "
        "windows merge it instead of folding the day's rows again (the same verdict); off: fold every row every run",
    )

    # Monitor reports (core.reports): an Evidently HTML report is ~4.7 MB, so keep only the newest
    reports_keep: int = Field(
        50, ge=0, le=100_000, description="monitor runs whose report files are kept (the newest); 0 = keep every report"
    )

    # Retraining and the challenger gate (training.retrain, training.gate)
    retrain_train_days: int = Field(28, ge=7, le=365, description="labelled days a challenger trains on (last 7 validate)")
    retrain_holdout_days: int = Field(7, ge=1, le=90, description="most recent labelled days both models are judged on")
    retrain_min_labels: int = Field(2000, ge=100, description="a challenger trained on fewer labelled rows is refused")
    retrain_with_original: bool = Field(
        True, description="also fit on the original training window (the 2013 replay: log-only challengers were worse)"
    )
    retrain_cooldown_hours: float = Field(24.0, ge=0, description="no new retrain within this long of the last one")
    gate_margin: float = Field(0.005, ge=0, le=0.2, description="ROC AUC the challenger must gain over the champion")
    gate_guard_tolerance: float = Field(0.005, ge=0, le=0.2, description="largest loss allowed on PR AUC and Brier")
    gate_slice_tolerance: float = Field(0.03, ge=0, le=0.5, description="largest ROC AUC loss allowed on an origin slice")
    # The fleet's retrain queue (core.fleet_queue, training.fleet_retrain)
    fleet_retrain_budget: int = Field(3, ge=0, le=1000, description="fleet: at most this many retrains per cycle")
    fleet_retrain_min_labels: int = Field(
        300, ge=50, description="fleet: a segment challenger needs this many recent labelled rows (fit + validation)"
    )
    fleet_retrain_min_holdout: int = Field(
        100, ge=20, description="fleet: labelled rows of the segment's held-back days the gate needs to judge"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _secrets_in_prod(self) -> Settings:
        if self.profile != "prod":
            return self
        if self.id_secret is None:
            raise ValueError("DRIFTLIGHT_ID_SECRET must be set when DRIFTLIGHT_PROFILE=prod")
        for name, secret in (("DRIFTLIGHT_ID_SECRET", self.id_secret), ("DRIFTLIGHT_ADMIN_TOKEN", self.admin_token)):
            if secret is not None and (why := weak_secret(secret.get_secret_value())):
                raise ValueError(f"{name} {why} (DRIFTLIGHT_PROFILE=prod); generate one with: {_GENERATE}")
        return self

    # -- resolved values -----------------------------------------------------------------------
    @property
    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def resolved_artifact_root(self) -> str:
        return self.artifact_root or (self.home / "mlartifacts").resolve().as_uri()

    @property
    def resolved_log_store_url(self) -> str:
        return self.log_store_url or f"sqlite:///{(self.home / 'predictions.db').resolve()}"

    @property
    def resolved_archive_dir(self) -> Path:
        return self.archive_dir or self.home / "archive"

    @property
    def fallback_path(self) -> Path:
        """The last champion's baseline, written by the service when it loads one (last known good)."""
        return self.home / "fallback-baseline.json"

    @property
    def spool_dir(self) -> Path:
        return self.home / "spool"

    @property
    def drills_allowed(self) -> bool:
        return self.drills if self.drills is not None else self.profile == "dev"

    def as_env(self) -> dict[str, str]:
        """The `DRIFTLIGHT_*` environment that rebuilds these settings in a child process."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"DRIFTLIGHT_{name.upper()}"] = str(value)
        return env

    @property
    def id_key(self) -> bytes:
        if self.id_secret is not None:
            return self.id_secret.get_secret_value().encode()
        return _DEV_ID_SECRET.encode()
