"""The parts a worker is assembled from (``worker.build_app`` joins them): the faust app and its
source topic, the report after each batch (metrics, stats file, readiness), the guard that decides
what happens to a batch handed to the batch thread, and the agent that takes batches with one or
two of them in flight."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from projectors.capture.preflight import ensure_topics
from projectors.errors import Severity, severity
from projectors.exit_codes import ExitCode
from projectors.model import ReportsHealth
from projectors.projections import descriptor
from projectors.runtime.batch import BatchStats, Projector
from projectors.runtime.clock import BatchClock, Taken
from projectors.runtime.dead_letters import RawRecord, dead_letter_topic
from projectors.runtime.observe import HealthServer, Metrics
from projectors.runtime.stats import add_rate_sample, stats_path, store_requests, write_stats
from projectors.runtime.take import BatchTaker
from projectors.settings import KafkaSettings, Settings

log = logging.getLogger(__name__)


def faust_app(settings: Settings, name: str, group: str | None, client_id: str | None) -> tuple[Any, Any]:
    """The faust app of one projection's consumer group, and its source topic (the projection's
    capture topics; they and the dead-letter topic are created if missing)."""
    from projectors.runtime.faust_app import app_class

    topics = descriptor(name).topics(settings)
    wanted = {t: settings.kafka.topic_partitions for t in topics}
    ensure_topics(settings, {**wanted, dead_letter_topic(settings, name): 1})
    app = app_class(settings.worker.fetch_max_wait_ms, settings.worker.fetch_idle_wait_ms)(
        group or descriptor(name).group,
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
    return app, source


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


def abandon(why: str, code: int = ExitCode.BATCH_ABANDONED) -> None:
    """Exit at once, committing nothing more: what was acknowledged was written; the rest is
    redelivered to the next worker of the group."""
    log.error("%s: exiting without committing the batch in flight (it will be redelivered)", why)
    logging.shutdown()
    os._exit(code)


class BatchReport:
    """After each batch: the Prometheus metrics, the applied positions and the lag behind them, the
    recent rate and the stats file (`projectors status`); and readiness for the health server."""

    def __init__(self, settings: Settings, name: str, projector: Projector, app: Any) -> None:
        self.name, self.projector, self.app = name, projector, app
        self.stats_file = stats_path(settings, name)
        self.stats_file.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = time.time()
        self.metrics = Metrics(name)
        self.recent: list[tuple[float, int]] = []  # (time, events so far): the recent rate (add_rate_sample)
        add_rate_sample(self.recent, self.started_at, 0)
        self.positions: dict[tuple[str, int], int] = {}
        self.app_started = threading.Event()

        @app.task  # type: ignore[untyped-decorator]
        async def note_started() -> None:
            self.app_started.set()

        if settings.worker.web_port > 0:
            HealthServer(settings.worker.web_port, self.metrics, self.readiness).start()
        write_stats(self.stats_file, projector, self.started_at, self.recent)

    def project(self, records: list[RawRecord]) -> None:
        """Apply ``records`` through the projector, then report."""
        before = self.projector.stats.snapshot()
        self.projector.process(records)
        record_metrics(self.metrics, before, self.projector)
        for r in records:
            self.positions[(r.topic, r.partition)] = r.offset + 1
        lag = lag_of(self.app, self.positions)
        self.metrics.lag.labels(self.name).set(lag)
        stamps = [r.timestamp_s for r in records if r.timestamp_s]
        self.metrics.behind.labels(self.name).set(max(0.0, time.time() - max(stamps)) if lag and stamps else 0.0)
        add_rate_sample(self.recent, time.time(), self.projector.stats.events)
        write_stats(self.stats_file, self.projector, self.started_at, self.recent)

    def readiness(self) -> dict[str, bool]:
        store = self.projector.store
        store_up = (store.healthy if isinstance(store, ReportsHealth) else True) and store.ping()
        self.metrics.store_up.labels(self.name).set(1 if store_up else 0)
        # app.consumer only once the app runs: asked from this (HTTP) thread before, faust creates
        # its consumer thread here, on the wrong event loop, and the worker fails to start
        assigned = self.app_started.is_set() and self.app.consumer.assignment() != set()
        return {"store": store_up, "consuming": self.projector.stats.batches > 0 or assigned}


class BatchGuard:
    """What becomes of a batch handed to the batch thread: nothing more if it was written; else
    the process exits acknowledging nothing more (the batch is redelivered). On shutdown a batch in
    flight gets ``grace_s`` to finish."""

    def __init__(self, projector: Projector, grace_s: float) -> None:
        self.projector, self.grace_s = projector, grace_s

    def written(self, work: asyncio.Future[None]) -> None:
        exc = work.exception()
        if exc is None:
            return
        # never acknowledge a batch that was not written: exit, and the next worker of the
        # group (or this one, restarted) gets it again
        if severity(exc) is Severity.CONFIGURATION:
            abandon(f"stopping on a configuration error ({type(exc).__name__}: {exc})", ExitCode.WORKER_CONFIGURATION)
        log.error("batch failed", exc_info=exc)
        why = "stopped mid-batch" if self.projector.stopping else f"batch failed ({type(exc).__name__}: {exc})"
        abandon(why)

    async def finish(self, work: asyncio.Future[None]) -> None:
        """Wait for a batch in the batch thread; on shutdown wait up to the grace, then give up."""
        try:
            await asyncio.wait([work])
        except asyncio.CancelledError:
            log.warning("stopping mid-batch: waiting up to %.0fs for the batch to be written", self.grace_s)
            done, _ = await asyncio.wait([work], timeout=self.grace_s)
            if not done:
                abandon("batch not written in time")
            self.written(work)
            raise
        self.written(work)


def to_records(events: list[Any]) -> list[RawRecord]:
    return [RawRecord(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp) for m in (e.message for e in events)]


def batch_writer(report: BatchReport, clock: BatchClock | None) -> Callable[[Taken], None]:
    """What the batch thread runs for one batch taken (with its per-change times when clocked)."""

    def project_batch(taken: Taken) -> None:
        records = to_records(taken.events)
        handed = time.time()
        report.project(records)
        if clock is not None:
            clock.write(records, taken.arrived, handed, time.time())

    return project_batch


def add_agent(
    app: Any, source: Any, name: str, settings: Settings, project_batch: Callable[[Taken], None], guard: BatchGuard,
    clocked: bool,
) -> None:
    """The agent: batches of at most ``batch_size`` events taken within ``batch_within_s`` (or, with
    the natural hand-over, as soon as faust's channel holds no more events and no batch is being
    written), applied one after the other, each acknowledged only once written. With two in flight
    faust fills the next batch while this one is written, and each batch is acknowledged (in order)
    by its own task, so the last batch before a pause is committed too. (When clocked, each event is stamped with the
    time its stream took it from faust's channel, which faust's monitor records.)"""
    batch_size, within = settings.worker.batch_size, settings.worker.batch_within_s
    natural = settings.worker.hand_over == "natural"

    def taken(events: Any) -> Taken:
        events = list(events)
        if not clocked:
            return Taken(events, [])
        # when each event entered the stream: faust's monitor stamps every message it takes from
        # the channel (``time_in``, monotonic), here turned into the epoch time of the other stages
        wall, now = time.time(), time.monotonic()
        return Taken(events, [wall if (t := e.message.time_in) is None else wall - (now - t) for e in events])

    if settings.worker.batches_in_flight == 1:

        @app.agent(source, name=f"project-{name}")  # type: ignore[untyped-decorator]
        async def project(stream: Any) -> None:
            loop = asyncio.get_running_loop()
            async for events in stream.take_events(batch_size, within=within):
                # take_events acknowledges the batch when this body returns: after it was written
                await guard.finish(loop.run_in_executor(None, project_batch, taken(events)))

        return

    @app.agent(source, name=f"project-{name}")  # type: ignore[untyped-decorator]
    async def project_two(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        previous: asyncio.Future[None] | None = None
        taker = BatchTaker(stream, batch_size, within, natural)

        async def write_then_ack(batch: Taken) -> None:
            try:
                await guard.finish(loop.run_in_executor(None, project_batch, batch))
                for event in batch.events:
                    await stream.ack(event)
            finally:
                taker.written()

        async for events in taker.batches():
            if previous is not None:
                await guard.finish(previous)  # the batch thread takes one batch at a time
            taker.writing = True
            previous = asyncio.ensure_future(write_then_ack(taken(events)))


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
    store = projector.store
    metrics.retries.labels(name).set(s.retries + (store.retries if isinstance(store, ReportsHealth) else 0))
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
