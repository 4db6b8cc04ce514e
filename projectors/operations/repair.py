"""`projectors verify --repair`: rewrite exactly the drifted items from the spec, with the guard.

The drifted keys (missing, extra, wrong) are those the verify found (in full, in a sample, or still
drifted after its re-checks); their intended state is read with a fresh ticket, so the repair is
newer than anything the store holds and never older than a write a worker makes at the same time
(that write's ticket is newer still, and wins).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from projectors.model import ApplyResult, ItemKey, ProjectionStore, Put
from projectors.operations.verify import Drift, recheck, record_if_clean, verify_projection
from projectors.projections import projection as get_projection
from projectors.projections.base import ops_for
from projectors.settings import Settings
from projectors.source import PostgresSource


@dataclass
class Repair:
    projection: str
    drifted: int
    written: int
    removed: int
    result: ApplyResult


def drifted_keys(settings: Settings, name: str, store: ProjectionStore) -> set[ItemKey]:
    keys: set[ItemKey] = set()
    verify_projection(settings, name, store, collect=keys)
    return keys


def repair(settings: Settings, name: str, store: ProjectionStore, keys: Iterable[ItemKey], chunk: int = 2000) -> Repair:
    projection = get_projection(name, settings)
    ordered = sorted(set(keys))
    written = removed = 0
    changed = stale = unchanged = 0
    failures = []
    with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
        source = PostgresSource(conn)
        for start in range(0, len(ordered), chunk):
            part = ordered[start : start + chunk]
            with source.read() as ticket:
                spec = projection.spec_for(part, source)
            ops = ops_for(part, spec, ticket)
            result = store.apply(ops)
            written += sum(isinstance(op, Put) for op in ops)
            removed += sum(not isinstance(op, Put) for op in ops)
            changed += result.changed
            stale += result.skipped_stale
            unchanged += result.unchanged
            failures += list(result.failures)
    return Repair(name, len(ordered), written, removed, ApplyResult(changed, stale, unchanged, failures))


@dataclass
class RepairReport:
    """``verify --repair`` for one projection: what was rewritten, and the drift left after it."""

    repair: Repair
    drift_after: int

    @property
    def clean(self) -> bool:
        return self.drift_after == 0 and not self.repair.result.failures

    def as_dict(self) -> dict[str, Any]:
        done = self.repair
        return {
            "projection": done.projection, "drifted": done.drifted, "rewritten": done.written,
            "removed": done.removed, "changed": done.result.changed, "failures": len(done.result.failures),
            "driftAfter": self.drift_after,
        }


def repair_drifted(settings: Settings, drifted: Iterable[Drift]) -> list[RepairReport]:
    """Verify, repair, verify: rewrite the keys each verify found drifted, then check exactly those
    keys again; a projection clean after its repair records a verify checkpoint."""
    from projectors.stores.factory import open_raw_store

    reports = []
    for found in drifted:
        store = open_raw_store(settings, found.projection)
        try:
            done = repair(settings, found.projection, store, found.keys)
            after = recheck(settings, found, store)
            if not done.result.failures:
                record_if_clean(settings, after, store)
        finally:
            store.close()
        reports.append(RepairReport(done, after.total))
    return reports
