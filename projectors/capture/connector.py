"""The one source of truth for the Debezium PostgreSQL connector's settings.

From :func:`connector_settings` the project renders both
- the Kafka Connect config in ``debezium/connector.json`` (``PUT /connectors/<name>/config``), whose
  connection settings and password are ``${env:...}`` references resolved by Kafka Connect's
  EnvVarConfigProvider, so no secret is ever written to a file; and
- the embedded engine's properties (:func:`embedded_properties`), with the concrete values.
"""

from __future__ import annotations

import json
from pathlib import Path

from projectors.db.migrate import HEARTBEAT_TABLE
from projectors.settings import CaptureSettings, PostgresSettings, Settings

CONNECTOR_NAME = "projectors-postgres"


def table_topic(prefix: str, table: str) -> str:
    return f"{prefix}.public.{table}"


def heartbeat_topic(prefix: str) -> str:
    return f"__debezium-heartbeat.{prefix}"


def connector_settings(capture: CaptureSettings) -> dict[str, str]:
    """Connector settings shared by Kafka Connect and the embedded engine (no connection details)."""
    return {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "plugin.name": "pgoutput",
        "slot.name": capture.slot_name,
        # The slot is never dropped on stop: it holds the WAL while capture is down.
        "slot.drop.on.stop": "false",
        # The publication is created by `projectors db migrate` for exactly these tables; Debezium
        # must not widen or create it (a table missing from it is reported at start instead).
        "publication.name": capture.publication,
        "publication.autocreate.mode": "disabled",
        "topic.prefix": capture.topic_prefix,
        "table.include.list": ",".join(f"public.{t}" for t in capture.table_list),
        "snapshot.mode": capture.snapshot_mode,
        # A quiet captured database still needs its slot to advance, or the server keeps WAL forever:
        # heartbeats emit a record and write a row that pgoutput turns into a confirmed position.
        "heartbeat.interval.ms": str(capture.heartbeat_interval_ms),
        "heartbeat.action.query": (
            f"INSERT INTO {HEARTBEAT_TABLE} (id, ts) VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET ts = excluded.ts"
        ),
        # Numbers stay exact (strings, not doubles); times are ISO-8601 strings or epoch micros.
        "decimal.handling.mode": "string",
        "time.precision.mode": "adaptive_time_microseconds",
        "interval.handling.mode": "string",
        "tombstones.on.delete": "true",
        "include.unknown.datatypes": "false",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "max.batch.size": str(capture.max_batch_size),
        "poll.interval.ms": str(capture.poll_interval_ms),
    }


def connect_config(capture: CaptureSettings) -> dict[str, str]:
    """The Kafka Connect REST config; connection settings are resolved from the worker's environment."""
    return {
        **connector_settings(capture),
        "database.hostname": "${env:PROJECTORS_PG_HOST}",
        "database.port": "${env:PROJECTORS_PG_PORT}",
        "database.user": "${env:PROJECTORS_PG_USER}",
        "database.password": "${env:PROJECTORS_PG_PASSWORD}",
        "database.dbname": "${env:PROJECTORS_PG_DATABASE}",
        "tasks.max": "1",
    }


def embedded_properties(settings: Settings) -> dict[str, str]:
    pg: PostgresSettings = settings.pg
    state = settings.capture_state_dir
    return {
        **connector_settings(settings.capture),
        "name": CONNECTOR_NAME,
        "database.hostname": pg.host,
        "database.port": str(pg.port),
        "database.user": pg.user,
        "database.password": pg.password.get_secret_value(),
        "database.dbname": pg.database,
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(state / "offsets.dat"),
        "offset.flush.interval.ms": str(settings.capture.offset_flush_interval_ms),
        "errors.max.retries": "0",
    }


def render_connect_file(capture: CaptureSettings) -> str:
    return json.dumps(connect_config(capture), indent=2, sort_keys=True) + "\n"


def connect_file_path() -> Path:
    return Path(__file__).resolve().parents[2] / "debezium" / "connector.json"
