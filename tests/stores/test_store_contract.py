"""One contract for every store adapter, run against real servers: Cosmos (REST server), FalkorDB
(native client), SQLite FTS5; Neo4j and Meilisearch join the parameters when
PROJECTORS_TEST_NEO4J_URI / PROJECTORS_TEST_MEILI_URL point at a reachable server (they are not
listed, rather than skipped, when not)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from projectors.errors import RetriableError
from projectors.projections.model import ApplyResult, Document, ItemKey, ProjectionStore, Put, Remove
from projectors.settings import CosmosSettings, FalkorSettings
from projectors.stores.documents import CosmosStore
from projectors.stores.graph_transports import falkordb_store, neo4j_store
from projectors.stores.search_fts import SqliteSearchStore
from projectors.stores.search_meili import MeilisearchStore
from tests.conftest import StackHandle, free_port


@dataclass
class Backend:
    """A store with one collection and how to make a document for an item of it."""

    store: ProjectionStore
    collection: str
    make: Callable[[str, str], Document]  # (item id, content variant) -> document
    partition: Callable[[str], str] = lambda _i: ""

    def key(self, item: str) -> ItemKey:
        return ItemKey(self.collection, self.item_id(item), self.partition(item))

    def item_id(self, item: str) -> str:
        return item

    def put(self, item: str, version: int, variant: str = "a") -> Put:
        return Put(self.key(item), version, self.make(item, variant))

    def remove(self, item: str, version: int) -> Remove:
        return Remove(self.key(item), version)

    def live(self) -> dict[str, Document]:
        return {k.id: dict(d) for k, d in self.store.live_items(self.collection)}


def _uuid(item: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, item))


def cosmos_backend(handle: StackHandle) -> Backend:
    settings = handle.settings.cosmos.model_copy(update={"database": f"contract{uuid.uuid4().hex[:8]}"})
    store = CosmosStore(settings, {"counters": "/subjectId"})
    store.ensure_schema()

    def make(item: str, variant: str) -> Document:
        return {"id": f"{item}:likes", "subjectId": item, "kind": "likes", "count": len(variant)}

    backend = Backend(store, "counters", make, partition=lambda i: i)
    backend.item_id = lambda i: f"{i}:likes"  # type: ignore[method-assign]
    return backend


def graph_backend(store: ProjectionStore) -> Backend:
    store.ensure_schema()
    return Backend(store, "User", lambda i, v: {"id": i, "handle": f"{i}-{v}"})


def sqlite_backend(tmp: Path) -> Backend:
    store = SqliteSearchStore(tmp / "search.sqlite3")
    return Backend(
        store,
        "users",
        lambda i, v: {"id": i, "handle": i, "displayName": f"name {v}", "bio": "likes graphs and kafka"},
    )


def meili_backend() -> Backend:
    store = MeilisearchStore(
        os.environ["PROJECTORS_TEST_MEILI_URL"], os.environ.get("PROJECTORS_TEST_MEILI_KEY", ""),
        prefix=f"t{uuid.uuid4().hex[:8]}_",
    )
    store.ensure_schema()
    return Backend(store, "users", lambda i, v: {"id": i, "handle": i, "displayName": f"name {v}", "bio": "b"})


BACKENDS = ["cosmos", "falkordb", "sqlite"]
if os.environ.get("PROJECTORS_TEST_NEO4J_URI"):
    BACKENDS.append("neo4j")
if os.environ.get("PROJECTORS_TEST_MEILI_URL"):
    BACKENDS.append("meilisearch")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    kind = request.param
    if kind == "cosmos":
        b = cosmos_backend(request.getfixturevalue("store_servers"))
    elif kind == "falkordb":
        handle: StackHandle = request.getfixturevalue("store_servers")
        b = graph_backend(falkordb_store(handle.settings.falkordb, graph=f"contract{uuid.uuid4().hex[:8]}"))
    elif kind == "neo4j":
        store = neo4j_store(
            os.environ["PROJECTORS_TEST_NEO4J_URI"],
            (
                os.environ.get("PROJECTORS_TEST_NEO4J_USER", "neo4j"),
                os.environ.get("PROJECTORS_TEST_NEO4J_PASSWORD", ""),
            ),
            os.environ.get("PROJECTORS_TEST_NEO4J_DATABASE", "neo4j"),
        )
        store.query("MATCH (n) DETACH DELETE n")
        b = graph_backend(store)
    elif kind == "sqlite":
        b = sqlite_backend(tmp_path)
    else:
        b = meili_backend()
    yield b
    b.store.close()


def totals(r: ApplyResult) -> tuple[int, int, int, int]:
    return r.changed, r.skipped_stale, r.unchanged, len(r.failures)


def test_put_then_read_back_exactly_the_document(backend: Backend) -> None:
    r = backend.store.apply([backend.put("u1", 10), backend.put("u2", 10)])
    assert totals(r) == (2, 0, 0, 0)
    live = backend.live()
    assert live[backend.item_id("u1")] == backend.make("u1", "a")
    assert set(live) == {backend.item_id("u1"), backend.item_id("u2")}


def test_an_older_or_equal_version_is_skipped(backend: Backend) -> None:
    backend.store.apply([backend.put("u1", 10, "new")])
    r = backend.store.apply([backend.put("u1", 9, "old"), backend.put("u1", 10, "same-version")])
    assert r.skipped_stale == 2 and r.changed == 0
    assert backend.live()[backend.item_id("u1")] == backend.make("u1", "new")


def test_a_remove_leaves_a_tombstone_that_an_older_put_cannot_pass(backend: Backend) -> None:
    backend.store.apply([backend.put("u1", 10)])
    assert totals(backend.store.apply([backend.remove("u1", 20)])) == (1, 0, 0, 0)
    assert backend.live() == {}
    assert backend.store.apply([backend.put("u1", 15, "late")]).skipped_stale == 1
    assert backend.live() == {}
    # never seen before: still a tombstone
    assert totals(backend.store.apply([backend.remove("ghost", 30)])) == (0, 0, 1, 0)
    assert backend.store.apply([backend.put("ghost", 29)]).skipped_stale == 1
    assert backend.live() == {}
    # a newer put brings it back
    assert backend.store.apply([backend.put("u1", 21, "back")]).changed == 1
    assert backend.live()[backend.item_id("u1")] == backend.make("u1", "back")


def test_replaying_a_batch_changes_nothing_and_same_content_is_unchanged(backend: Backend) -> None:
    batch = [backend.put(f"u{i}", 10) for i in range(5)] + [backend.remove("u9", 10)]
    backend.store.apply(batch)
    before = backend.live()
    assert totals(backend.store.apply(batch)) == (0, 6, 0, 0)
    newer = [backend.put(f"u{i}", 11) for i in range(5)]
    assert totals(backend.store.apply(newer)) == (0, 0, 5, 0)
    assert backend.live() == before


def test_duplicates_in_one_batch_keep_the_highest_version(backend: Backend) -> None:
    r = backend.store.apply([backend.put("u1", 5, "v5"), backend.put("u1", 7, "v7"), backend.put("u1", 6, "v6")])
    assert r.changed == 1 and r.skipped_stale == 2
    assert backend.live()[backend.item_id("u1")] == backend.make("u1", "v7")


def test_find_keys_by_field(backend: Backend) -> None:
    backend.store.apply([backend.put("u1", 1), backend.put("u2", 1, "bb"), backend.remove("u3", 1)])
    doc = backend.make("u2", "bb")
    field = next(k for k in doc if k not in ("id", "subjectId") and doc[k] != backend.make("u1", "a").get(k))
    found = backend.store.find_keys(backend.collection, {field: doc[field]})
    assert [k.id for k in found] == [backend.item_id("u2")]
    assert backend.store.ping()


def test_a_large_batch(backend: Backend) -> None:
    n = 300 if backend.collection == "counters" else 3000
    r = backend.store.apply([backend.put(f"u{i}", 1) for i in range(n)])
    assert totals(r) == (n, 0, 0, 0)
    assert len(backend.live()) == n


def test_drop_removes_everything_and_the_store_can_be_created_again(backend: Backend) -> None:
    backend.store.apply([backend.put("a", 5), backend.put("b", 5), backend.remove("c", 5)])
    assert set(backend.live()) == {backend.item_id("a"), backend.item_id("b")}
    backend.store.drop()
    backend.store.drop()  # dropping what is not there is not an error
    backend.store.ensure_schema()
    assert backend.live() == {}
    # the tombstone went too: a put older than it is accepted now
    assert totals(backend.store.apply([backend.put("c", 1)])) == (1, 0, 0, 0)


@pytest.mark.parametrize("kind", ["cosmos", "falkordb"])
def test_a_server_that_is_down_gives_retriable_failures(kind: str) -> None:
    closed = free_port()
    store: ProjectionStore
    if kind == "cosmos":
        store = CosmosStore(CosmosSettings(endpoint=f"http://127.0.0.1:{closed}"), {"counters": "/subjectId"})
        op: Any = Put(ItemKey("counters", "s:likes", "s"), 1, {"id": "s:likes", "subjectId": "s"})
    else:
        store = falkordb_store(FalkorSettings(port=closed))
        op = Put(ItemKey("User", "u"), 1, {"id": "u", "handle": "h"})
    result = store.apply([op])
    assert len(result.failures) == 1 and result.failures[0].retriable
    assert not store.ping()
    with pytest.raises(RetriableError):  # the retry wrapper retries it (a rebuild's first drop)
        store.drop()


def test_cosmos_items_alone_in_their_partition_are_created_first_while_they_are_new(
    store_servers: StackHandle,
) -> None:
    """A fan-out writes items that do not exist yet: they are created without a read. Once items
    mostly exist (a replay, counters), the store reads first again. The counts are the same either way."""
    backend = cosmos_backend(store_servers)
    store = backend.store
    assert isinstance(store, CosmosStore)
    try:
        fanout = [backend.put(f"f{i}", 10) for i in range(30)]
        assert totals(store.apply(fanout)) == (30, 0, 0, 0)
        assert store._new_share["counters"] >= 0.5  # still creating first
        assert totals(store.apply(fanout)) == (0, 30, 0, 0)  # a replay: every create met its item
        assert store._new_share["counters"] < 0.5  # reads first now
        assert totals(store.apply([backend.put(f"f{i}", 11) for i in range(30)])) == (0, 0, 30, 0)
        removals = [backend.remove(f"f{i}", 12) for i in range(5)] + [backend.remove(f"g{i}", 12) for i in range(5)]
        assert totals(store.apply(removals)) == (5, 0, 5, 0)
        assert totals(store.apply([backend.put(f"n{i}", 1) for i in range(30)])) == (30, 0, 0, 0)
        assert store._new_share["counters"] >= 0.5  # new items again: back to creating first
        assert totals(store.apply([backend.put("g1", 11), backend.put("f1", 13, "b")])) == (1, 1, 0, 0)
        live = backend.live()
        assert set(live) == {f"f{i}:likes" for i in range(5, 30)} | {f"n{i}:likes" for i in range(30)} | {"f1:likes"}
        assert live["f1:likes"] == backend.make("f1", "b")
    finally:
        store.close()


def test_cosmos_reads_a_few_items_of_a_partition_by_point_reads_and_many_by_one_query(
    store_servers: StackHandle,
) -> None:
    """Partitions of 1, 3 and 12 items in one batch (point reads up to POINT_READS_UP_TO, a query
    beyond): new, existing, stale and unchanged items are decided the same by both paths."""
    from projectors.stores.documents import POINT_READS_UP_TO

    settings = store_servers.settings.cosmos.model_copy(update={"database": f"contract{uuid.uuid4().hex[:8]}"})
    store = CosmosStore(settings, {"counters": "/subjectId"})
    store.ensure_schema()
    sizes = {"one": 1, "few": 3, "many": 12}
    assert sizes["few"] <= POINT_READS_UP_TO < sizes["many"]

    def put(subject: str, n: int, version: int, count: int = 0) -> Put:
        key = ItemKey("counters", f"{subject}:k{n}", subject)
        return Put(key, version, {"id": key.id, "subjectId": subject, "kind": f"k{n}", "count": count})

    try:
        first = [put(s, n, 5) for s, size in sizes.items() for n in range(size)]
        assert totals(store.apply(first)) == (16, 0, 0, 0)
        # per partition: k0 older (stale), k1 newer with the same content (unchanged), the rest
        # newer with a new count (changed), and one more item that is new (changed)
        second = [
            put(s, n, 4 if n == 0 else 6, count=7 if n >= 2 or n == size else 0)
            for s, size in sizes.items()
            for n in range(size + 1)
        ]
        assert totals(store.apply(second)) == (1 + 2 + 11, 3, 2, 0)
        live = {k.id: d for k, d in store.live_items("counters")}
        assert len(live) == 16 + len(sizes)
        for s, size in sizes.items():
            counts = [live[f"{s}:k{n}"]["count"] for n in range(size + 1)]
            assert counts == [0] + [0 if n == 1 else 7 for n in range(1, size)] + [7], (s, counts)
        assert totals(store.apply(second)) == (0, len(second), 0, 0)  # a replay: all equal or older
    finally:
        store.drop()
        store.close()
