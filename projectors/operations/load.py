"""Fill a store from the state of the source, not from its history.

Every projection is a function of the source tables, so a new store can be filled by reading the
projection's spec (``spec_all``) in one PostgreSQL snapshot and writing every item with the store's
bulk path: its cost grows with the size of the state, not with the length of the topics. The items
carry the snapshot's read ticket as their version: any later read (a worker's, or the catch-up from
the topics that follows a load) has a higher ticket and wins, so replaying events from offsets taken
*before* the snapshot is safe.

Reading PostgreSQL and writing the store overlap: the snapshot is streamed in pages by this thread
while a writer thread applies the previous chunk (the store's own ``apply``: ``UNWIND`` batches for
the graph, concurrent creates and transactional batches for Cosmos, one transaction per chunk for
the embedded search engine).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from projectors.model import BulkLoad, ItemFailure, ItemKey, ProjectionStore, Put
from projectors.projections.base import Projection
from projectors.source import PostgresSource

log = logging.getLogger(__name__)

CHUNK = 5000  # operations per store call (the store splits further where it must)
QUEUED_CHUNKS = 3  # chunks read ahead of the writer


@dataclass
class LoadReport:
    items: int = 0
    seconds: float = 0.0
    read_wait_s: float = 0.0  # time the writer waited for the source (the source was the bottleneck)
    write_s: float = 0.0  # time the writer spent in the store
    ticket: int = 0  # the version every loaded item carries
    changed: int = 0
    failures: list[ItemFailure] = field(default_factory=list)

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "seconds": round(self.seconds, 2),
            "itemsPerSecond": round(self.items_per_s),
            "sourceWaitSeconds": round(self.read_wait_s, 2),
            "storeSeconds": round(self.write_s, 2),
            "ticket": self.ticket,
            "refused": len(self.failures),
        }


def bulk_write(
    store: ProjectionStore,
    items: Iterable[tuple[ItemKey, Any]],
    version: int,
    chunk: int = CHUNK,
    progress: Callable[[int], None] = lambda _n: None,
) -> LoadReport:
    """Write ``items`` (key, document) as new items at ``version``, ``chunk`` at a time, the next
    chunk being produced (read from the source) while the store applies the previous one."""
    report = LoadReport(ticket=version)
    # the store's path for an empty store where it has one (the graph skips its guard's reads)
    write: Callable[[list[Put]], Any] = store.load if isinstance(store, BulkLoad) else store.apply
    chunks: queue.Queue[list[Put] | None] = queue.Queue(maxsize=QUEUED_CHUNKS)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            while True:
                waited = time.perf_counter()
                ops = chunks.get()
                report.read_wait_s += time.perf_counter() - waited
                if ops is None:
                    return
                started = time.perf_counter()
                result = write(ops)
                report.write_s += time.perf_counter() - started
                report.items += len(ops)
                report.changed += result.changed
                report.failures += result.failures
                progress(report.items)
        except BaseException as exc:  # handed to the reading thread, which raises it
            errors.append(exc)
            while chunks.get() is not None:  # unblock the reader
                pass

    started = time.perf_counter()
    thread = threading.Thread(target=writer, name="bulk-write", daemon=True)
    thread.start()
    try:
        batch: list[Put] = []
        for key, doc in items:
            batch.append(Put(key, version, doc, True))
            if len(batch) >= chunk:
                chunks.put(batch)
                batch = []
                if errors:
                    break
        if batch and not errors:
            chunks.put(batch)
    finally:
        chunks.put(None)
        thread.join()
    if errors:
        raise errors[0]
    report.seconds = time.perf_counter() - started
    for failure in report.failures[:5]:
        log.warning("load: the store refused %s: %s", failure.op.key, failure.error)
    return report


def load_from_state(
    projection: Projection,
    store: ProjectionStore,
    connect: Callable[[], psycopg.Connection[Any]],
    chunk: int = CHUNK,
    progress: Callable[[int], None] = lambda _n: None,
) -> LoadReport:
    """Every item of ``projection``'s spec, read in one snapshot, written to ``store`` (new items,
    versioned with the snapshot's ticket)."""
    with connect() as conn:
        source = PostgresSource(conn)
        with source.read() as ticket:
            return bulk_write(store, projection.spec_all(source), ticket, chunk, progress)


def spec_items(projection: Projection, connect: Callable[[], psycopg.Connection[Any]]) -> Iterator[tuple[ItemKey, Any]]:
    """The spec, read in one snapshot (for a baseline that writes the same items without reading)."""
    with connect() as conn:
        source = PostgresSource(conn)
        with source.read():
            yield from projection.spec_all(source)
