"""An incremental verify: only the items the events since a checkpoint touched, and what the
store's change feed names since then (Cosmos)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

import psycopg

from projectors.model import ChangeFeed, Document, ItemKey, ProjectionStore
from projectors.operations import checkpoint as cp
from projectors.operations.verify.drift import Drift, compare
from projectors.operations.verify.pacer import CountedReads, ReadPacer
from projectors.operations.verify.recheck import spec_of
from projectors.projections import descriptor
from projectors.projections import projection as get_projection
from projectors.settings import Settings
from projectors.source import PostgresSource

# the feed is read from this much before the checkpoint: Cosmos keeps a write's time (`_ts`) in whole
# seconds, and the store's clock may differ a little from this machine's
FEED_MARGIN_S = 2.0


def verify_incremental(
    settings: Settings,
    name: str,
    store: ProjectionStore,
    since: cp.Checkpoint,
    end: Mapping[cp.Position, int],
    sample_limit: int = 20,
    pacer: ReadPacer | None = None,
) -> Drift:
    """Compare only the items the events from ``since`` up to ``end`` touched: their touches
    expanded to keys as a worker does (one source snapshot), their spec (``spec_for``) and what the
    store holds (point reads). ``checked``: the keys compared; ``held``: those the store holds."""
    descriptor(name)
    projection = get_projection(name, settings)
    pacer = pacer or ReadPacer.for_store(settings, store)
    drift = Drift(name, attempts=1, mode="incremental", checkpoint=since)
    with pacer.charged_to(drift):
        touched = cp.touched_between(settings, projection, since.positions, end)
        drift.events = touched.records
        changed = store_changes(projection.collections, store, since.at - FEED_MARGIN_S, pacer)
        drift.store_changes = len(changed)
        spec: dict[ItemKey, Document] = {}
        keys: list[ItemKey] = []
        if touched.touches or changed:
            with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
                source = PostgresSource(conn)
                with source.read():
                    found: Collection[ItemKey] = ()
                    if touched.touches:
                        found, _fresh = projection.targets(touched.touches, source, CountedReads(store, pacer))
                    keys = sorted(set(found) | changed)
                    spec = spec_of(projection.spec_for, keys, source)
        have = pacer.read(store, keys)
        drift.checked = drift.spec_items = len(keys)
        drift.held = len(have)
        compare(drift, keys, spec, have, sample_limit, projection)
    return drift


def store_changes(collections: Iterable[str], store: ProjectionStore, since: float, pacer: ReadPacer) -> set[ItemKey]:
    """The keys of the items written to the store at or after ``since`` (unix time), by anyone,
    where the store keeps a change feed (:class:`ChangeFeed`: Cosmos); none where it does not.
    Every item the feed returns counts as read."""
    if not isinstance(store, ChangeFeed):
        return set()
    out: set[ItemKey] = set()
    for collection in collections:
        found = store.changed_since(collection, since)
        pacer.take(len(found))
        out.update(found)
    return out
