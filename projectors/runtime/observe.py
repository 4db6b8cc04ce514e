"""Each worker's ``/health`` and ``/metrics`` (Prometheus), on ``PROJECTORS_WORKER_WEB_PORT``.

``/health`` answers 200 while the process lives (liveness) with the readiness of each part in the
body; ``/health/ready`` answers 503 while the store is down or the worker has not started consuming
(readiness: a Kubernetes probe takes the pod out of rotation, nothing else changes). A worker
paused through the control topic answers both with 200 and ``"state": "paused"``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from projectors.health_web import HealthWeb
from projectors.runtime.batch import STAGES


class Metrics:
    """The worker's Prometheus metrics, all labelled with the projection."""

    def __init__(self, projection: str) -> None:
        self.registry = CollectorRegistry()
        self.projection = projection
        reg, by = self.registry, ["projection"]
        self.events = Counter("projectors_events_total", "Change events consumed", by, registry=reg)
        self.batches = Counter("projectors_batches_total", "Batches applied", by, registry=reg)
        self.operations = Counter(
            "projectors_operations_total", "Store operations by outcome", [*by, "outcome"], registry=reg
        )
        self.batch_size = Histogram(
            "projectors_batch_size", "Events per batch", by, registry=reg,
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
        )
        self.stage = Histogram(
            "projectors_stage_seconds", "Time per batch stage (plan: source reads; apply: store I/O)",
            [*by, "stage"], registry=reg, buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.dead_letters = Counter("projectors_dead_letters_total", "Events dead-lettered", by, registry=reg)
        self.retries = Gauge("projectors_retries", "Retries of source or store calls so far", by, registry=reg)
        self.store_up = Gauge("projectors_store_up", "1 when the store answers", by, registry=reg)
        self.last_lsn = Gauge("projectors_last_lsn", "Highest source LSN applied", by, registry=reg)
        self.last_applied = Gauge(
            "projectors_last_applied_timestamp_seconds", "When the last batch was applied", by, registry=reg
        )
        self.lag = Gauge("projectors_lag_events", "Events behind the end of the topics", by, registry=reg)
        self.behind = Gauge(
            "projectors_behind_seconds",
            "Seconds since the newest record applied was published, while records still wait (0: caught up)",
            by, registry=reg,
        )
        # what the store was asked for (Cosmos: point read, point write, patch, batch, query,
        # cross-partition query) and what it charged (request units, where the server says)
        self.store_requests = Counter(
            "projectors_store_requests_total", "Store requests by kind", ["projection", "kind"], registry=reg
        )
        self.request_units = Counter(
            "projectors_store_request_units_total", "Request units charged by the store", by, registry=reg
        )
        self.paused = Gauge(
            "projectors_paused", "1 while the projection is paused through the control topic", by, registry=reg
        )
        # every series exists from the start (at 0), so dashboards and alerts see a new worker at once
        for metric in (self.events, self.batches, self.batch_size, self.dead_letters, self.retries, self.store_up,
                       self.last_lsn, self.last_applied, self.lag, self.behind, self.paused):
            metric.labels(projection)
        for outcome in ("changed", "stale", "written"):
            self.operations.labels(projection, outcome)
        for stage in STAGES:
            self.stage.labels(projection, stage)


class HealthServer(HealthWeb):
    """The worker's: the readiness of each part in the body (``parts``), and its ``state``."""

    def __init__(
        self, port: int, metrics: Metrics, readiness: Callable[[], dict[str, bool]], state: str = "running"
    ) -> None:
        self.metrics = metrics
        self.readiness = readiness
        self.state = state  # "paused" while the projection is paused (runtime/supervisor.py)
        super().__init__(port)

    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    def health(self) -> dict[str, Any]:
        parts = self.readiness()
        return {"live": True, "ready": all(parts.values()), "state": self.state, "parts": parts}


def pid_alive(pid: int) -> bool:
    """The process runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True
