"""`projectors verify`: the store, item by item, against the spec computed from PostgreSQL.

Scales with the source: the store's live items are paged in and kept only as digests (key -> hash
of the canonical JSON), the spec is streamed from a server-side cursor in one consistent snapshot
(REPEATABLE READ) and checked off against them; what is left over is extra. Only a sample of each
kind of drift is kept for the report.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from projectors.errors import ConfigurationError
from projectors.projections import PROJECTIONS
from projectors.projections import projection as get_projection
from projectors.projections.model import ItemKey, ProjectionStore
from projectors.runtime.source import PostgresSource
from projectors.settings import Settings


def canonical(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)


def digest(doc: Mapping[str, Any]) -> bytes:
    return hashlib.blake2b(canonical(doc).encode(), digest_size=16).digest()


@dataclass
class Drift:
    projection: str
    checked: int = 0
    held: int = 0
    missing: int = 0
    extra: int = 0
    wrong: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.missing + self.extra + self.wrong

    def note(self, kind: str, key: ItemKey, expected: Mapping[str, Any] | None, limit: int) -> None:
        if len(self.samples) < limit:
            self.samples.append(
                {
                    "kind": kind,
                    "collection": key.collection,
                    "id": key.id,
                    "partition": key.partition,
                    "expected": expected,
                }
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "projection": self.projection,
            "checked": self.checked,
            "held": self.held,
            "missing": self.missing,
            "extra": self.extra,
            "wrong": self.wrong,
            "samples": self.samples,
        }


def verify_projection(
    settings: Settings,
    name: str,
    store: ProjectionStore,
    sample_limit: int = 20,
    collect: set[ItemKey] | None = None,
) -> Drift:
    """Compare one projection's store with its spec. ``collect`` receives every drifted key."""
    if name not in PROJECTIONS:
        raise ConfigurationError(f"unknown projection {name!r} (known: {', '.join(PROJECTIONS)})")
    projection = get_projection(name, settings)
    drift = Drift(name)
    held: dict[ItemKey, bytes] = {}
    for collection in projection.collections:
        for key, doc in store.live_items(collection):
            held[key] = digest(doc)
    drift.held = len(held)
    with psycopg.connect(settings.pg.conninfo()) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        for key, doc in projection.spec_all(PostgresSource(conn)):
            drift.checked += 1
            have = held.pop(key, None)
            if have is None:
                drift.missing += 1
                drift.note("missing", key, doc, sample_limit)
            elif have != digest(doc):
                drift.wrong += 1
                drift.note("wrong", key, doc, sample_limit)
            else:
                continue
            if collect is not None:
                collect.add(key)
    for key in held:
        drift.extra += 1
        drift.note("extra", key, None, sample_limit)
        if collect is not None:
            collect.add(key)
    return drift


def verify_until_clean(
    settings: Settings,
    names: list[str],
    open_store: Callable[[Settings, str], ProjectionStore],
    wait_s: float = 0.0,
    on_attempt: Callable[[list[Drift]], None] | None = None,
) -> list[Drift]:
    """Verify each projection; with ``wait_s``, repeat the ones with drift until they are clean or the
    time is up (a pipeline that is still catching up converges; real drift stays)."""
    deadline = time.monotonic() + wait_s
    stores = {name: open_store(settings, name) for name in names}
    try:
        while True:
            results = [verify_projection(settings, name, stores[name]) for name in names]
            if on_attempt:
                on_attempt(results)
            if all(r.total == 0 for r in results) or time.monotonic() >= deadline:
                return results
            time.sleep(2.0)
    finally:
        for store in stores.values():
            store.close()
