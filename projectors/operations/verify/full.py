"""A whole-store verify: every live item of the store, against the spec streamed from PostgreSQL.

Scales with the source: the store's live items are paged in and kept only as digests (key -> hash
of the canonical JSON), the spec is streamed from a server-side cursor in one consistent snapshot
(REPEATABLE READ) and checked off against them; what is left over is extra. Only a sample of each
kind of drift is kept for the report. A store that computes range digests (FalkorDB) is compared
range by range instead (``digests.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from projectors.model import ItemKey, ProjectionStore, RangeDigests
from projectors.operations.verify.digests import verify_by_digests
from projectors.operations.verify.drift import Drift, digest, field_diff
from projectors.operations.verify.pacer import ReadPacer
from projectors.operations.verify.recheck import spec_of
from projectors.projections import Projection, descriptor
from projectors.projections import projection as get_projection
from projectors.settings import Settings
from projectors.source import PostgresSource


def verify_projection(
    settings: Settings,
    name: str,
    store: ProjectionStore,
    sample_limit: int = 20,
    collect: set[ItemKey] | None = None,
    pacer: ReadPacer | None = None,
    use_digests: bool = True,
) -> Drift:
    """Compare one projection's whole store with its spec. ``collect`` receives every drifted key.

    Where the store computes range digests (FalkorDB), only the ranges whose digest differs are
    read, item by item (:func:`verify_by_digests`); else every item is read."""
    descriptor(name)
    projection = get_projection(name, settings)
    pacer = pacer or ReadPacer.for_store(settings, store)
    digester = store.digests if isinstance(store, RangeDigests) else None
    if use_digests and digester is not None and type(projection).judged is Projection.judged:
        by_digests = verify_by_digests(settings, projection, store, digester, sample_limit, pacer)
        if by_digests is not None:
            if collect is not None:
                collect |= by_digests.keys
            return by_digests
    drift = Drift(name, full_reads=1, attempts=1)
    with pacer.charged_to(drift):
        _compare_whole(settings, projection, store, drift, sample_limit, pacer)
    if collect is not None:
        collect |= drift.keys
    return drift


def _compare_whole(
    settings: Settings, projection: Projection, store: ProjectionStore, drift: Drift, sample_limit: int,
    pacer: ReadPacer,
) -> None:
    held: dict[ItemKey, bytes] = {}
    at = datetime.now(UTC)
    unjudged: set[ItemKey] = set()  # within a margin of expiry (Projection.judged)
    wrong: dict[ItemKey, dict[str, Any]] = {}  # the wrong examples kept: their fields are read back
    cached: dict[ItemKey, bytes] = {}  # items of a cache (Projection.cached): judged where held only
    for collection in projection.collections:
        for key, doc in pacer.paced(store.live_items(collection)):
            if collection in projection.cached:
                cached[key] = digest(doc)
                continue
            judged = projection.judged(doc, at)
            if judged is None:
                unjudged.add(key)
            else:
                held[key] = digest(judged)
    drift.held = len(held) + len(cached)
    with psycopg.connect(settings.pg.conninfo()) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        if cached:  # the cache's spec, for the items it holds, in the snapshot the rest is read in
            held.update(cached)
            for key, intended in spec_of(projection.spec_for, sorted(cached), PostgresSource(conn)).items():
                drift.checked += 1
                if held.pop(key) != digest(intended):
                    drift.wrong += 1
                    if drift.note("wrong", key, intended, sample_limit):
                        wrong[key] = drift.samples[-1]
                    drift.keys.add(key)
        for key, intended in projection.spec_all(PostgresSource(conn)):
            judged = projection.judged(intended, at)
            if judged is None or key in unjudged:
                held.pop(key, None)
                continue
            doc = judged
            drift.checked += 1
            have = held.pop(key, None)
            if have is None:
                drift.missing += 1
                drift.note("missing", key, doc, sample_limit)
            elif have != digest(doc):
                drift.wrong += 1
                if drift.note("wrong", key, doc, sample_limit):
                    wrong[key] = drift.samples[-1]
            else:
                continue
            drift.keys.add(key)
    if wrong:  # only digests were kept: read the few examples again for the fields that differ
        for key, stored in pacer.read(store, sorted(wrong)).items():
            found = projection.judged(stored, at)
            expected = wrong[key]["expected"]
            if found is not None and expected is not None:
                wrong[key]["differs"] = field_diff(expected, found)
    for key in held:
        drift.extra += 1
        drift.note("extra", key, None, sample_limit)
        drift.keys.add(key)
    drift.spec_items = drift.checked
