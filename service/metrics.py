"""Prometheus metrics of the service, correct under `uvicorn --workers N`.

Each app gets its own `CollectorRegistry` (so tests can build many apps in one process). When
`PROMETHEUS_MULTIPROC_DIR` is set before prometheus_client is imported (the `serve` command does
that for N > 1 workers), every value is also written to that folder and `/metrics` aggregates all
workers through a `MultiProcessCollector`. Label values come from bounded sets only: endpoint
templates, contract field names, outcome and class names - never ids or caller-supplied strings.

With a fleet configured, `FleetCollector` adds the latest fleet run's gauges, computed at scrape
time from a `service.fleet_view.FleetRunCache` (one store read per TTL, whatever the scrape rate).
Per-model series are bounded: only the `top` worst models of the run get a series, labelled by
`rank` (1..top) and `model` (a name from the fleet file, never from a request), so a scrape
carries at most `top` of them and the set over time is bounded by the fleet's size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from service.fleet_view import FleetRunCache

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


FLEET_TOP = 10  # worst models of a fleet run exported one by one (the rest only in the counts)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class FleetCollector(Collector):
    """The latest fleet run as gauges, read from the cache at scrape time.

    - `driftlight_fleet_models{colour}`: models by colour (red, yellow, green, not_enough_data)
    - `driftlight_fleet_not_enough_data_models`: models whose window is too small to judge
    - `driftlight_fleet_run_timestamp_seconds` / `driftlight_fleet_run_age_seconds`: when it was judged
    - `driftlight_fleet_worst_model_impact{rank,model,colour}`: traffic x estimated ROC AUC loss
    - `driftlight_fleet_worst_model_severity{rank,model,colour}`: 2 red, 1 yellow, 0 green, -1 n/e/d
    - `driftlight_fleet_retrain_queue_length`, `driftlight_fleet_retrain_decisions{outcome}`
    - `driftlight_fleet_run_store_up`: 0 when the last read of the run store failed
    Nothing is exported but `driftlight_fleet_run_store_up` and `driftlight_fleet_run_present`
    before the first fleet run.
    """

    def __init__(self, cache: FleetRunCache, top: int = FLEET_TOP) -> None:
        self.cache, self.top = cache, top

    def collect(self) -> Iterator[Metric]:
        from service.fleet_view import COLOUR_ORDER, SEVERITY, fleet_figures

        run, error = self.cache.get()
        yield GaugeMetricFamily("driftlight_fleet_run_store_up", "1 when the fleet run store was read", 0 if error else 1)
        yield GaugeMetricFamily("driftlight_fleet_run_present", "1 when a fleet run exists", 1 if run else 0)
        if not run:
            return
        f = fleet_figures(run)
        by_colour = GaugeMetricFamily("driftlight_fleet_models", "Models of the latest fleet run by colour", labels=["colour"])
        for colour in COLOUR_ORDER:
            by_colour.add_metric([colour], f.counts.get(colour, 0))
        yield by_colour
        yield GaugeMetricFamily(
            "driftlight_fleet_not_enough_data_models",
            "Models too small to judge in the latest fleet run",
            f.counts["not_enough_data"],
        )
        yield GaugeMetricFamily(
            "driftlight_fleet_run_timestamp_seconds", "When the latest fleet run finished (Unix time)", f.finished_at.timestamp()
        )
        yield GaugeMetricFamily("driftlight_fleet_run_age_seconds", "Seconds since the latest fleet run finished", f.age_s())
        impact = GaugeMetricFamily(
            "driftlight_fleet_worst_model_impact",
            f"Impact (window rows x estimated ROC AUC loss) of the {self.top} worst models, rank 1 = worst",
            labels=["rank", "model", "colour"],
        )
        severity = GaugeMetricFamily(
            "driftlight_fleet_worst_model_severity",
            f"Colour of the {self.top} worst models as a number: 2 red, 1 yellow, 0 green, -1 not_enough_data",
            labels=["rank", "model", "colour"],
        )
        for i, v in enumerate(f.worst[: self.top], start=1):
            labels = [str(i), str(v.get("name")), str(v.get("status"))]
            impact.add_metric(labels, float(v.get("impact") or 0.0))
            severity.add_metric(labels, SEVERITY.get(str(v.get("status")), -1))
        yield impact
        yield severity
        yield GaugeMetricFamily("driftlight_fleet_retrain_queue_length", "Models waiting in the retrain queue", f.queue_length)
        decisions = GaugeMetricFamily(
            "driftlight_fleet_retrain_decisions", "Retrain decisions of the latest cycle by outcome", labels=["outcome"]
        )
        for outcome, n in sorted(f.decisions.items()):
            decisions.add_metric([outcome], n)
        yield decisions


class ServiceMetrics:
    """All service metrics; also the prediction log's `LogMetrics`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.fleet: FleetCollector | None = None
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

    def watch_fleet(self, cache: FleetRunCache, top: int = FLEET_TOP) -> None:
        """Export the latest fleet run's gauges (read through `cache`) on /metrics."""
        self.fleet = FleetCollector(cache, top)
        self.registry.register(self.fleet)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition: every worker's values in multiprocess mode, else this app's."""
        if multiprocess_dir():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            if self.fleet is not None:  # read from the run store, the same in every worker: no summing
                registry.register(self.fleet)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
