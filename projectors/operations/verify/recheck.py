"""Checking again only the keys that drifted: their spec now and what the store holds now."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence

import psycopg

from projectors.model import Document, ItemKey, ProjectionStore
from projectors.operations.verify.drift import Drift, compare
from projectors.operations.verify.pacer import ReadPacer
from projectors.projections import projection as get_projection
from projectors.settings import Settings
from projectors.source import PostgresSource


def spec_of(
    spec_for: Callable[[Collection[ItemKey], PostgresSource], Mapping[ItemKey, Document]],
    keys: Sequence[ItemKey],
    source: PostgresSource,
    chunk: int = 2000,
) -> dict[ItemKey, Document]:
    out: dict[ItemKey, Document] = {}
    for start in range(0, len(keys), chunk):
        out.update(spec_for(keys[start : start + chunk], source))
    return out


def recheck(
    settings: Settings,
    drift: Drift,
    store: ProjectionStore,
    pacer: ReadPacer | None = None,
    sample_limit: int = 20,
) -> Drift:
    """Check again only the keys that drifted (``drift.keys``): their spec now (``spec_for``) and
    what the store holds now (point reads). Returns the verdict on them; the totals read add up."""
    projection = get_projection(drift.projection, settings)
    pacer = pacer or ReadPacer.for_store(settings, store)
    after = dataclasses.replace(
        drift, missing=0, extra=0, wrong=0, samples=[], keys=set(), attempts=drift.attempts + 1
    )
    with pacer.charged_to(after):
        keys = sorted(drift.keys)
        with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
            source = PostgresSource(conn)
            with source.read():
                spec = spec_of(projection.spec_for, keys, source)
        have = pacer.read(store, keys)
        compare(after, keys, spec, have, sample_limit, projection)
    return after
