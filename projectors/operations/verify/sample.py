"""A sampled verify: a seeded random subset of the spec's keys, read from the store by point reads.
It cannot see items the store holds and the spec has not (extra items)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from projectors.model import Document, ItemKey, ProjectionStore
from projectors.operations.verify.drift import Drift, Sample, compare
from projectors.operations.verify.pacer import POINT_READ_CHUNK, ReadPacer
from projectors.projections import descriptor
from projectors.projections import projection as get_projection
from projectors.settings import Settings
from projectors.source import PostgresSource


def verify_sample(
    settings: Settings,
    name: str,
    store: ProjectionStore,
    sample: Sample,
    sample_limit: int = 20,
    pacer: ReadPacer | None = None,
) -> Drift:
    """Compare the spec's keys in ``sample`` with what the store holds for them, by point reads.
    The spec is streamed in full (PostgreSQL is read, not the store); items the store holds and the
    spec has not are not seen."""
    descriptor(name)
    projection = get_projection(name, settings)
    pacer = pacer or ReadPacer.for_store(settings, store)
    drift = Drift(name, attempts=1, sample=sample, mode="sample")
    pending: dict[ItemKey, Document] = {}
    at = datetime.now(UTC)

    def check() -> None:
        keys = sorted(pending)
        have = pacer.read(store, keys)
        drift.held += len(have)
        compare(drift, keys, pending, have, sample_limit, projection, at)
        pending.clear()

    with pacer.charged_to(drift):
        with psycopg.connect(settings.pg.conninfo()) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            for key, doc in projection.spec_all(PostgresSource(conn)):
                drift.spec_items += 1
                if key in sample and projection.judged(doc, at) is not None:
                    drift.checked += 1
                    pending[key] = doc
                    if len(pending) >= POINT_READ_CHUNK:
                        check()
        if pending:
            check()
    return drift
