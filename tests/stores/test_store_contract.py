"""One contract for every store adapter, run against real servers: Cosmos (REST server), FalkorDB
(native client), Redis (profiles' hashes), SQLite FTS5; Neo4j and Meilisearch join the parameters when
PROJECTORS_TEST_NEO4J_URI / PROJECTORS_TEST_MEILI_URL point at a reachable server (they are not
listed, rather than skipped, when not)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from projectors.errors import RetriableError
from projectors.model import ApplyResult, Document, ItemKey, Operation, ProjectionStore, Put, Remove
from projectors.settings import CosmosSettings, FalkorSettings, RedisSettings
from projectors.stores.cosmos import CosmosStore
from projectors.stores.graph_transports import falkordb_store, neo4j_store
from projectors.stores.redis_store import RedisStore
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
    # Cosmos writes without reading first: a Remove of an item that is not there writes nothing
    # (no tombstone), and a newer Put of the same content is a write, not "unchanged"
    blind_writes: bool = False

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

    backend = Backend(store, "counters", make, partition=lambda i: i, blind_writes=True)
    backend.item_id = lambda i: f"{i}:likes"  # type: ignore[method-assign]
    return backend


def graph_backend(store: ProjectionStore) -> Backend:
    store.ensure_schema()
    return Backend(store, "User", lambda i, v: {"id": i, "handle": f"{i}-{v}"})


def redis_store(settings: RedisSettings, prefix: str) -> RedisStore:
    return RedisStore(
        settings.host, settings.port, prefix, username=settings.worker_user,
        password=settings.worker_password.get_secret_value(),
    )


def redis_backend(handle: StackHandle) -> Backend:
    store = redis_store(handle.settings.redis, f"{handle.settings.redis.prefix}-t{uuid.uuid4().hex[:8]}:")
    store.ensure_schema()

    def make(item: str, variant: str) -> Document:
        return {"handle": item, "displayName": f"name {variant}", "bio": "", "followers": len(variant),
                "following": 0, "posts": 3}

    return Backend(store, "profile", make)


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


BACKENDS = ["cosmos", "falkordb", "redis", "sqlite"]
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
        store.transport.run("MATCH (n) DETACH DELETE n")
        b = graph_backend(store)
    elif kind == "redis":
        b = redis_backend(request.getfixturevalue("store_servers"))
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
    # never seen before: still a tombstone, except where writes are blind (nothing is written)
    assert totals(backend.store.apply([backend.remove("ghost", 30)])) == (0, 0, 1, 0)
    if backend.blind_writes:
        assert backend.store.apply([backend.put("ghost", 29)]).changed == 1
        assert backend.store.apply([backend.remove("ghost", 30)]).changed == 1
    else:
        assert backend.store.apply([backend.put("ghost", 29)]).skipped_stale == 1
    assert backend.live() == {}
    # a newer put brings it back
    assert backend.store.apply([backend.put("u1", 21, "back")]).changed == 1
    assert backend.live()[backend.item_id("u1")] == backend.make("u1", "back")


def test_replaying_a_batch_changes_nothing_and_same_content_is_unchanged(backend: Backend) -> None:
    batch = [backend.put(f"u{i}", 10) for i in range(5)] + [backend.remove("u9", 10)]
    backend.store.apply(batch)
    before = backend.live()
    # (blind writes: the remove of u9, never there, wrote nothing either time)
    assert totals(backend.store.apply(batch)) == ((0, 5, 1, 0) if backend.blind_writes else (0, 6, 0, 0))
    newer = [backend.put(f"u{i}", 11) for i in range(5)]
    assert totals(backend.store.apply(newer)) == ((5, 0, 0, 0) if backend.blind_writes else (0, 0, 5, 0))
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


def test_point_reads_give_what_the_whole_read_gives(backend: Backend) -> None:
    backend.store.apply([backend.put("u1", 1), backend.put("u2", 1, "bb"), backend.put("u3", 1)])
    backend.store.apply([backend.remove("u3", 2)])
    whole = dict(backend.store.live_items(backend.collection))
    read = backend.store.read_items([backend.key("u2"), backend.key("u3"), backend.key("never"), backend.key("u1")])
    # the tombstone (u3) and the item never written are absent; the others as a whole read has them
    assert {k: dict(d) for k, d in read.items()} == {k: dict(whole[k]) for k in (backend.key("u1"), backend.key("u2"))}
    assert backend.store.read_items([]) == {}


def test_graph_point_reads_of_relationships(store_servers: StackHandle) -> None:
    store = falkordb_store(store_servers.settings.falkordb, graph=f"contract{uuid.uuid4().hex[:8]}")
    try:
        store.ensure_schema()
        a, b = _uuid("a"), _uuid("b")
        follows = ItemKey("FOLLOWS", f"{a}:{b}")
        store.apply([
            Put(ItemKey("User", a), 1, {"id": a, "handle": "a"}), Put(ItemKey("User", b), 1, {"id": b, "handle": "b"}),
            Put(follows, 2, {"id": follows.id, "from": a, "to": b, "createdAt": "2024-01-01T00:00:00.000000Z"}),
        ])
        whole = dict(store.live_items("FOLLOWS"))
        assert store.read_items([follows, ItemKey("FOLLOWS", f"{b}:{a}")]) == whole == {follows: whole[follows]}
        assert whole[follows]["from"] == a and whole[follows]["to"] == b
    finally:
        store.drop()
        store.close()


def test_the_graph_bulk_path_for_an_empty_store_writes_what_apply_writes(store_servers: StackHandle) -> None:
    """``load`` (a rebuild's first fill, no guard reads) leaves the same elements as ``apply``, and a
    chunk sent twice (an answer lost, the chunk retried) writes nothing twice."""
    stores = [falkordb_store(store_servers.settings.falkordb, graph=f"contract{uuid.uuid4().hex[:8]}") for _ in "ab"]
    users = [_uuid(f"u{i}") for i in range(6)]
    ops: list[Operation] = [Put(ItemKey("User", u), 3, {"id": u, "handle": f"h{i}"}) for i, u in enumerate(users)]
    ops += [Put(ItemKey("FOLLOWS", f"{a}:{b}"), 3, {"id": f"{a}:{b}", "from": a, "to": b, "createdAt": "2024-01-01"})
            for a in users[:3] for b in users[3:]]
    try:
        for store in stores:
            store.ensure_schema()
        loaded, applied = stores
        assert loaded.load(ops).changed == applied.apply(ops).changed == len(ops)  # type: ignore[attr-defined]
        loaded.load(ops)  # type: ignore[attr-defined]
        for collection in ("User", "FOLLOWS"):
            assert dict(loaded.live_items(collection)) == dict(applied.live_items(collection))
        assert len(dict(loaded.live_items("FOLLOWS"))) == 9
        (count,) = loaded.transport.run("MATCH ()-[r:FOLLOWS]->() RETURN count(r) AS n")  # type: ignore[attr-defined]
        assert count["n"] == 9
        # the loaded items are guarded as any others from then on
        assert loaded.apply([Put(ItemKey("User", users[0]), 2, {"id": users[0], "handle": "old"})]).skipped_stale == 1
    finally:
        for store in stores:
            store.drop()
            store.close()


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


@pytest.mark.parametrize("kind", ["cosmos", "falkordb", "redis"])
def test_a_server_that_is_down_gives_retriable_failures(kind: str) -> None:
    closed = free_port()
    store: ProjectionStore
    if kind == "redis":
        store = redis_store(RedisSettings(port=closed), "projectors:")
        op: Any = Put(ItemKey("profile", "u"), 1, {"handle": "h"})
    elif kind == "cosmos":
        store = CosmosStore(CosmosSettings(endpoint=f"http://127.0.0.1:{closed}"), {"counters": "/subjectId"})
        op = Put(ItemKey("counters", "s:likes", "s"), 1, {"id": "s:likes", "subjectId": "s"})
    else:
        store = falkordb_store(FalkorSettings(port=closed))
        op = Put(ItemKey("User", "u"), 1, {"id": "u", "handle": "h"})
    result = store.apply([op])
    assert len(result.failures) == 1 and result.failures[0].retriable
    assert not store.ping()
    with pytest.raises(RetriableError):  # the retry wrapper retries it (a rebuild's first drop)
        store.drop()


def test_cosmos_writes_by_point_operations_only(store_servers: StackHandle) -> None:
    """Creates while items are new (a fan-out), conditional patches once they exist (a replay,
    counters), removes that cost nothing for a missing item, transactional batches for a partition's
    new items: never a read before a write, never a query. The outcomes are the same either way."""
    backend = cosmos_backend(store_servers)
    store = backend.store
    assert isinstance(store, CosmosStore)
    try:
        fanout = [backend.put(f"f{i}", 10) for i in range(30)]
        assert totals(store.apply(fanout)) == (30, 0, 0, 0)
        assert store.requests.counts["point_write"] == 30 and store.requests.counts["patch"] == 0
        assert store._new_share["counters"] >= 0.5  # still creating first
        assert totals(store.apply(fanout)) == (0, 30, 0, 0)  # a replay: every write met its version
        assert store._new_share["counters"] < 0.5  # patches first now
        patches = store.requests.counts["patch"]
        assert totals(store.apply([backend.put(f"f{i}", 11, "b") for i in range(30)])) == (30, 0, 0, 0)
        assert store.requests.counts["patch"] == patches + 30  # one request each
        removals = [backend.remove(f"f{i}", 12) for i in range(5)] + [backend.remove(f"g{i}", 12) for i in range(5)]
        assert totals(store.apply(removals)) == (5, 0, 5, 0)
        assert totals(store.apply([backend.put(f"n{i}", 1) for i in range(30)])) == (30, 0, 0, 0)
        assert store._new_share["counters"] >= 0.5  # new items again: back to creating first
        assert totals(store.apply([backend.put("g1", 11), backend.put("f1", 13, "c")])) == (2, 0, 0, 0)
        # twelve new items of one partition: transactional batches of creates
        many = [Put(ItemKey("counters", f"s:k{n}", "s"), 5, {"id": f"s:k{n}", "subjectId": "s", "kind": f"k{n}",
                                                             "count": n}) for n in range(12)]
        batches = store.requests.counts["batch"]
        assert totals(store.apply(many)) == (12, 0, 0, 0)
        assert store.requests.counts["batch"] == batches + 1
        # the same partition again, some items newer: the batch meets existing items and each item
        # goes on its own, where the version guard decides
        again = [Put(op.key, 6 if i % 2 else 4, {**op.doc, "count": 100}) for i, op in enumerate(many)]
        again.append(Put(ItemKey("counters", "s:k99", "s"), 6, {"id": "s:k99", "subjectId": "s", "kind": "k99",
                                                                 "count": 1}))
        for _ in range(2):
            store._new_share[("counters", "group")] = 1.0  # try the batch of creates first
            result = store.apply(again)
            assert not result.failures and result.changed + result.skipped_stale == 13
        counts = store.requests.snapshot()  # every write so far: no read, no query
        assert counts["query"] == 0 and counts["cross_partition_query"] == 0 and counts["point_read"] == 0
        assert counts["request_units"] > 0
        live = backend.live()
        assert {f"s:k{n}": live[f"s:k{n}"]["count"] for n in range(12)} == {
            f"s:k{n}": 100 if n % 2 else n for n in range(12)
        }
        assert live["s:k99"]["count"] == 1
        assert set(live) >= {f"f{i}:likes" for i in range(5, 30)} | {f"n{i}:likes" for i in range(30)} | {"g1:likes"}
        assert live["f1:likes"] == backend.make("f1", "c")
    finally:
        store.close()


def test_cosmos_tombstones_expire(store_servers: StackHandle) -> None:
    """A Remove leaves a tombstone with the tombstone ttl; the container (time to live on) deletes it
    when it expires; live items never expire."""
    settings = store_servers.settings.cosmos.model_copy(update={"database": f"ttl{uuid.uuid4().hex[:8]}"})
    # long enough that the tombstone is surely read before it expires on a loaded machine
    store = CosmosStore(settings, {"counters": "/subjectId"}, tombstone_ttl_s=10)
    store.ensure_schema()

    def put(subject: str, version: int) -> Put:
        key = ItemKey("counters", f"{subject}:likes", subject)
        return Put(key, version, {"id": key.id, "subjectId": subject, "kind": "likes", "count": 1})

    def raw(subject: str) -> dict[str, Any] | None:
        return store._point_read(ItemKey("counters", f"{subject}:likes", subject))

    try:
        store.apply([put("a", 5), put("b", 5)])
        assert totals(store.apply([Remove(put("a", 6).key, 6)])) == (1, 0, 0, 0)
        tomb = raw("a")
        assert tomb is not None and tomb["deleted"] is True and tomb["ttl"] == 10
        assert store.apply([put("a", 5)]).skipped_stale == 1  # the tombstone guards meanwhile
        deadline = time.monotonic() + 90
        while raw("a") is not None and time.monotonic() < deadline:
            time.sleep(1)
        assert raw("a") is None  # expired and deleted
        assert raw("b") is not None and {k.id for k, _ in store.live_items("counters")} == {"b:likes"}
    finally:
        store.drop()
        store.close()


def test_cosmos_whole_container_reads_page_through_every_item_once(store_servers: StackHandle) -> None:
    """A cross-partition query read in pages (what verify's whole read and the schema checks do)
    returns every live item once, with and without ORDER BY, and a JOIN's rows once each: the
    local server starts a page at its continuation's item instead of re-reading the container."""
    settings = store_servers.settings.cosmos.model_copy(update={"database": f"scan{uuid.uuid4().hex[:8]}"})
    store = CosmosStore(settings, {"counters": "/subjectId"})
    store.ensure_schema()

    def put(n: int, version: int = 1) -> Put:
        key = ItemKey("counters", f"s{n}:likes", f"s{n}")
        doc = {"id": key.id, "subjectId": f"s{n}", "kind": "likes", "count": n, "tags": [f"a{n}", f"b{n}", f"c{n}"]}
        return Put(key, version, doc)

    try:
        total = 1_500
        assert not store.apply([put(n) for n in range(total)]).failures
        removed = set(range(0, total, 7))
        assert not store.apply([Remove(put(n).key, 2) for n in removed]).failures
        live = {f"s{n}:likes" for n in range(total) if n not in removed}
        container = store.container("counters")

        def pages(query: str, size: int) -> list[Any]:
            return list(container.query_items(query, enable_cross_partition_query=True, max_item_count=size))

        ids = [i["id"] for i in pages("SELECT c.id FROM c WHERE c.deleted = false", 100)]
        assert len(ids) == len(live) and set(ids) == live
        assert {k.id for k, _ in store.live_items("counters")} == live
        ordered = [i["count"] for i in pages("SELECT c.count FROM c WHERE c.deleted = false ORDER BY c.count DESC", 64)]
        assert ordered == sorted((n for n in range(total) if n not in removed), reverse=True)
        # pages of 50 rows: an item's three rows are split across pages
        rows = pages("SELECT c.id, t AS tag FROM c JOIN t IN c.tags WHERE c.deleted = false", 50)
        assert sorted((r["id"], r["tag"]) for r in rows) == sorted(
            (f"s{n}:likes", f"{p}{n}") for n in range(total) if n not in removed for p in "abc"
        )
        assert pages("SELECT VALUE COUNT(1) FROM c WHERE c.deleted = false", 100) == [len(live)]
    finally:
        store.drop()
        store.close()


def test_cosmos_partition_reads_give_the_named_partitions_live_items(store_servers: StackHandle) -> None:
    """``partitions_items`` (the counters read: ``c.subjectId IN (...)``, one query per 1,000
    partitions) returns every live item of the named partitions once, and nothing of the others;
    the local server, which reads only the partitions such a filter names, still answers any other
    filter over the whole container (an OR with another field, a NOT IN); a dropped container fails
    the read instead of answering nothing."""
    settings = store_servers.settings.cosmos.model_copy(update={"database": f"parts{uuid.uuid4().hex[:8]}"})
    store = CosmosStore(settings, {"counters": "/subjectId"})
    store.ensure_schema()

    def put(n: int, kind: str, version: int = 1) -> Put:
        key = ItemKey("counters", f"s{n}:{kind}", f"s{n}")
        doc = {"id": key.id, "subjectId": f"s{n}", "kind": kind, "count": n, "tags": [{"subjectId": f"s{n + 1}"}]}
        return Put(key, version, doc)

    try:
        total = 1_200
        assert not store.apply([put(n, kind) for n in range(total) for kind in ("likes", "replies")]).failures
        assert not store.apply([Remove(put(3, "likes").key, 2)]).failures

        def read(subjects: list[str]) -> list[tuple[str, str, int]]:
            return sorted((k.id, k.partition, int(d["count"])) for k, d in store.partitions_items("counters", subjects))

        twenty = [f"s{n}" for n in range(20)]
        kinds = ("likes", "replies")
        assert read([*twenty, "s1", "unknown"]) == sorted(
            (f"s{n}:{kind}", f"s{n}", n) for n in range(20) for kind in kinds if (n, kind) != (3, "likes")
        )
        assert read([]) == []
        # two queries (1,000 partitions, then 150), each answered in pages
        many = read([f"s{n}" for n in range(1_150)])
        assert len(many) == 2 * 1_150 - 1 and len({i for i, _, _ in many}) == len(many)
        container = store.container("counters")

        def query(sql: str, **params: Any) -> set[str]:
            parameters = [{"name": f"@{k}", "value": v} for k, v in params.items()]
            items = container.query_items(sql, parameters=parameters, enable_cross_partition_query=True)
            return {i["id"] for i in items}

        assert query("SELECT c.id FROM c WHERE c.subjectId = @a AND c.kind = 'likes'", a="s5") == {"s5:likes"}
        assert query("SELECT c.id FROM c WHERE c.subjectId = @a OR c.subjectId IN (@b, 's7')", a="s5", b="s6") == {
            f"s{n}:{kind}" for n in (5, 6, 7) for kind in ("likes", "replies")
        }
        assert query("SELECT c.id FROM c WHERE c.subjectId = @a OR c.count = 9", a="s5") == {
            f"s{n}:{kind}" for n in (5, 9) for kind in ("likes", "replies")
        }
        assert len(query("SELECT c.id FROM c WHERE NOT (c.subjectId IN (@a))", a="s5")) == 2 * total - 2
        assert query("SELECT x.id FROM x WHERE x.subjectId IN (@a) AND x.subjectId = @b", a="s5", b="s6") == set()
        # rows that are not the items (the tags of s5's items name s6): every partition is read
        tags = container.query_items("SELECT * FROM t IN c.tags WHERE t.subjectId = 's6'",
                                     enable_cross_partition_query=True)
        assert len(list(tags)) == 2
        store.drop()
        with pytest.raises(Exception, match=r"404"):
            store.partitions_items("counters", twenty)
    finally:
        store.drop()
        store.close()


SEARCH_BACKENDS = ["sqlite", *(["meilisearch"] if os.environ.get("PROJECTORS_TEST_MEILI_URL") else [])]


@pytest.fixture(params=SEARCH_BACKENDS)
def search_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, ProjectionStore]]:
    store: Any
    if request.param == "sqlite":
        store = SqliteSearchStore(tmp_path / "search.sqlite3")
    else:
        store = MeilisearchStore(
            os.environ["PROJECTORS_TEST_MEILI_URL"], os.environ.get("PROJECTORS_TEST_MEILI_KEY", ""),
            prefix=f"t{uuid.uuid4().hex[:8]}_",
        )
    store.ensure_schema()
    try:
        yield request.param, store
    finally:
        store.drop()
        store.close()


def test_search_matches_the_documented_fields_and_words(search_store: tuple[str, Any]) -> None:
    """How words match (docs/projections.md, "How words match"), on both engines: posts by ``body``
    and ``topics``, users by ``handle``, ``displayName`` and ``bio``; every word required, the last
    one as a prefix, the others whole; case folded; no stemming. Where they differ: Meilisearch
    tolerates typos (one from 5 letters), the embedded engine does not."""
    engine, store = search_store

    def post(i: str, body: str, topics: list[str], day: int) -> Put:
        doc = {"id": i, "authorId": "a", "body": body, "topics": topics, "createdAt": f"2026-01-0{day}T00:00:00Z"}
        return Put(ItemKey("posts", i), 1, doc)

    user = {"id": "u1", "handle": "ann_lee", "displayName": "Ann Lee", "bio": "writes about postgres"}
    assert not store.apply([
        post("p1", "streaming databases with kafka", ["db"], 1),
        post("p2", "graph databases", ["graphs"], 2),
        post("p3", "café culture", [], 3),
        post("p4", "kafka graph", ["rust"], 4),
        Put(ItemKey("users", "u1"), 1, user),
    ]).failures

    def found(index: str, query: str) -> set[str]:
        return {str(d["id"]) for d in store.search(index, query, {}, limit=20)}

    assert found("posts", "rust") == {"p4"}  # a word only in the topics
    assert found("posts", "datab") == {"p1", "p2"}  # the last word is a prefix
    assert found("posts", "datab kafka") == set()  # the others are whole words
    assert found("posts", "kafka graph") == {"p4"}  # every word required
    assert found("posts", "KAFKA") == {"p1", "p4"}
    assert found("users", "postgres") == found("users", "lee") == {"u1"}
    assert found("users", "kafka") == set()
    typos = {"sqlite": set(), "meilisearch": {"p1", "p4"}}[engine]
    assert found("posts", "kafkq") == typos
    # no stemming: "graphs" is in p2's topics; p4 holds only "graph" (Meilisearch: one typo away)
    assert found("posts", "graphs") == {"sqlite": {"p2"}, "meilisearch": {"p2", "p4"}}[engine]
    if engine == "sqlite":
        assert found("posts", "cafe") == {"p3"}  # diacritics removed
        assert found("users", "ann_lee") == {"u1"}  # a query's "_" separates words as the text's does


def test_redis_leaderboard_members_are_set_never_added_and_day_sets_expire(store_servers: StackHandle) -> None:
    """Sorted-set members carry the spec's score (a replay or an older version moves nothing); a
    day's set and its version records expire at the end of the day plus the retention."""
    settings = store_servers.settings.redis
    prefix = f"{settings.prefix}-t{uuid.uuid4().hex[:8]}:"
    store = redis_store(settings, prefix)
    day, member = "2026-12-06", "0d6f4c3e-4a57-4cde-9c55-6a1e2f1b0a01"
    key = ItemKey("hotPosts", f"{day}:{member}")
    try:
        assert totals(store.apply([Put(key, 5, {"day": day, "member": member, "score": 3})])) == (1, 0, 0, 0)
        assert totals(store.apply([Put(key, 5, {"day": day, "member": member, "score": 3})])) == (0, 1, 0, 0)
        assert totals(store.apply([Put(key, 4, {"day": day, "member": member, "score": 9})])) == (0, 1, 0, 0)
        assert totals(store.apply([Put(key, 6, {"day": day, "member": member, "score": 3})])) == (0, 0, 1, 0)
        assert store.redis.zscore(f"{prefix}lb:posts:{day}", member) == 3.0
        expires = store.redis.expiretime(f"{prefix}lb:posts:{day}")
        assert expires == store.redis.expiretime(f"{prefix}v:hotPosts:{day}") == 1796601600 + 7 * 86400
        assert totals(store.apply([Remove(key, 7)])) == (1, 0, 0, 0)
        assert store.redis.zcard(f"{prefix}lb:posts:{day}") == 0 and store.read_items([key]) == {}
        bad = store.apply([Put(ItemKey("hotPosts", "yesterday:x"), 8, {"score": 1})])
        assert len(bad.failures) == 1 and not bad.failures[0].retriable  # not a day: refused
    finally:
        store.drop()
        store.close()
