"""A whole-store verify by range digests (``stores/digests.py``), for stores that compute them."""

from __future__ import annotations

import psycopg

from projectors.model import ItemKey, ProjectionStore, RangeDigester
from projectors.operations.verify.drift import Drift, compare
from projectors.operations.verify.pacer import ReadPacer
from projectors.operations.verify.recheck import spec_of
from projectors.projections import Projection
from projectors.settings import Settings
from projectors.source import PostgresSource
from projectors.stores.digests import FINEST, item_hash, key_bucket

DIGEST_ITEMS_PER_BUCKET = 256  # a drifted item costs reading about this many
DIGEST_MOST_DIFFERING = 0.25  # more of the buckets differing than this: one whole read is cheaper


def bucket_count(items: int) -> int:
    """Buckets (a power of two) of about ``DIGEST_ITEMS_PER_BUCKET`` items each."""
    n = 1
    while n < FINEST and n * DIGEST_ITEMS_PER_BUCKET < items:
        n *= 2
    return n


def verify_by_digests(
    settings: Settings,
    projection: Projection,
    store: ProjectionStore,
    digester: RangeDigester,
    sample_limit: int,
    pacer: ReadPacer,
) -> Drift | None:
    """The spec is streamed once and hashed into buckets; the store returns each bucket's item
    count and sum of hashes; only the keys of buckets that differ (the spec's and the store's) are
    compared, with their spec now and point reads. None when so much differs that one whole read
    is cheaper."""
    drift = Drift(projection.name, full_reads=0, attempts=1)
    with pacer.charged_to(drift):
        candidates = _differing_keys(settings, projection, digester, drift)
        if candidates is None:
            return None
        if candidates:
            with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
                source = PostgresSource(conn)
                with source.read():
                    intended = spec_of(projection.spec_for, candidates, source)
            compare(drift, candidates, intended, pacer.read(store, candidates), sample_limit, projection)
    return drift


def _differing_keys(
    settings: Settings, projection: Projection, store: RangeDigester, drift: Drift
) -> list[ItemKey] | None:
    ids: dict[str, dict[int, list[str]]] = {c: {} for c in projection.collections}
    sums: dict[str, dict[int, list[int]]] = {c: {} for c in projection.collections}
    with psycopg.connect(settings.pg.conninfo()) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        for key, doc in projection.spec_all(PostgresSource(conn)):
            bucket = key_bucket(key.id)
            ids[key.collection].setdefault(bucket, []).append(key.id)
            agg = sums[key.collection].setdefault(bucket, [0, 0])
            agg[0] += 1
            agg[1] += item_hash(doc)
            drift.checked += 1
    candidates: list[ItemKey] = []
    for collection in projection.collections:
        spec_total = sum(agg[0] for agg in sums[collection].values())
        n = bucket_count(max(spec_total, store.count(collection)))
        spec: dict[int, tuple[int, int]] = {}
        for bucket, (count, total) in sums[collection].items():
            have = spec.get(bucket & (n - 1), (0, 0))
            spec[bucket & (n - 1)] = (have[0] + count, have[1] + total)
        held = store.digests(collection, n)
        drift.digests_read += len(held)
        drift.held += sum(count for count, _total in held.values())
        differing = sorted(b for b in set(spec) | set(held) if spec.get(b) != held.get(b))
        if n > 1 and len(differing) > n * DIGEST_MOST_DIFFERING:
            return None
        if not differing:
            continue
        chosen = set(differing)
        keys = {i for bucket, some in ids[collection].items() if bucket & (n - 1) in chosen for i in some}
        keys.update(store.ids_in(collection, n, differing))
        candidates += [ItemKey(collection, i) for i in sorted(keys)]
    drift.spec_items = drift.checked
    return candidates
