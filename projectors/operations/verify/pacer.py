"""How verify reads a store: counted, and paced to a read budget (``PROJECTORS_VERIFY_READ_BUDGET_*``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from projectors.model import CachedItems, Document, ItemKey, ProjectionStore
from projectors.operations.verify.drift import Drift
from projectors.runtime.stats import request_counts
from projectors.settings import Settings

POINT_READ_CHUNK = 500  # keys per point-read call


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

    @contextlib.contextmanager
    def charged_to(self, drift: Drift) -> Iterator[Drift]:
        """Add what the reads inside the block cost (items, budget wait, request units) to ``drift``:
        every check mode's bookkeeping, in one place."""
        items, waited, units = self.items, self.waited_s, self.request_units
        try:
            yield drift
        finally:
            drift.items_read += self.items - items
            drift.budget_wait_s += self.waited_s - waited
            drift.request_units += self.request_units - units

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


class CountedReads:
    """The reads a projection's ``expand`` makes of a store (``read_items``, ``find_keys``: the
    ``HeldItems`` a projection is given), counted and paced by ``pacer``; an incremental verify
    expands its events' touches through it. Nothing else of the store is reachable through it."""

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

    def held_keys(self, keys: Sequence[ItemKey]) -> set[ItemKey]:
        """Which of ``keys`` a cache holds (``CachedItems``; none for any other store)."""
        self._pacer.take(len(keys))
        return self._store.held_keys(keys) if isinstance(self._store, CachedItems) else set()

    def requested(self, wait_s: float) -> list[ItemKey]:
        return []  # a verify answers no reader
