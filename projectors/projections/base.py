"""What every projection is: tables it reads, collections it writes, and three functions.

- ``touched(event)`` (pure): what a change may have affected, named from the event alone;
- ``expand(...)``: those touches -> the exact item keys (may look up the source and what the store
  holds, e.g. a post's current followers);
- ``spec_for(keys)`` / ``spec_all()``: the intended documents, read from PostgreSQL with the SQL
  that is the projection's spec (docs/projections.md). ``verify`` uses ``spec_all``.

``plan`` joins them: a ``Put`` for every key the spec has, a ``Remove`` for every key it has not,
all with the read's ticket as version. ``ops_for`` is the pure heart of it.
"""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from projectors.events.models import ChangeEvent
from projectors.model import Document, HeldItems, ItemKey, Operation, Put, Remove
from projectors.source import PostgresSource

Touch = Hashable


def iso(value: datetime) -> str:
    """Timestamps in every projection: UTC, microseconds, ``Z`` (fixed width, so it sorts as text)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ops_for(
    keys: Iterable[ItemKey], spec: Mapping[ItemKey, Document], version: int, fresh: Collection[ItemKey] | None = None
) -> list[Operation]:
    """The operations that make the store hold exactly ``spec`` for ``keys`` (``fresh``: the keys
    likely new, when the projection can tell; every other Put is then likely an existing item)."""
    ops: list[Operation] = []
    for key in sorted(set(keys)):
        doc = spec.get(key)
        if doc is None:
            ops.append(Remove(key, version))
        else:
            ops.append(Put(key, version, doc, None if fresh is None else key in fresh))
    return ops


@dataclass(frozen=True)
class ItemKind:
    """One kind of item a projection holds, with the SQL that defines it.

    ``sql`` selects the item rows with a ``{where}`` placeholder; ``key_where`` is the condition that
    restricts it to given keys, with parameters from ``key_params``; ``item`` turns a row into its key
    and document.
    """

    collection: str
    sql: str
    key_where: str
    key_params: Callable[[Sequence[ItemKey]], Sequence[Any]]
    item: Callable[[tuple[Any, ...]], tuple[ItemKey, Document]]
    suffix: str = ""  # when several kinds share a collection: the id suffix that tells them apart
    uuid_parts: int = 1  # leading ':'-separated parts of the id that are UUIDs (others are not items)
    all_sql: str | None = None  # every item, when ``sql`` cannot say it with ``where = TRUE``

    def for_keys(self, source: PostgresSource, keys: Sequence[ItemKey]) -> dict[ItemKey, Document]:
        if self.uuid_parts:
            ids = uuid_prefix(self.uuid_parts)
            wanted = {k for k in keys if ids.match(k.id)}
        else:
            wanted = set(keys)
        if not wanted:
            return {}
        out: dict[ItemKey, Document] = {}
        for row in source.rows(self.sql.format(where=self.key_where), self.key_params(list(wanted))):
            key, doc = self.item(row)
            if key in wanted:
                out[key] = doc
        return out

    def all(self, source: PostgresSource) -> Iterator[tuple[ItemKey, Document]]:
        for row in source.stream(self.all_sql or self.sql.format(where="TRUE")):
            yield self.item(row)


UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@functools.cache
def uuid_prefix(parts: int) -> re.Pattern[str]:
    """Ids whose first ``parts`` ':'-separated parts are UUIDs (one regex match per key)."""
    uuid = UUID_TEXT.pattern
    return re.compile(uuid + f"(?::{uuid})" * (parts - 1) + "(?::|$)")


def is_uuid(value: str) -> bool:
    """Ids that are not UUIDs in PostgreSQL's text form (what every id the projections derive is)
    cannot be source rows: a store may hold anything, and verify --repair removes such items."""
    return UUID_TEXT.fullmatch(value) is not None


def split_ids(keys: Sequence[ItemKey], parts: int) -> list[list[str]]:
    """Composite ids (``a:b[:c]``) -> one array per part, for ``unnest(%s, %s, ...)``."""
    columns: list[list[str]] = [[] for _ in range(parts)]
    for key in keys:
        for i, value in enumerate(key.id.split(":", parts - 1)):
            columns[i].append(value)
    return columns


class Projection(ABC):
    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]
    collections: ClassVar[tuple[str, ...]]
    # collections the store holds only while readers use them (a cache the projection keeps exact:
    # ``CachedItems``): not in ``spec_all``; verify judges the items held, by ``spec_for``
    cached: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def touched(self, event: ChangeEvent) -> list[Touch]:
        """What ``event`` may have changed (pure)."""

    def expand(
        self, touches: Collection[Touch], source: PostgresSource, held: HeldItems
    ) -> set[ItemKey]:
        """Touches -> item keys. By default touches are item keys already."""
        return {t for t in touches if isinstance(t, ItemKey)}

    @abstractmethod
    def spec_for(self, keys: Collection[ItemKey], source: PostgresSource) -> dict[ItemKey, Document]:
        """The intended documents of ``keys`` (absent: the item must not exist)."""

    @abstractmethod
    def spec_all(self, source: PostgresSource) -> Iterator[tuple[ItemKey, Document]]:
        """Every item the projection must hold, streamed."""

    def targets(
        self, touches: Collection[Touch], source: PostgresSource, held: HeldItems
    ) -> tuple[set[ItemKey], Collection[ItemKey] | None]:
        """:meth:`expand`, and the keys likely new where the projection can tell (None: it cannot);
        a store that writes without reading first tries the likelier write first."""
        return self.expand(touches, source, held), None

    def judged(self, doc: Document, at: datetime) -> Document | None:
        """``doc`` as ``verify`` judges it at ``at`` (held and intended alike): None when it is not
        judged at all (an item within a margin of its expiry). Default: as it is."""
        return doc

    def plan(self, touches: Collection[Touch], source: PostgresSource, held: HeldItems) -> list[Operation]:
        """Read the intended state of everything ``touches`` names (one ticket, one snapshot)."""
        with source.read() as ticket:
            keys, fresh = self.targets(touches, source, held)
            spec = self.spec_for(keys, source) if keys else {}
        return ops_for(keys, spec, ticket, fresh)


@functools.cache
def kinds_by_collection(kinds: tuple[ItemKind, ...]) -> dict[str, list[tuple[int, ItemKind]]]:
    """Each collection's kinds with their index (several kinds can share one, told by suffix)."""
    out: dict[str, list[tuple[int, ItemKind]]] = defaultdict(list)
    for i, kind in enumerate(kinds):
        out[kind.collection].append((i, kind))
    return dict(out)


class KindsProjection(Projection):
    """A projection whose items are a fixed set of :class:`ItemKind` (one per collection)."""

    kinds: ClassVar[tuple[ItemKind, ...]]

    def spec_for(self, keys: Collection[ItemKey], source: PostgresSource) -> dict[ItemKey, Document]:
        by_kind: dict[int, list[ItemKey]] = defaultdict(list)
        owners = kinds_by_collection(self.kinds)
        for key in keys:
            for i, kind in owners.get(key.collection, ()):
                if key.id.endswith(kind.suffix):
                    by_kind[i].append(key)
                    break
        out: dict[ItemKey, Document] = {}
        for i, wanted in sorted(by_kind.items()):
            out.update(self.kinds[i].for_keys(source, wanted))
        return out

    def spec_all(self, source: PostgresSource) -> Iterator[tuple[ItemKey, Document]]:
        for kind in self.kinds:
            yield from kind.all(source)
