"""One batch, start to end: decode, name the touched items, read their spec, apply, dead-letter.

Synchronous and free of any consumer: the faust agent (``worker.py``) calls :meth:`process` for a
batch and acknowledges the batch's offsets only when it returns. It returns only once the store
applied every operation (retrying while the store is down) and the dead letters are flushed.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg

from projectors.errors import DeadLetterFailed, PoisonEventError, RetriableError, Severity, severity
from projectors.events.decode import decode
from projectors.events.models import ChangeEvent
from projectors.model import CachedItems, ProjectionStore, Stoppable
from projectors.projections.base import Projection, Touch
from projectors.runtime.dead_letters import DeadLetterWriter, RawRecord
from projectors.runtime.retry import Retry, RetryPolicy, unwrapped
from projectors.source import PostgresSource, SourceCounts

log = logging.getLogger(__name__)

# a dead letter not acknowledged after this many flushes (each waits up to 30 s) stops the worker
DEAD_LETTER_ATTEMPTS = 8

# the stages a batch is timed in, in order (stats, metrics and the bench name them so)
STAGES = ("decode+validate", "touched", "plan (source reads)", "store apply", "dead-letter flush")


@dataclass
class BatchStats:
    """Running totals for status and metrics."""

    events: int = 0
    batches: int = 0
    operations: int = 0
    changed: int = 0
    skipped_stale: int = 0
    dead_letters: int = 0
    retries: int = 0
    last_lsn: int = 0
    last_applied_at: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # CPU time spent in ``process`` (the projectors' own code)
    store_requests: dict[str, float] = field(default_factory=dict)  # as last reported to the metrics

    def snapshot(self) -> BatchStats:
        """A copy of the totals now (metrics take the difference a batch made)."""
        return dataclasses.replace(
            self, stage_seconds=dict(self.stage_seconds), store_requests=dict(self.store_requests)
        )

    def timed(self, stage: str, started: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + (time.perf_counter() - started)


class Named(Protocol):
    @property
    def name(self) -> str: ...


class StoreProbe(Protocol):
    def ping(self) -> bool: ...


class Projector(Protocol):
    """What a worker needs of its projector: :class:`BatchProjector` in the worker's process, or
    :class:`~projectors.runtime.projector_process.ProjectorProcess` running one in a child."""

    stats: BatchStats
    source_counts: SourceCounts

    @property
    def projection(self) -> Named: ...

    @property
    def store(self) -> StoreProbe: ...

    @property
    def stopping(self) -> bool: ...

    def stop(self) -> None: ...

    def process(self, records: Sequence[RawRecord]) -> None: ...


class BatchProjector:
    def __init__(
        self,
        projection: Projection,
        store: ProjectionStore,
        connect_source: Callable[[], psycopg.Connection],
        dead_letters: DeadLetterWriter,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
    ) -> None:
        self.projection = projection
        self.store = store
        self._connect_source = connect_source
        self._conn: psycopg.Connection | None = None
        self.dead_letters = dead_letters
        # source reads and store calls: until they work (the batch waits, unacknowledged)
        self.retry = Retry(RetryPolicy(initial_s=retry_initial_s, max_s=retry_max_s))
        # dead letters: a bounded number of flushes, then the worker stops
        self.letters_retry = Retry(
            RetryPolicy(initial_s=retry_initial_s, max_s=retry_max_s, max_attempts=DEAD_LETTER_ATTEMPTS),
            stopping=self.retry.stopping,
        )
        self.stats = BatchStats()
        self.source_counts = SourceCounts()  # statements and rows read from PostgreSQL so far
        self._lock = threading.Lock()  # a batch and the readers' requests are planned one at a time

    @property
    def stopping(self) -> bool:
        return self.retry.stopping.is_set()

    def stop(self) -> None:
        """The process is stopping (SIGTERM): retries end at once and the batch in flight raises,
        unacknowledged, so the next worker of the group gets it again."""
        self.retry.stop()  # and the dead letters' loop: they share the event
        if isinstance(self.store, Stoppable):
            self.store.stop()

    def _source(self, must_see: Collection[int] = ()) -> PostgresSource:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect_source()
        return PostgresSource(self._conn, self.source_counts, must_see)

    def process(self, records: Sequence[RawRecord]) -> None:
        """Project ``records``; returns only when each was applied or dead-lettered, and the dead
        letters are flushed. An event that makes the projection fail in a way no retry fixes (an
        error that is not transient) is isolated by bisection and dead-lettered with the error; the
        rest of the batch is applied."""
        cpu = time.thread_time()
        try:
            with self._lock:
                self._process(records)
        finally:
            self.stats.cpu_seconds += time.thread_time() - cpu

    def serves_requests(self) -> bool:
        """Whether the projection keeps a cache its readers ask for items (``Projection.cached``)."""
        return bool(self.projection.cached) and isinstance(unwrapped(self.store), CachedItems)

    def serve_requests(self, wait_s: float = 1.0) -> None:
        """Until stopped: write the cached items readers asked for (``CachedItems.requested``), each
        planned from the source like a batch's (one snapshot, a ticket as version). A request that
        fails is dropped (logged): the reader, still missing it, asks again."""
        store = self.store
        assert isinstance(store, CachedItems)
        while not self.stopping:
            try:
                keys = store.requested(wait_s)
                if keys:
                    with self._lock:
                        ops = self.projection.plan(set(keys), self._source(), self.store)
                        self.store.apply(ops)
            except Exception as exc:
                log.warning("readers' requests (%s): %s: %s", self.projection.name, type(exc).__name__, exc)
                self.retry.stopping.wait(wait_s)

    def _process(self, records: Sequence[RawRecord]) -> None:
        stats = self.stats
        started = time.perf_counter()
        max_lsn = 0
        events: list[tuple[ChangeEvent, RawRecord]] = []
        for record in records:
            try:
                event = decode(record.topic, record.partition, record.offset, record.key, record.value)
            except PoisonEventError as exc:
                self._dead_letter(record, str(exc))
                continue
            if event is not None:
                events.append((event, record))
                max_lsn = max(max_lsn, event.lsn)
        stats.timed("decode+validate", started)
        self._project(events)
        started = time.perf_counter()
        self._flush_dead_letters()
        stats.timed("dead-letter flush", started)
        stats.events += len(records)
        stats.batches += 1
        stats.last_lsn = max(stats.last_lsn, max_lsn)
        stats.last_applied_at = time.time()

    def _project(self, events: Sequence[tuple[ChangeEvent, RawRecord]]) -> None:
        try:
            self._project_once(events)
        except DeadLetterFailed:
            raise
        except Exception as exc:
            # retriable: only while stopping; configuration: the worker stops. The batch stays
            # unacknowledged either way. Refused: the event that causes it is isolated.
            if severity(exc) is not Severity.REFUSED:
                raise
            if len(events) == 1:
                event, record = events[0]
                log.exception("dead-lettering %s: projecting it failed", event.origin)
                self._dead_letter(record, f"projecting the event failed: {type(exc).__name__}: {exc}")
                return
            half = len(events) // 2
            log.warning("a batch of %d events failed (%s: %s); isolating the event that fails",
                        len(events), type(exc).__name__, exc)
            self._project(events[:half])
            self._project(events[half:])

    def _project_once(self, events: Sequence[tuple[ChangeEvent, RawRecord]]) -> None:
        stats = self.stats
        started = time.perf_counter()
        touches: set[Touch] = set()
        for event, _record in events:
            touches.update(self.projection.touched(event))
        stats.timed("touched", started)
        if not touches:
            return
        started = time.perf_counter()
        # the rows are read in a snapshot that sees every transaction of the batch's changes
        must_see = {event.tx_id for event, _record in events if event.tx_id is not None}
        ops = self._with_retry("read spec", lambda: self.projection.plan(touches, self._source(must_see), self.store))
        stats.timed("plan (source reads)", started)
        started = time.perf_counter()
        result = self._with_retry("apply", lambda: self.store.apply(ops))
        stats.timed("store apply", started)
        for failure in result.failures:
            # the retrying store returns only failures that will never succeed
            error = failure.error
            reason = f"store refused {type(failure.op).__name__} {failure.op.key}: {type(error).__name__}: {error}"
            self._dead_letter(RawRecord("(operation)", -1, -1, failure.op.key.id.encode(), None), reason)
        stats.operations += len(ops)
        stats.changed += result.changed
        stats.skipped_stale += result.skipped_stale

    def _dead_letter(self, record: RawRecord, reason: str) -> None:
        self.dead_letters.send(record, reason)
        self.stats.dead_letters += 1
        log.warning("dead-lettered %s:%s:%s: %s", record.topic, record.partition, record.offset, reason)

    def _flush_dead_letters(self) -> None:
        """Wait until the broker holds every dead letter of the batch; after
        ``DEAD_LETTER_ATTEMPTS`` failed flushes, raise :class:`DeadLetterFailed`: the worker exits
        non-zero with the reason, and the batch (not acknowledged) is redelivered."""
        try:
            self.letters_retry.call("dead letters", self.dead_letters.flush, on_retry=self._retried)
        except RetriableError as exc:
            raise DeadLetterFailed(f"dead letters could not be written: {exc}") from exc

    def _with_retry(self, what: str, call: Callable[[], Any]) -> Any:
        """Retry transient failures (source or broker down) with backoff, as long as it takes:
        the batch is not acknowledged meanwhile, so nothing is lost and nothing is skipped."""
        return self.retry.call(what, call, on_retry=self._retried)

    def _retried(self, exc: BaseException) -> None:
        self.stats.retries += 1
        if isinstance(exc, psycopg.Error) and self._conn is not None:
            self._conn.close()  # a new connection for the next attempt

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
