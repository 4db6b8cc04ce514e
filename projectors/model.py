"""The vocabulary shared by projections (pure), stores (I/O) and the runtime that joins them.

A projection never writes: it names the items a change may have touched (:class:`ItemKey`) and turns
source rows into item documents. The runtime reads the intended state of those items from the
source of truth, and hands the store :class:`Put` and :class:`Remove` operations, each carrying the
source version: the *read ticket* of the PostgreSQL read that computed it (``source.py``: a
sequence value taken before a REPEATABLE READ snapshot, so a later ticket always saw at least as
much of the source). A store applies an operation only when its version is newer than what it holds
for that item (tombstones included), so replays, duplicates and reorderings change nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from projectors.errors import Severity

Document = Mapping[str, Any]


def table_topic(prefix: str, table: str) -> str:
    """The topic capture publishes ``table``'s changes to (Debezium's ``<prefix>.<schema>.<table>``)."""
    return f"{prefix}.public.{table}"


class ItemKey(NamedTuple):
    """The identity of one projected item (a named tuple: hashed and ordered in C, which matters at
    hundreds of thousands of keys a second).

    ``collection``: a Cosmos container (``userFeed``, ``counters``), a graph node label or
    relationship type (``User``, ``FOLLOWS``...) or a search index (``posts``, ``users``).
    ``id``: deterministic, derived from the source row's key only.
    ``partition``: the partition key value where the store has one (Cosmos), else ``""``.
    """

    collection: str
    id: str
    partition: str = ""


@dataclass(frozen=True, slots=True)
class Put:
    """Make the item equal to ``doc`` (its fields; the store adds its version bookkeeping).
    ``fresh``: the projection's guess whether the item is new (a new post's fan-out: True; an edit:
    False; None: no guess). A store that writes without reading first tries the likelier write
    first; the outcome does not depend on it."""

    key: ItemKey
    version: int
    doc: Document = field(compare=False)
    fresh: bool | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Remove:
    """Delete the item, leaving a tombstone at ``version`` so an older Put cannot bring it back."""

    key: ItemKey
    version: int


Operation = Put | Remove


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What a store did with one batch. ``failures`` are per item; the others were applied or
    skipped as stale. ``changed`` counts the operations that changed the store's content."""

    changed: int = 0
    skipped_stale: int = 0
    unchanged: int = 0
    failures: Sequence[ItemFailure] = ()


@dataclass(frozen=True, slots=True)
class ItemFailure:
    """One operation a store did not apply, with the error and its severity (retriable: sent
    again; refused: dead-lettered; configuration: the worker stops)."""

    op: Operation
    error: Exception
    severity: Severity

    @property
    def retriable(self) -> bool:
        return self.severity is Severity.RETRIABLE


@runtime_checkable
class HeldItems(Protocol):
    """What a projection may read of its store while it plans (``Projection.expand``): point reads
    and keys by field. Verify hands it a counted, paced view of the store with these two only."""

    def read_items(self, keys: Sequence[ItemKey]) -> Mapping[ItemKey, Document]:
        """The live documents of ``keys`` (absent: no item or a tombstone), by point reads: what
        ``verify`` re-checks and samples with. A document is what ``live_items`` gives."""

    def find_keys(
        self, collection: str, equals: Mapping[str, str], partition: str | None = None
    ) -> list[ItemKey]:
        """Keys of the live items whose fields equal ``equals`` (within ``partition`` when given):
        how a projection finds what the store holds for a post or an author before removing it."""


@runtime_checkable
class ProjectionStore(HeldItems, Protocol):
    """A store adapter: narrow, batch-shaped, reporting per-item failures."""

    def ensure_schema(self) -> None:
        """Create containers, indexes or constraints; idempotent."""

    def apply(self, ops: Sequence[Operation]) -> ApplyResult:
        """Apply a batch with the version guard. Never raises for one bad item: reports it."""

    def live_items(self, collection: str) -> Iterator[tuple[ItemKey, Document]]:
        """Every live item of a collection (tombstones excluded), streamed, for ``verify``."""

    def ping(self) -> bool:
        """True when the store answers (readiness)."""

    def drop(self) -> None:
        """Delete everything this store holds (``rebuild`` drops the generation it replaced)."""

    def close(self) -> None: ...


# -- what some stores can do beyond ProjectionStore (checked with isinstance, never with getattr) ---


class RangeDigester(Protocol):
    """Range digests of a collection computed where the items are (``stores/digests.py``'s scheme):
    verify compares them with the spec's and reads only the ranges that differ."""

    def count(self, collection: str) -> int: ...

    def digests(self, collection: str, buckets: int) -> dict[int, tuple[int, int]]:
        """``{bucket: (items, sum of item hashes)}`` over ``buckets`` (a power of two)."""

    def ids_in(self, collection: str, buckets: int, chosen: list[int]) -> list[str]:
        """The ids of the items in the ``chosen`` buckets."""


@runtime_checkable
class RangeDigests(Protocol):
    """A store whose items can be digested by range (FalkorDB, SQLite FTS5); ``digests`` is None
    when this instance cannot (a graph on Neo4j)."""

    @property
    def digests(self) -> RangeDigester | None: ...


@runtime_checkable
class ChangeFeed(Protocol):
    """A store that keeps a change feed (Cosmos): the items written since a time, by anyone."""

    def changed_since(self, collection: str, since: float) -> list[ItemKey]: ...


class RequestSnapshot(Protocol):
    def snapshot(self) -> Mapping[str, float]:
        """Requests sent so far, by kind (and ``request_units`` where the store charges them)."""


@runtime_checkable
class CountsRequests(Protocol):
    """A store that counts its requests (Cosmos): the worker's metrics and verify's budget read them."""

    @property
    def requests(self) -> RequestSnapshot: ...


@runtime_checkable
class BulkLoad(Protocol):
    """A store with a faster path for new items into an empty store (a rebuild's first fill)."""

    def load(self, ops: Sequence[Operation]) -> ApplyResult: ...


@runtime_checkable
class Stoppable(Protocol):
    """A store (or its wrapper) that waits on something and can be told to stop waiting."""

    def stop(self) -> None: ...


@runtime_checkable
class ReportsHealth(Protocol):
    """A store (its retry wrapper, or the worker's view of a child process's store) that knows
    whether its last call succeeded and how many times it retried: readiness and metrics."""

    @property
    def healthy(self) -> bool: ...

    @property
    def retries(self) -> int: ...


@runtime_checkable
class CachedItems(Protocol):
    """A store that holds some items only while readers use them (Redis's feed pages): a cache the
    projection keeps exact. It says which of some keys it holds now (a change refreshes those only),
    and which keys readers asked for and it does not hold yet (the worker then writes them)."""

    def held_keys(self, keys: Sequence[ItemKey]) -> set[ItemKey]: ...

    def requested(self, wait_s: float) -> list[ItemKey]: ...
