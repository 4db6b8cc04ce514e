"""`projectors verify`: the store, item by item, against the spec computed from PostgreSQL.

One module per way of checking, each behind the same shape (settings, projection, store, pacer ->
:class:`Drift`): ``full.py`` (every item; ``digests.py`` where the store digests ranges),
``sample.py``, ``incremental.py``, ``recheck.py``; ``pacer.py`` counts and paces every store read.
This module chooses between them and re-checks until clean.

Four ways to read less of a store than a full read:

- ``--wait`` first waits for the pipeline (``caught_up.py``: capture, then the consumer group's
  committed offsets, no store read), verifies once in full, then re-checks only the keys that
  drifted (their spec with ``spec_for``, the store by point reads) until they are clean or the time
  is up: one whole-store read per projection, whatever the wait;
- a sample (``--sample``) compares a seeded random subset of the spec's keys, read from the store by
  point reads. It cannot see items the store holds and the spec has not (extra items);
- a read budget (``PROJECTORS_VERIFY_READ_BUDGET_ITEMS_S``, ``..._RU_S``) paces every store read,
  also those of a repair's re-check and of a rebuild's check (``ReadPacer.for_store``);
- incremental (``projectors verify`` by default, ``verify_until_clean(incremental=True)``): after
  a clean verify the topics' end offsets taken at its start are committed as a checkpoint
  (``checkpoint.py``); the next verify reads the events since then, expands what they touched to
  item keys as a worker does, adds the items the store's change feed names since then (Cosmos),
  and compares only those keys (``spec_for`` and point reads). It sees what events touched and what
  a change feed shows since the checkpoint, nothing else: an item deleted directly from Cosmos, or
  changed in a store with no change feed, with no event, is found only by a full verify
  (``--full``). Without a usable checkpoint (none, another store generation, events gone) it
  verifies in full.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from projectors.model import ProjectionStore
from projectors.operations import checkpoint as cp
from projectors.operations.caught_up import PipelineWait, wait_for_pipeline
from projectors.operations.verify.drift import Drift, Sample, describe_diff, field_diff, parse_fraction
from projectors.operations.verify.full import verify_projection
from projectors.operations.verify.incremental import FEED_MARGIN_S, verify_incremental
from projectors.operations.verify.pacer import CountedReads, ReadPacer
from projectors.operations.verify.recheck import recheck
from projectors.operations.verify.sample import verify_sample
from projectors.projections import descriptor
from projectors.settings import Settings
from projectors.stores.factory import current_generation

RECHECK_PAUSE_S = 2.0

__all__ = [
    "FEED_MARGIN_S", "RECHECK_PAUSE_S", "CountedReads", "Drift", "ReadPacer", "Sample", "describe_diff", "field_diff",
    "parse_fraction", "recheck", "record_if_clean", "verify_incremental", "verify_projection", "verify_sample",
    "verify_until_clean",
]


def verify_until_clean(
    settings: Settings,
    names: list[str],
    open_store: Callable[[Settings, str], ProjectionStore],
    wait_s: float = 0.0,
    on_attempt: Callable[[list[Drift]], None] | None = None,
    sample: Sample | None = None,
    on_wait: Callable[[str], None] | None = None,
    incremental: bool = False,
    record: bool = False,
) -> list[Drift]:
    """Verify each projection (in full, or ``sample``). With ``wait_s``: first wait for the pipeline
    to apply what the source held at the call (no store read), then check once, then re-check only
    the drifted keys every 2 s until they are clean or the time is up (changes still in flight
    converge; real drift stays).

    ``incremental``: check only what events touched since the projection's checkpoint, when it has
    a usable one (else in full). ``record``: a projection found clean (not by a sample) gets its
    checkpoint moved to the topics' ends taken before its check began."""
    for name in names:
        descriptor(name)
    deadline = time.monotonic() + wait_s
    stores = {name: open_store(settings, name) for name in names}
    pacers = {name: ReadPacer.for_store(settings, stores[name]) for name in names}
    try:
        pipeline: dict[str, PipelineWait] = {}
        if wait_s > 0:
            if on_wait:
                on_wait("waiting for capture and the workers to apply what PostgreSQL holds now")
            pipeline = wait_for_pipeline(settings, names, deadline)
        results = []
        for name in names:
            store, pacer = stores[name], pacers[name]
            if sample is not None:
                result = verify_sample(settings, name, store, sample, pacer=pacer)
            elif incremental or record:
                result = _verify_from_checkpoint(settings, name, store, pacer, incremental)
            else:
                result = verify_projection(settings, name, store, pacer=pacer)
            result.pipeline = pipeline.get(name)
            results.append(result)
        if on_attempt:
            on_attempt(results)
        while any(r.total for r in results) and time.monotonic() < deadline:
            time.sleep(max(0.0, min(RECHECK_PAUSE_S, deadline - time.monotonic())))
            results = [
                recheck(settings, r, stores[r.projection], pacers[r.projection]) if r.total else r for r in results
            ]
            if on_attempt:
                on_attempt(results)
        if record:
            for r in results:
                record_if_clean(settings, r, stores[r.projection])
        return results
    finally:
        for store in stores.values():
            store.close()


def _verify_from_checkpoint(
    settings: Settings, name: str, store: ProjectionStore, pacer: ReadPacer, incremental: bool
) -> Drift:
    """The topics' ends and the store generation first (what a clean result records), then the
    check: incremental from a usable checkpoint, else in full."""
    started_at = time.time()
    generation = current_generation(settings, name)
    lows, end = cp.lows_and_ends(settings, name)
    why: str | None = "--full"
    since = None
    if incremental:
        since = cp.read_checkpoint(settings, name)
        why = cp.unusable(since, generation, store_kind(store), lows, end)
    if since is not None and why is None:
        result = verify_incremental(settings, name, store, since, end, pacer=pacer)
    else:
        result = verify_projection(settings, name, store, pacer=pacer)
        result.full_because = why
    result.start, result.started_at, result.generation = end, started_at, generation
    return result


def store_kind(store: ProjectionStore) -> str:
    return type(store).__name__


def record_if_clean(settings: Settings, result: Drift, store: ProjectionStore) -> None:
    """Commit the checkpoint of a clean verify (not a sample) that took its start offsets."""
    if result.total or result.mode == "sample" or result.generation is None:
        return
    result.recorded = cp.record_checkpoint(
        settings, result.projection, result.start, result.started_at, result.generation, store_kind(store)
    )
