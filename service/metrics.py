"""Prometheus metrics of the service, correct under `uvicorn --workers N`.

Each app gets its own `CollectorRegistry` (so tests can build many apps in one process). When
`PROMETHEUS_MULTIPROC_DIR` is set before prometheus_client is imported (the `serve` command does
that for N > 1 workers), every value is also written to that folder and `/metrics` aggregates all
workers through a `MultiProcessCollector`. Label values come from bounded sets only: endpoint
templates, contract field names, outcome and class names - never ids or caller-supplied strings.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ServiceMetrics:
    """All service metrics; also the prediction log's `LogMetrics`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "driftlight_requests", "HTTP requests by endpoint and outcome", ["endpoint", "outcome"], registry=r
        )
        self.latency = Histogram(
            "driftlight_request_duration_seconds",
            "Request latency in seconds, measured in the app",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "driftlight_predictions",
            "Predictions served, by model version, predicted class and what served them",
            ["model_version", "predicted_class", "served_by"],
            registry=r,
        )
        self.violations = Counter(
            "driftlight_contract_violations",
            "Contract violations seen at the door, by contract field and kind",
            ["field", "kind"],
            registry=r,
        )
        self.labels = Counter("driftlight_labels", "Delayed labels accepted by /feedback", registry=r)
        self.log_pending = Gauge(
            "driftlight_log_pending_rows",
            "Prediction-log rows accepted but not yet in the store",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.log_written = Counter("driftlight_log_rows_written", "Rows committed to the log store", ["kind"], registry=r)
        self.log_failures = Counter(
            "driftlight_log_write_failures", "Failed write attempts to the log store (retried)", ["kind"], registry=r
        )
        self.log_spooled = Counter(
            "driftlight_log_rows_spooled", "Rows spilled to the local spool file while the store was down", ["kind"], registry=r
        )
        self.log_quarantined = Counter(
            "driftlight_log_rows_quarantined",
            "Rows the log store cannot hold (kept in its dead-letter table log_quarantine instead)",
            ["kind"],
            registry=r,
        )
        self.model_info = Gauge(
            "driftlight_model_info",
            "1 for the model version being served",
            ["model_name", "model_version"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.model_loaded = Gauge(
            "driftlight_model_loaded", "1 when a model is loaded and serving", multiprocess_mode="livemin", registry=r
        )

        self.fallback_active = Gauge(
            "driftlight_fallback_active",
            "1 when the non-ML fallback is what serves (no model could be loaded)",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.model_failures = Counter(
            "driftlight_model_failures", "Requests whose model call raised (served by the fallback instead)", registry=r
        )
        self.reloads = Counter(
            "driftlight_model_reloads", "Model reloads by outcome (loaded a new version, or failed)", ["outcome"], registry=r
        )
        self.shadow = Counter(
            "driftlight_shadow_predictions", "Shadow scores by outcome (scored, dropped, failed)", ["outcome"], registry=r
        )

    # LogMetrics protocol (service.predlog)
    def set_pending(self, n: int) -> None:
        self.log_pending.set(n)

    def written(self, kind: str, n: int) -> None:
        self.log_written.labels(kind).inc(n)

    def write_failed(self, kind: str) -> None:
        self.log_failures.labels(kind).inc()

    def spooled(self, kind: str, n: int) -> None:
        self.log_spooled.labels(kind).inc(n)

    def quarantined(self, kind: str, n: int) -> None:
        self.log_quarantined.labels(kind).inc(n)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition: every worker's values in multiprocess mode, else this app's."""
        if multiprocess_dir():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
