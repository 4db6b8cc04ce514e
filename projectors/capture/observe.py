"""Capture's ``/health`` and ``/metrics`` on ``PROJECTORS_CAPTURE_WEB_PORT`` (0: none).

Served by every capture process, active or standby, so the slot's WAL is measured while no capture
streams as long as one process runs. Each scrape reads ``pg_replication_slots`` (one short query).

- ``/health``: 200 while the process lives, with its role (``active``, ``standby``,
  ``reconnecting``, ``starting``) and the slot's WAL figures;
- ``/health/ready``: 200 when the process does its job (streams, or waits as a standby), else 503;
- ``/metrics``: ``projectors_capture_*`` gauges, labelled with the slot.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from projectors.capture.preflight import CapturePosition
from projectors.capture.wal import SlotWal, slot_wal
from projectors.db.migrate import connect
from projectors.health_web import HealthWeb
from projectors.settings import Settings

WAL_STATUSES = ("reserved", "extended", "unreserved", "lost")


def role(settings: Settings) -> str:
    state = settings.capture_state_dir
    if (state / "ready").exists():
        return "active"
    if (state / "standby").exists():
        return "standby"
    if (state / "reconnecting").exists():
        return "reconnecting"
    return "starting"


def position_age_s(settings: Settings) -> float | None:
    """Seconds since capture last recorded a position the broker acknowledged (while active)."""
    path = CapturePosition.path(settings.capture_state_dir)
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except FileNotFoundError:
        return None


def read_slot(settings: Settings) -> SlotWal | None:
    """The slot's WAL figures; None when PostgreSQL does not answer."""
    try:
        with connect(settings.pg, autocommit=True) as conn:
            return slot_wal(conn, settings.capture.slot_name)
    except Exception:
        return None


class CaptureCollector(Collector):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        slot = self.settings.capture.slot_name
        current, wal = role(self.settings), read_slot(self.settings)

        def gauge(name: str, doc: str, value: float | None, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
            extra = labels or {}
            family = GaugeMetricFamily(name, doc, labels=["slot", *extra])
            if value is not None:
                family.add_metric([slot, *extra.values()], value)
            return family

        yield gauge("projectors_capture_active", "1 when this process streams the slot, 0 otherwise",
                    1.0 if current == "active" else 0.0)
        yield gauge("projectors_capture_standby", "1 when this process waits for the slot's lease",
                    1.0 if current == "standby" else 0.0)
        yield gauge("projectors_capture_postgres_up", "1 when PostgreSQL answered this scrape",
                    0.0 if wal is None else 1.0)
        yield gauge("projectors_capture_retained_wal_alert_bytes",
                    "Retained WAL above which ProjectorsCaptureWalRetained fires (PROJECTORS_CAPTURE_WAL_ALERT_BYTES)",
                    float(self.settings.capture.wal_alert_bytes))
        age = position_age_s(self.settings) if current == "active" else None
        yield gauge("projectors_capture_position_age_seconds",
                    "Seconds since this capture last recorded a position the broker acknowledged", age)
        if wal is None:
            return
        yield gauge("projectors_capture_slot_exists", "1 when the replication slot exists", 1.0 if wal.exists else 0.0)
        yield gauge("projectors_capture_slot_active", "1 when a walsender reads the slot", 1.0 if wal.active else 0.0)
        yield gauge("projectors_capture_slot_retained_wal_bytes", "pg_current_wal_lsn() - restart_lsn",
                    None if wal.retained_bytes is None else float(wal.retained_bytes))
        yield gauge("projectors_capture_slot_unconfirmed_wal_bytes", "pg_current_wal_lsn() - confirmed_flush_lsn",
                    None if wal.unconfirmed_bytes is None else float(wal.unconfirmed_bytes))
        yield gauge("projectors_capture_slot_safe_wal_size_bytes",
                    "WAL that may still be written before the slot is at risk (absent: unbounded)",
                    None if wal.safe_wal_size is None else float(wal.safe_wal_size))
        status = GaugeMetricFamily("projectors_capture_slot_wal_status", "1 for the slot's wal_status",
                                   labels=["slot", "status"])
        if wal.exists:
            for name in WAL_STATUSES:
                status.add_metric([slot, name], 1.0 if wal.wal_status == name else 0.0)
        yield status


def health(settings: Settings) -> dict[str, Any]:
    wal = read_slot(settings)
    current = role(settings)
    return {
        "live": True,
        "role": current,
        "ready": current in ("active", "standby"),
        "postgres": wal is not None,
        "slot": None if wal is None else wal.as_dict(),
        "positionAgeS": position_age_s(settings) if current == "active" else None,
    }


class CaptureWeb(HealthWeb):
    """The HTTP server, on a daemon thread."""

    thread_name = "capture-web"

    def __init__(self, settings: Settings, port: int) -> None:
        self.settings = settings
        self._registry = CollectorRegistry()
        self._registry.register(CaptureCollector(settings))
        super().__init__(port)

    def registry(self) -> CollectorRegistry:
        return self._registry

    def health(self) -> dict[str, Any]:
        return health(self.settings)
