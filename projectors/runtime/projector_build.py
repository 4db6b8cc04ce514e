"""What a worker's projector is built from, in whichever process runs it (the worker's own, or the
child of ``projector_process.py``): the projection, its store, the source connection and the
dead-letter writer; and the process settings both kinds of process share."""

from __future__ import annotations

import gc
import logging
import threading

import psycopg

from projectors.model import ProjectionStore
from projectors.projections import descriptor
from projectors.runtime.batch import BatchProjector
from projectors.runtime.dead_letters import DeadLetterWriter
from projectors.runtime.retry import open_store
from projectors.settings import Settings


def build_projector(settings: Settings, name: str, store: ProjectionStore | None = None) -> BatchProjector:
    projection = descriptor(name).build(settings)
    store = store or open_store(settings, name)
    store.ensure_schema()

    def connect_source() -> psycopg.Connection:
        return psycopg.connect(settings.pg.conninfo(), autocommit=True)

    projector = BatchProjector(
        projection,
        store,
        connect_source,
        DeadLetterWriter(settings, name),
        retry_initial_s=settings.worker.retry_initial_s,
        retry_max_s=settings.worker.retry_max_s,
    )
    if projector.serves_requests():  # a cache readers ask for items (the redis projection's feed pages)
        threading.Thread(target=projector.serve_requests, name="requests", daemon=True).start()
    return projector


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
