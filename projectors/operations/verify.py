"""`projectors verify`: the store, item by item, against the spec computed from PostgreSQL.

Scales with the source: the store's live items are paged in and kept only as digests (key -> hash
of the canonical JSON), the spec is streamed from a server-side cursor in one consistent snapshot
(REPEATABLE READ) and checked off against them; what is left over is extra. Only a sample of each
kind of drift is kept for the report.

Four ways to read less of a store:

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

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import psycopg

from projectors.model import Document, ItemKey, ProjectionStore
from projectors.operations import checkpoint as cp
from projectors.operations.caught_up import PipelineWait, wait_for_pipeline
from projectors.projections import Projection, descriptor
from projectors.projections import projection as get_projection
from projectors.runtime.stats import request_counts
from projectors.runtime.store_factory import current_generation
from projectors.settings import Settings
from projectors.source import PostgresSource
from projectors.stores.digests import FINEST, item_hash, key_bucket

POINT_READ_CHUNK = 500  # keys per point-read call
RECHECK_PAUSE_S = 2.0


def canonical(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)


def digest(doc: Mapping[str, Any]) -> bytes:
    return hashlib.blake2b(canonical(doc).encode(), digest_size=16).digest()


class ReadPacer:
    """Counts the store items verify reads and, with a budget, sleeps so that the reads keep to it
    (at most one second's budget in a burst): ``items_per_s`` store items, and ``ru_per_s`` request
    units where the store reports what it charged (``charged``: the store's request units so far,
    as Cosmos reports them in ``x-ms-request-charge``). 0: no budget of that kind. A store that
    throttles (429) is waited on by the retry wrapper as it asks (``retry-after``)."""

    def __init__(
        self,
        items_per_s: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        ru_per_s: float = 0.0,
        charged: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.items_per_s = items_per_s
        self.ru_per_s = ru_per_s if charged is not None else 0.0
        self.items = 0
        self.request_units = 0.0  # charged while this pacer counted (stores that report it)
        self.waited_s = 0.0
        self._sleep = sleep
        self._clock = clock
        self._charged = charged
        self._charged_before = charged() if charged is not None else 0.0
        self._due = clock()
        self._due_ru = self._due

    @classmethod
    def for_store(cls, settings: Settings, store: ProjectionStore) -> ReadPacer:
        """The budget of ``PROJECTORS_VERIFY_READ_BUDGET_*`` for reads of ``store`` (verify, repair,
        and the check before a rebuild's swap all read through one)."""
        return cls(settings.verify.read_budget_items_s, ru_per_s=settings.verify.read_budget_ru_s,
                   charged=charged_request_units(store))

    @property
    def budgeted(self) -> bool:
        return self.items_per_s > 0 or self.ru_per_s > 0

    def take(self, n: int) -> None:
        self.items += n
        now = self._clock()
        ahead = 0.0
        if self.items_per_s > 0 and n > 0:
            self._due = max(self._due, now - 1.0) + n / self.items_per_s
            ahead = self._due - now
        if self._charged is not None:
            # request units are known only after the reads they paid for: the debt is paid before the next
            total = self._charged()
            spent, self._charged_before = max(0.0, total - self._charged_before), total
            self.request_units += spent
            if self.ru_per_s > 0 and spent > 0:
                self._due_ru = max(self._due_ru, now - 1.0) + spent / self.ru_per_s
                ahead = max(ahead, self._due_ru - now)
        if ahead > 0.05:  # small debts are paid by the next sleep
            self._sleep(ahead)
            self.waited_s += ahead

    def paced(self, items: Iterable[tuple[ItemKey, Document]], every: int = 100) -> Iterator[tuple[ItemKey, Document]]:
        count = 0
        for item in items:
            count += 1
            if count == every:
                self.take(count)
                count = 0
            yield item
        self.take(count)

    def read(self, store: ProjectionStore, keys: Sequence[ItemKey]) -> dict[ItemKey, Document]:
        """Point reads of ``keys``, in chunks, each paid for before it is sent."""
        out: dict[ItemKey, Document] = {}
        for start in range(0, len(keys), POINT_READ_CHUNK):
            chunk = keys[start : start + POINT_READ_CHUNK]
            self.take(len(chunk))
            out.update(store.read_items(chunk))
        return out


def charged_request_units(store: ProjectionStore) -> Callable[[], float] | None:
    """The store's request units so far, for stores that report them (Cosmos), else None."""
    counts = request_counts(store)
    if counts is None:
        return None
    return lambda: float(counts().get("request_units", 0.0))


@dataclass(frozen=True)
class Sample:
    """A seeded random subset of the spec's keys: each key is in it when a hash of the seed and
    the key falls below ``fraction`` (the same seed and keys: the same subset, on any machine)."""

    fraction: float
    seed: int

    def __contains__(self, key: ItemKey) -> bool:
        h = hashlib.blake2b(f"{self.seed}\x00{key.collection}\x00{key.id}\x00{key.partition}".encode(), digest_size=8)
        return int.from_bytes(h.digest(), "big") < self.fraction * 2**64


def parse_fraction(text: str) -> float:
    """``1%`` or ``0.01``: a share of the keys, more than 0 and at most 1."""
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 < value <= 1:
        raise ValueError(f"a sample is more than 0 and at most 1 (or 100%), not {text!r}")
    return value


@dataclass
class Drift:
    """One projection's verdict. ``checked``: spec items compared in the full read (or the sample);
    ``held``: live items the store holds (of the sampled keys, in a sample); the drift counts are
    those of the last attempt."""

    projection: str
    checked: int = 0
    held: int = 0
    missing: int = 0
    extra: int = 0
    wrong: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    items_read: int = 0  # store items read in all, whole-store reads and point reads
    full_reads: int = 0  # whole-store reads
    attempts: int = 0  # the first check and every re-check of drifted keys
    budget_wait_s: float = 0.0  # time the read budget added
    request_units: float = 0.0  # what the reads cost, where the store reports it (Cosmos)
    digests_read: int = 0  # range digests the store computed (FalkorDB), instead of a whole read
    sample: Sample | None = None
    spec_items: int = 0  # spec items streamed (a sample is drawn from them)
    pipeline: PipelineWait | None = None
    keys: set[ItemKey] = field(default_factory=set, repr=False)  # the drifted keys, for a repair
    mode: str = "full"  # full, incremental or sample
    full_because: str | None = None  # why a verify that could be incremental ran in full
    checkpoint: cp.Checkpoint | None = None  # the checkpoint an incremental verify started from
    events: int = 0  # records read from the topics (incremental)
    store_changes: int = 0  # items the store's change feed named since the checkpoint (incremental, Cosmos)
    recorded: cp.Checkpoint | None = None  # the checkpoint this verify, clean, committed
    start: dict[cp.Position, int] = field(default_factory=dict, repr=False)  # the topics' ends at the start
    started_at: float = 0.0
    generation: int | None = None  # the live store generation at the start (incremental or recorded)

    @property
    def total(self) -> int:
        return self.missing + self.extra + self.wrong

    def note(
        self, kind: str, key: ItemKey, expected: Mapping[str, Any] | None, limit: int,
        held: Mapping[str, Any] | None = None,
    ) -> bool:
        """Keep ``key`` as one of the first ``limit`` examples (a wrong item with the fields that
        differ, ``held`` being the store's item); True when it was kept."""
        if len(self.samples) >= limit:
            return False
        sample: dict[str, Any] = {
            "kind": kind,
            "collection": key.collection,
            "id": key.id,
            "partition": key.partition,
            "expected": expected,
        }
        if kind == "wrong" and expected is not None and held is not None:
            sample["differs"] = field_diff(expected, held)
        self.samples.append(sample)
        return True

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "projection": self.projection,
            "checked": self.checked,
            "held": self.held,
            "missing": self.missing,
            "extra": self.extra,
            "wrong": self.wrong,
            "samples": self.samples,
            "itemsRead": self.items_read,
            "fullReads": self.full_reads,
            "attempts": self.attempts,
            "readBudgetWaitS": round(self.budget_wait_s, 1),
            "requestUnits": round(self.request_units, 2),
            "digestsRead": self.digests_read,
        }
        if self.sample is not None:
            out["sample"] = {"fraction": self.sample.fraction, "seed": self.sample.seed, "specItems": self.spec_items}
        if self.pipeline is not None:
            out["pipeline"] = self.pipeline.as_dict()
        out["mode"] = self.mode
        if self.mode == "incremental":
            out["checkpoint"] = None if self.checkpoint is None else self.checkpoint.as_dict()
            out["eventsRead"] = self.events
            out["storeChanges"] = self.store_changes
        if self.full_because is not None:
            out["fullBecause"] = self.full_because
        if self.recorded is not None:
            out["checkpointRecorded"] = self.recorded.as_dict()
        return out


def field_diff(expected: Mapping[str, Any], held: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The top-level fields in which ``held`` differs from ``expected``, each with both values
    (a side where the field is absent has no entry)."""
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(expected) | set(held)):
        if name in expected and name in held and canonical({"v": expected[name]}) == canonical({"v": held[name]}):
            continue
        out[name] = {side: doc[name] for side, doc in (("expected", expected), ("held", held)) if name in doc}
    return out


def describe_diff(differs: Mapping[str, Mapping[str, Any]], width: int = 40, fields: int = 6) -> str:
    """``field_diff`` in one line: ``likes: expected 3, held 2; body: expected "a", held (absent)``."""

    def shown(entry: Mapping[str, Any], side: str) -> str:
        if side not in entry:
            return "(absent)"
        text = json.dumps(entry[side], sort_keys=True, default=str, ensure_ascii=False)
        return text if len(text) <= width else text[: width - 1] + "…"

    parts = [
        f"{name}: expected {shown(entry, 'expected')}, held {shown(entry, 'held')}"
        for name, entry in list(differs.items())[:fields]
    ]
    if len(differs) > fields:
        parts.append(f"{len(differs) - fields} more field(s)")
    return "; ".join(parts) if parts else "no field differs now (changed since it was read)"


def _known(name: str) -> None:
    descriptor(name)


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
    _known(name)
    projection = get_projection(name, settings)
    pacer = pacer or ReadPacer.for_store(settings, store)
    digester = getattr(store, "digests", None)
    if use_digests and digester is not None and type(projection).judged is Projection.judged:
        by_digests = verify_by_digests(settings, projection, store, digester, sample_limit, pacer)
        if by_digests is not None:
            if collect is not None:
                collect |= by_digests.keys
            return by_digests
    read_before, waited_before, ru_before = pacer.items, pacer.waited_s, pacer.request_units
    drift = Drift(name, full_reads=1, attempts=1)
    held: dict[ItemKey, bytes] = {}
    at = datetime.now(UTC)
    unjudged: set[ItemKey] = set()  # within a margin of expiry (Projection.judged)
    wrong: dict[ItemKey, dict[str, Any]] = {}  # the wrong examples kept: their fields are read back
    for collection in projection.collections:
        for key, doc in pacer.paced(store.live_items(collection)):
            judged = projection.judged(doc, at)
            if judged is None:
                unjudged.add(key)
            else:
                held[key] = digest(judged)
    drift.held = len(held)
    with psycopg.connect(settings.pg.conninfo()) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
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
    drift.items_read = pacer.items - read_before
    drift.budget_wait_s = pacer.waited_s - waited_before
    drift.request_units = pacer.request_units - ru_before
    if collect is not None:
        collect |= drift.keys
    return drift


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
    _known(name)
    projection = get_projection(name, settings)
    pacer = pacer or ReadPacer.for_store(settings, store)
    read_before, waited_before, ru_before = pacer.items, pacer.waited_s, pacer.request_units
    drift = Drift(name, attempts=1, sample=sample, mode="sample")
    pending: dict[ItemKey, Document] = {}

    at = datetime.now(UTC)

    def check() -> None:
        keys = sorted(pending)
        have = pacer.read(store, keys)
        drift.held += len(have)
        for key in keys:
            doc, stored = pending[key], judged(projection, have.get(key), at)
            if stored is None:
                drift.missing += 1
                drift.note("missing", key, doc, sample_limit)
            elif digest(stored) != digest(doc):
                drift.wrong += 1
                drift.note("wrong", key, doc, sample_limit, held=stored)
            else:
                continue
            drift.keys.add(key)
        pending.clear()

    with psycopg.connect(settings.pg.conninfo()) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        for key, doc in projection.spec_all(PostgresSource(conn)):
            drift.spec_items += 1
            intended = projection.judged(doc, at)
            if key in sample and intended is not None:
                drift.checked += 1
                pending[key] = intended
                if len(pending) >= POINT_READ_CHUNK:
                    check()
    if pending:
        check()
    drift.items_read = pacer.items - read_before
    drift.budget_wait_s = pacer.waited_s - waited_before
    drift.request_units = pacer.request_units - ru_before
    return drift


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
    read_before, waited_before, ru_before = pacer.items, pacer.waited_s, pacer.request_units
    keys = sorted(drift.keys)
    with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
        source = PostgresSource(conn)
        with source.read():
            spec = spec_of(projection.spec_for, keys, source)
    have = pacer.read(store, keys)
    after = dataclasses.replace(
        drift, missing=0, extra=0, wrong=0, samples=[], keys=set(), attempts=drift.attempts + 1
    )
    compare(after, keys, spec, have, sample_limit, projection)
    after.items_read += pacer.items - read_before
    after.budget_wait_s += pacer.waited_s - waited_before
    after.request_units += pacer.request_units - ru_before
    return after


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
    digester: Any,
    sample_limit: int,
    pacer: ReadPacer,
) -> Drift | None:
    """A whole-store verify by range digests (``stores/digests.py``): the spec is streamed
    once and hashed into buckets; the store returns each bucket's item count and sum of hashes;
    only the keys of buckets that differ (the spec's and the store's) are compared, with their
    spec now and point reads. None when so much differs that one whole read is cheaper."""
    read_before, waited_before, ru_before = pacer.items, pacer.waited_s, pacer.request_units
    drift = Drift(projection.name, full_reads=0, attempts=1)
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
        n = bucket_count(max(spec_total, digester.count(collection)))
        spec: dict[int, tuple[int, int]] = {}
        for bucket, (count, total) in sums[collection].items():
            have = spec.get(bucket & (n - 1), (0, 0))
            spec[bucket & (n - 1)] = (have[0] + count, have[1] + total)
        held = digester.digests(collection, n)
        drift.digests_read += len(held)
        drift.held += sum(count for count, _total in held.values())
        differing = sorted(b for b in set(spec) | set(held) if spec.get(b) != held.get(b))
        if n > 1 and len(differing) > n * DIGEST_MOST_DIFFERING:
            return None
        if not differing:
            continue
        chosen = set(differing)
        keys = {i for bucket, some in ids[collection].items() if bucket & (n - 1) in chosen for i in some}
        keys.update(digester.ids_in(collection, n, differing))
        candidates += [ItemKey(collection, i) for i in sorted(keys)]
    drift.spec_items = drift.checked
    if candidates:
        with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
            source = PostgresSource(conn)
            with source.read():
                intended = spec_of(projection.spec_for, candidates, source)
        compare(drift, candidates, intended, pacer.read(store, candidates), sample_limit, projection)
    drift.items_read = pacer.items - read_before
    drift.budget_wait_s = pacer.waited_s - waited_before
    drift.request_units = pacer.request_units - ru_before
    return drift


def judged(projection: Projection, doc: Document | None, at: datetime) -> Document | None:
    return None if doc is None else projection.judged(doc, at)


def compare(
    drift: Drift,
    keys: Sequence[ItemKey],
    spec: Mapping[ItemKey, Document],
    have: Mapping[ItemKey, Document],
    sample_limit: int,
    projection: Projection,
) -> None:
    """Count into ``drift`` how ``have`` (the store) differs from ``spec`` on ``keys`` (an item
    within a margin of its expiry, on either side, is not judged)."""
    at = datetime.now(UTC)
    for key in keys:
        doc, stored = judged(projection, spec.get(key), at), judged(projection, have.get(key), at)
        if (key in spec and doc is None) or (key in have and stored is None):
            continue
        if doc is not None and stored is None:
            drift.missing += 1
            drift.note("missing", key, doc, sample_limit)
        elif doc is None and stored is not None:
            drift.extra += 1
            drift.note("extra", key, None, sample_limit)
        elif doc is not None and stored is not None and digest(doc) != digest(stored):
            drift.wrong += 1
            drift.note("wrong", key, doc, sample_limit, held=stored)
        else:
            continue
        drift.keys.add(key)


class CountedReads:
    """A store whose reads (``read_items``, ``find_keys``) are counted and paced by ``pacer``: what a
    projection's ``expand`` reads of the store, in an incremental verify."""

    def __init__(self, store: ProjectionStore, pacer: ReadPacer) -> None:
        self._store = store
        self._pacer = pacer

    def read_items(self, keys: Sequence[ItemKey]) -> Mapping[ItemKey, Document]:
        self._pacer.take(len(keys))
        return self._store.read_items(keys)

    def find_keys(self, collection: str, equals: Mapping[str, str], partition: str | None = None) -> list[ItemKey]:
        found = self._store.find_keys(collection, equals, partition)
        self._pacer.take(len(found))
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


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
    _known(name)
    projection = get_projection(name, settings)
    pacer = pacer or ReadPacer.for_store(settings, store)
    read_before, waited_before, ru_before = pacer.items, pacer.waited_s, pacer.request_units
    drift = Drift(name, attempts=1, mode="incremental", checkpoint=since)
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
                    found, _fresh = projection.targets(
                        touched.touches, source, cast(ProjectionStore, CountedReads(store, pacer))
                    )
                keys = sorted(set(found) | changed)
                spec = spec_of(projection.spec_for, keys, source)
    have = pacer.read(store, keys)
    drift.checked = drift.spec_items = len(keys)
    drift.held = len(have)
    compare(drift, keys, spec, have, sample_limit, projection)
    drift.items_read = pacer.items - read_before
    drift.budget_wait_s = pacer.waited_s - waited_before
    drift.request_units = pacer.request_units - ru_before
    return drift


# the feed is read from this much before the checkpoint: Cosmos keeps a write's time (`_ts`) in whole
# seconds, and the store's clock may differ a little from this machine's
FEED_MARGIN_S = 2.0


def store_changes(collections: Iterable[str], store: ProjectionStore, since: float, pacer: ReadPacer) -> set[ItemKey]:
    """The keys of the items written to the store at or after ``since`` (unix time), by anyone,
    where the store keeps a change feed (``changed_since``: Cosmos); none where it does not. Every
    item the feed returns counts as read."""
    feed = getattr(store, "changed_since", None)
    if feed is None:
        return set()
    out: set[ItemKey] = set()
    for collection in collections:
        found = feed(collection, since)
        pacer.take(len(found))
        out.update(found)
    return out


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
        _known(name)
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
