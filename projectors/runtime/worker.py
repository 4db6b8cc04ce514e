"""`projectors worker <projection>`: a faust-streaming worker for one projection.

One faust app (consumer group ``projectors-<projection>``) per projection; run several workers of a
projection and they share its partitions. The agent takes batches of events and hands each, from a
thread, to the projector: a :class:`BatchProjector` in a child process
(:mod:`projectors.runtime.projector_process`, the default) or in that thread
(``PROJECTORS_WORKER_PROJECT_IN``). A batch's offsets are acknowledged only after ``process``
returned, i.e. after the store applied it and the dead letters were flushed, and faust commits
acknowledged offsets every ``commit_interval_s``. Two ways to take them
(``PROJECTORS_WORKER_BATCHES_IN_FLIGHT``):

- 2 (the default): ``noack_take``; each batch is written by a task of its own, which acknowledges
  its events, in order, once written. The next batch is handed over only after the previous one
  was written (batches are applied one after the other) while faust fills the one after;
- 1: ``take_events``, one batch at a time, acknowledged when the agent takes the next one.

faust pitfall avoided: ``take_events`` acknowledges its buffered events when the agent is cancelled
(shutdown) even if they were not written. On SIGTERM mid-batch the worker waits up to
``shutdown_grace_s`` for the batch to finish; if it cannot (the store is down), the process exits at
once without committing, exactly like a crash: the batch is redelivered to the next worker. A
watchdog armed by the signal bounds the whole shutdown by the same grace (faust's own wait for
in-flight events has no bound).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from projectors.capture.preflight import ensure_topics
from projectors.errors import Severity, severity
from projectors.model import ProjectionStore
from projectors.projections import descriptor
from projectors.runtime.batch import BatchProjector, BatchStats, Projector
from projectors.runtime.dead_letters import DeadLetterWriter, RawRecord, dead_letter_topic
from projectors.runtime.observe import HealthServer, Metrics
from projectors.runtime.projector_process import ProjectorProcess
from projectors.runtime.stats import add_rate_sample, stats_path, store_requests, write_stats
from projectors.runtime.store_factory import open_store
from projectors.settings import KafkaSettings, Settings

log = logging.getLogger(__name__)
EXIT_ABANDONED = 75  # sysexits EX_TEMPFAIL: the batch in flight is redelivered
EXIT_CONFIGURATION = 78  # sysexits EX_CONFIG: a setting, credential or privilege is wrong


def group_id(projection: str) -> str:
    return descriptor(projection).group


def build_projector(settings: Settings, name: str, store: ProjectionStore | None = None) -> BatchProjector:
    projection = descriptor(name).build(settings)
    store = store or open_store(settings, name)
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


def build_app(
    settings: Settings, name: str, projector: Projector, group: str | None = None, client_id: str | None = None
) -> Any:
    from projectors.runtime.faust_app import app_class

    topics = descriptor(name).topics(settings)
    ensure_topics(
        settings,
        {
            **{t: settings.kafka.topic_partitions for t in topics},
            dead_letter_topic(settings, name): 1,
        },
    )
    app = app_class(settings.worker.fetch_max_wait_ms)(
        group or group_id(name),
        broker=";".join(f"kafka://{h.strip()}" for h in settings.kafka.bootstrap_servers.split(",")),
        broker_credentials=faust_credentials(settings.kafka),
        store="memory://",
        topic_partitions=settings.kafka.topic_partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        broker_commit_interval=settings.worker.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,  # /health and /metrics are served by runtime/observe.py
        autodiscover=False,
        stream_wait_empty=True,
        broker_session_timeout=settings.worker.session_timeout_s,
        broker_heartbeat_interval=settings.worker.session_timeout_s / 5,
        broker_client_id=client_id or f"projectors-{name}",  # names the member in the group's description
    )
    source = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    grace = settings.worker.shutdown_grace_s
    batch_size, within = settings.worker.batch_size, settings.worker.batch_within_s

    stats_file = stats_path(settings, name)
    stats_file.parent.mkdir(parents=True, exist_ok=True)
    started_at = time.time()
    metrics = Metrics(name)
    recent: list[tuple[float, int]] = []  # (time, events so far): the recent rate (add_rate_sample)
    add_rate_sample(recent, started_at, 0)

    positions: dict[tuple[str, int], int] = {}

    def process_and_report(records: list[RawRecord]) -> None:
        before = projector.stats.snapshot()
        projector.process(records)
        record_metrics(metrics, before, projector)
        for r in records:
            positions[(r.topic, r.partition)] = r.offset + 1
        lag = lag_of(app, positions)
        metrics.lag.labels(name).set(lag)
        stamps = [r.timestamp_s for r in records if r.timestamp_s]
        metrics.behind.labels(name).set(max(0.0, time.time() - max(stamps)) if lag and stamps else 0.0)
        add_rate_sample(recent, time.time(), projector.stats.events)
        write_stats(stats_file, projector, started_at, recent)

    app_started = threading.Event()

    @app.task  # type: ignore[untyped-decorator]
    async def note_started() -> None:
        app_started.set()

    def readiness() -> dict[str, bool]:
        store_up = bool(getattr(projector.store, "healthy", True)) and projector.store.ping()
        metrics.store_up.labels(name).set(1 if store_up else 0)
        # app.consumer only once the app runs: asked from this (HTTP) thread before, faust creates
        # its consumer thread here, on the wrong event loop, and the worker fails to start
        assigned = app_started.is_set() and app.consumer.assignment() != set()
        return {"store": store_up, "consuming": projector.stats.batches > 0 or assigned}

    if settings.worker.web_port > 0:
        HealthServer(settings.worker.web_port, metrics, readiness).start()
    write_stats(stats_file, projector, started_at, recent)

    def written(work: asyncio.Future[None]) -> None:
        """The outcome of a batch handed to the batch thread: nothing if it was written; otherwise
        the process exits, acknowledging nothing more (the batch is redelivered)."""
        exc = work.exception()
        if exc is None:
            return
        # never acknowledge a batch that was not written: exit, and the next worker of the
        # group (or this one, restarted) gets it again
        if severity(exc) is Severity.CONFIGURATION:
            abandon(f"stopping on a configuration error ({type(exc).__name__}: {exc})", EXIT_CONFIGURATION)
        log.error("batch failed", exc_info=exc)
        why = "stopped mid-batch" if projector.stopping else f"batch failed ({type(exc).__name__}: {exc})"
        abandon(why)

    async def finish(work: asyncio.Future[None]) -> None:
        """Wait for a batch in the batch thread; on shutdown wait up to the grace, then give up."""
        try:
            await asyncio.wait([work])
        except asyncio.CancelledError:
            log.warning("stopping mid-batch: waiting up to %.0fs for the batch to be written", grace)
            done, _ = await asyncio.wait([work], timeout=grace)
            if not done:
                abandon("batch not written in time")
            written(work)
            raise
        written(work)

    def to_records(events: Any) -> list[RawRecord]:
        return [
            RawRecord(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value,
                      e.message.timestamp)
            for e in events
        ]

    if settings.worker.batches_in_flight == 1:

        @app.agent(source, name=f"project-{name}")  # type: ignore[untyped-decorator]
        async def project(stream: Any) -> None:
            loop = asyncio.get_running_loop()
            async for events in stream.take_events(batch_size, within=within):
                # take_events acknowledges the batch when this body returns: after it was written
                await finish(loop.run_in_executor(None, process_and_report, to_records(events)))

    else:

        @app.agent(source, name=f"project-{name}")  # type: ignore[untyped-decorator]
        async def project(stream: Any) -> None:
            """Two batches at once: faust fills the next batch while the batch thread writes this
            one. Batches are still written one after the other, and each is acknowledged (in order)
            only once written, by its own task, so the last batch before a pause is committed too."""
            loop = asyncio.get_running_loop()
            previous: asyncio.Future[None] | None = None

            async def write_then_ack(records: list[RawRecord], events: list[Any]) -> None:
                await finish(loop.run_in_executor(None, process_and_report, records))
                for event in events:
                    await stream.ack(event)

            async for events in stream.noack_take(batch_size, within=within):
                if previous is not None:
                    await finish(previous)  # the batch thread takes one batch at a time
                previous = asyncio.ensure_future(write_then_ack(to_records(events), list(events)))

    return app


def abandon(why: str, code: int = EXIT_ABANDONED) -> None:
    """Exit at once, committing nothing more: what was acknowledged was written; the rest is
    redelivered to the next worker of the group."""
    log.error("%s: exiting without committing the batch in flight (it will be redelivered)", why)
    logging.shutdown()
    os._exit(code)


def shutdown_watchdog(grace_s: float) -> threading.Timer:
    """Armed by SIGTERM/SIGINT: faust first waits, without a bound, for every event taken to be
    acknowledged (``stream_wait_empty``), so a batch stuck on a store that is down or slow would hold
    the shutdown forever. The watchdog keeps the promise of ``shutdown_grace_s``."""
    timer = threading.Timer(
        grace_s, abandon, (f"still running {grace_s:.0f}s after the stop signal (PROJECTORS_WORKER_SHUTDOWN_GRACE_S)",)
    )
    timer.daemon = True
    return timer


def lag_of(app: Any, positions: dict[tuple[str, int], int]) -> int:
    """Events between what this worker applied and the end of its partitions (the broker's high
    watermark: a lower bound on the local broker, which reports it short after batched produce)."""
    from faust.types import TP

    total = 0
    for (topic, partition), position in positions.items():
        try:
            high = app.consumer.highwater(TP(topic, partition))
        except Exception:  # partition revoked meanwhile
            continue
        if high is not None:
            total += max(0, int(high) - position)
    return total


def record_metrics(metrics: Metrics, previous: BatchStats, projector: Projector) -> None:
    """Move the Prometheus metrics by what the last batch added to the running totals."""
    s, name = projector.stats, projector.projection.name

    def added(now: int, before: int) -> int:  # a counter never goes back (a store's odd count cannot crash us)
        return max(0, now - before)

    metrics.events.labels(name).inc(added(s.events, previous.events))
    metrics.batches.labels(name).inc(added(s.batches, previous.batches))
    metrics.batch_size.labels(name).observe(added(s.events, previous.events))
    metrics.operations.labels(name, "changed").inc(added(s.changed, previous.changed))
    metrics.operations.labels(name, "stale").inc(added(s.skipped_stale, previous.skipped_stale))
    metrics.operations.labels(name, "written").inc(added(s.operations, previous.operations))
    metrics.dead_letters.labels(name).inc(added(s.dead_letters, previous.dead_letters))
    metrics.retries.labels(name).set(s.retries + int(getattr(projector.store, "retries", 0)))
    metrics.last_lsn.labels(name).set(s.last_lsn)
    metrics.last_applied.labels(name).set(s.last_applied_at)
    for stage, seconds in s.stage_seconds.items():
        metrics.stage.labels(name, stage).observe(seconds - previous.stage_seconds.get(stage, 0.0))
    now = store_requests(projector)
    for kind, count in now.items():
        more = count - previous.store_requests.get(kind, 0)
        if more > 0:
            if kind == "request_units":
                metrics.request_units.labels(name).inc(more)
            else:
                metrics.store_requests.labels(name, kind).inc(more)
    s.store_requests = now


GC_THRESHOLDS = (100_000, 50, 100)


def tune_gc() -> None:
    """Fewer cyclic garbage collections: a worker allocates a few Python objects per event in faust,
    aiokafka and the decode, and the default threshold (700) ran a collection every few events,
    scanning faust's long-lived objects from whichever thread tripped it. The objects that exist
    at start are frozen out of the scans. Measured on the graph worker with a null store:
    2,600 -> 3,000-3,200 events/s on 2 cores; peak RSS is in the bench report."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def quiet_clients() -> None:
    for noisy in ("azure", "urllib3", "neo4j"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_worker(
    settings: Settings,
    name: str,
    loglevel: str = "info",
    store_factory: Callable[[], ProjectionStore] | None = None,
    group: str | None = None,
    client_id: str | None = None,
) -> None:
    """Run a worker until stopped (``store_factory``, ``group``: benchmarks run a null store and
    groups of their own; the factory is called in the projector's process, so it must pickle:
    a class or a module-level function)."""
    import faust

    projector: Projector
    if settings.worker.project_in == "process":
        level = logging.getLevelName(loglevel.upper())
        projector = ProjectorProcess(settings, name, store_factory, level if isinstance(level, int) else logging.INFO)
    else:
        projector = build_projector(settings, name, store_factory() if store_factory else None)
    app = build_app(settings, name, projector, group, client_id)
    log.info(
        "worker for projection %s: group %s, topics %s",
        name,
        group or group_id(name),
        ", ".join(descriptor(name).topics(settings)),
    )
    watchdog = shutdown_watchdog(settings.worker.shutdown_grace_s)

    class Worker(faust.Worker):  # type: ignore[misc]
        def _on_sigterm(self) -> None:
            if not watchdog.is_alive():
                watchdog.start()
            projector.stop()
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            if not watchdog.is_alive():
                watchdog.start()
            projector.stop()
            super()._on_sigint()

    worker = Worker(app, loglevel=loglevel, quiet=True)
    tune_gc()
    quiet_clients()
    sys.argv = sys.argv[:1]
    worker.execute_from_commandline()
