"""`projectors worker <projection>`: a faust-streaming worker for one projection.

One faust app (consumer group ``projectors-<projection>``) per projection; run several workers of a
projection and they share its partitions. The agent takes batches of events
(``take_events``) and hands each to :class:`BatchProjector` in a thread; faust acknowledges a
batch's offsets only after ``process`` returned, i.e. after the store applied it and the dead
letters were flushed, and commits acknowledged offsets every ``commit_interval_s``.

faust pitfall avoided: ``take_events`` acknowledges its buffered events when the agent is cancelled
(shutdown) even if they were not written. On SIGTERM mid-batch the worker waits up to
``shutdown_grace_s`` for the batch to finish; if it cannot (the store is down), the process exits at
once without committing, exactly like a crash: the batch is redelivered to the next worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import psycopg

from projectors.capture.connector import table_topic
from projectors.capture.preflight import ensure_topics
from projectors.errors import ConfigurationError
from projectors.projections import PROJECTIONS
from projectors.projections.base import Projection
from projectors.runtime.batch import BatchProjector
from projectors.runtime.dead_letters import DeadLetterWriter, RawRecord, dead_letter_topic
from projectors.runtime.stores import open_store
from projectors.settings import KafkaSettings, Settings

log = logging.getLogger(__name__)
EXIT_ABANDONED = 75


def projection_topics(settings: Settings, projection: Projection) -> list[str]:
    return [table_topic(settings.capture.topic_prefix, t) for t in projection.tables]


def group_id(projection: str) -> str:
    return f"projectors-{projection}"


def build_projector(settings: Settings, name: str) -> BatchProjector:
    if name not in PROJECTIONS:
        raise ConfigurationError(f"unknown projection {name!r} (known: {', '.join(PROJECTIONS)})")
    projection = PROJECTIONS[name]
    store = open_store(settings, name)
    store.ensure_schema()

    def connect_source() -> psycopg.Connection:
        return psycopg.connect(settings.pg.conninfo(), autocommit=True)

    return BatchProjector(
        projection,
        store,
        connect_source,
        DeadLetterWriter(settings, name),
        retry_initial_s=settings.worker.retry_initial_s,
        retry_max_s=settings.worker.retry_max_s,
    )


def faust_credentials(kafka: KafkaSettings) -> Any:
    """faust (aiokafka) credentials matching ``KafkaSettings.client_config`` (SASL and/or TLS)."""
    import ssl

    import faust

    if kafka.security_protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context(cafile=str(kafka.ssl_ca_location) if kafka.ssl_ca_location else None)
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value(),
            mechanism=kafka.sasl_mechanism,
            ssl_context=context if kafka.security_protocol == "SASL_SSL" else None,
        )
    return faust.SSLCredentials(context)


def build_app(settings: Settings, name: str, projector: BatchProjector) -> Any:
    import faust

    topics = projection_topics(settings, projector.projection)
    ensure_topics(
        settings,
        {
            **{t: settings.kafka.topic_partitions for t in topics},
            dead_letter_topic(settings, name): 1,
        },
    )
    app = faust.App(
        group_id(name),
        broker=";".join(f"kafka://{h.strip()}" for h in settings.kafka.bootstrap_servers.split(",")),
        broker_credentials=faust_credentials(settings.kafka),
        store="memory://",
        topic_partitions=settings.kafka.topic_partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        broker_commit_interval=settings.worker.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.worker.web_port > 0,
        web_port=settings.worker.web_port or 6066,
        web_host="127.0.0.1",
        autodiscover=False,
        stream_wait_empty=True,
    )
    source = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    grace = settings.worker.shutdown_grace_s
    batch_size, within = settings.worker.batch_size, settings.worker.batch_within_s

    stats_file = stats_path(settings, name)
    stats_file.parent.mkdir(parents=True, exist_ok=True)

    def process_and_report(records: list[RawRecord]) -> None:
        projector.process(records)
        write_stats(stats_file, projector)

    @app.agent(source, name=f"project-{name}")  # type: ignore[untyped-decorator]
    async def project(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(batch_size, within=within):
            records = [
                RawRecord(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value)
                for e in events
            ]
            work = loop.run_in_executor(None, process_and_report, records)
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                log.warning("stopping mid-batch: waiting up to %.0fs for the batch to be written", grace)
                try:
                    await asyncio.wait_for(asyncio.shield(work), grace)
                except BaseException:
                    log.error("batch not written in time: exiting without committing it (it will be redelivered)")
                    logging.shutdown()
                    os._exit(EXIT_ABANDONED)
                raise

    return app


def stats_path(settings: Settings, name: str) -> Path:
    """Each worker process publishes its running totals here (status, tests, benchmarks)."""
    return settings.stack.dir.absolute() / "run" / "stats" / f"{name}-{os.getpid()}.json"


def write_stats(path: Path, projector: BatchProjector) -> None:
    s = projector.stats
    data = {
        "projection": projector.projection.name,
        "pid": os.getpid(),
        "events": s.events,
        "batches": s.batches,
        "operations": s.operations,
        "changed": s.changed,
        "skippedStale": s.skipped_stale,
        "deadLetters": s.dead_letters,
        "retries": s.retries,
        "lastLsn": s.last_lsn,
        "lastAppliedAt": s.last_applied_at,
        "stageSeconds": s.stage_seconds,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_stats(settings: Settings, name: str) -> list[dict[str, Any]]:
    folder = settings.stack.dir.absolute() / "run" / "stats"
    return [json.loads(p.read_text()) for p in sorted(folder.glob(f"{name}-*.json"))]


def run_worker(settings: Settings, name: str, loglevel: str = "info") -> None:
    import faust

    projector = build_projector(settings, name)
    app = build_app(settings, name, projector)
    log.info(
        "worker for projection %s: group %s, topics %s",
        name,
        group_id(name),
        ", ".join(projection_topics(settings, projector.projection)),
    )
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    for noisy in ("azure", "urllib3", "neo4j"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sys.argv = sys.argv[:1]
    worker.execute_from_commandline()
