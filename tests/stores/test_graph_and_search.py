"""What only the graph and the search stores do: edges and their endpoints, the read-side queries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from projectors.db.migrate import migrate
from projectors.model import ItemKey, Put, Remove
from projectors.operations.verify import verify_projection
from projectors.projections import capture_tables, projection
from projectors.read.client import ReadClient
from projectors.source import PostgresSource
from projectors.stores import graph_digests
from projectors.stores.graph import GraphStore
from projectors.stores.graph_transports import falkordb_store
from projectors.stores.search_fts import SqliteSearchStore
from tests.conftest import StackHandle


@pytest.fixture()
def graph(store_servers: StackHandle) -> Iterator[GraphStore]:
    store = falkordb_store(store_servers.settings.falkordb, graph=f"g{uuid.uuid4().hex[:8]}")
    store.ensure_schema()
    yield store
    store.close()


def user(i: str, v: int = 1) -> Put:
    return Put(ItemKey("User", i), v, {"id": i, "handle": f"h{i}"})


def follows(a: str, b: str, v: int = 1) -> Put:
    return Put(ItemKey("FOLLOWS", f"{a}:{b}"), v, {"id": f"{a}:{b}", "from": a, "to": b})


def test_edges_read_back_with_their_endpoints_and_properties(graph: GraphStore) -> None:
    reacted = Put(ItemKey("REACTED", "u:p:like"), 1, {"id": "u:p:like", "from": "u", "to": "p", "kind": "like"})
    post = Put(ItemKey("Post", "p"), 1, {"id": "p", "createdAt": "2026-11-22T00:00:00.000000Z"})
    assert graph.apply([user("u"), post, reacted]).changed == 3
    assert dict(graph.live_items("REACTED")) == {
        ItemKey("REACTED", "u:p:like"): {"id": "u:p:like", "from": "u", "to": "p", "kind": "like"}
    }


def test_an_edge_older_than_its_endpoints_removal_is_not_written(graph: GraphStore) -> None:
    graph.apply([user("a"), user("b"), follows("a", "b", 1)])
    assert graph.apply([Remove(ItemKey("User", "b"), 10)]).changed == 1
    assert dict(graph.live_items("FOLLOWS")) == {}  # detached with the node
    assert graph.apply([follows("a", "b", 5)]).skipped_stale == 1
    assert dict(graph.live_items("FOLLOWS")) == {}
    assert {k.id for k, _ in graph.live_items("User")} == {"a"}  # no stub brought back


def test_an_edge_write_reports_what_it_did(graph: GraphStore) -> None:
    """Puts are classified from the write's own counts (applied, and of those already the same)."""

    def kind(v: int, how: str) -> Put:
        return Put(ItemKey("REACTED", "u:p"), v, {"id": "u:p", "from": "u", "to": "p", "kind": how})

    def totals(*ops: Put) -> tuple[int, int, int]:
        r = graph.apply(list(ops))
        return r.changed, r.skipped_stale, r.unchanged

    assert totals(kind(1, "like")) == (1, 0, 0)  # created, endpoints too
    assert totals(kind(2, "like")) == (0, 0, 1)  # newer, same content
    assert totals(kind(3, "love"), user("u", 3)) == (2, 0, 0)  # the User was an endpoint stub until now
    assert totals(kind(3, "wow"), user("u", 2)) == (0, 2, 0)
    assert dict(graph.live_items("REACTED"))[ItemKey("REACTED", "u:p")]["kind"] == "love"


def test_friend_of_friend_suggestions_through_the_read_only_session(store_servers: StackHandle) -> None:
    """The read client's suggestions, on its graph session: ``GRAPH.RO_QUERY``, which refuses writes."""
    settings = store_servers.with_env(PROJECTORS_FALKORDB_GRAPH=f"r{uuid.uuid4().hex[:8]}")
    graph = falkordb_store(settings.falkordb)  # generation 0, the live one
    ops = [user(i) for i in "abcdexy"]
    ops += [follows("a", "b"), follows("a", "c"), follows("b", "x"), follows("c", "x"), follows("b", "y")]
    ops += [follows("c", "d"), follows("a", "d")]  # d is followed already: not suggested
    ops += [follows("b", "e"), Put(ItemKey("BLOCKS", "e:a"), 1, {"id": "e:a", "from": "e", "to": "a"})]
    graph.apply(ops)
    reader = ReadClient(settings)
    try:
        rows = reader.suggestions("a", limit=10)
        assert [(r["id"], r["mutual"]) for r in rows] == [("x", 2), ("y", 1)]
        session = reader._store("graph", reader.generation("graph"))
        for write in ("CREATE (:User {id: 'intruder'})", "MATCH (u:User {id: 'a'}) SET u.handle = 'owned'",
                      "MATCH (u:User {id: 'x'}) DETACH DELETE u"):
            with pytest.raises(redis.ResponseError, match="read-only"):
                session.run(write)
        assert dict(graph.live_items("User"))[ItemKey("User", "a")]["handle"] == "ha"
        assert {k.id for k, _ in graph.live_items("User")} == set("abcdexy")
        assert reader.suggestions("a", limit=10) == rows
        # no method for arbitrary queries: the reads are the client's own
        public = {name for name in dir(reader) if not name.startswith("_")}
        assert public == {"behind_s", "close", "counters", "feed_page", "generation", "hot_feed_page", "items",
                          "leaderboard",
                          "notifications", "profiles", "redis_reads", "search", "settings", "suggestions",
                          "trending_topics", "unread_count", "unread_counts", "wait_for", "cursors", "fallbacks"}
    finally:
        reader.close()
        graph.drop()
        graph.close()


# ids that FalkorDB's range index on a string does not scan in the order it compares them
MIXED_TOPICS = ["é", "Z", "a", "😀", "中文", "b", "É", "\uff5a", "日本", "Ω", "zz", "A", "ß", "Ünter", "~", "0"]


def test_verify_pages_non_ascii_ids_over_many_pages(
    stack: StackHandle, store_servers: StackHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verify over pages of 3 (ids mixing ASCII and not): a clean store has zero drift, and one
    wrong, one missing and one extra element are each found. The range digests are summed over
    node-id ranges of 2 (nodes) and 1 (relationships, by their start node)."""
    monkeypatch.setattr(graph_digests, "NODE_RANGE", 2)
    monkeypatch.setattr(graph_digests, "EDGE_RANGE", 1)
    database = f"paging_{uuid.uuid4().hex[:10]}"
    settings = stack.with_env(PROJECTORS_PG_DATABASE=database)
    migrate(settings.pg, "paging_pub", capture_tables(settings.capture))
    author = str(uuid.uuid4())
    with psycopg.connect(settings.pg.conninfo()) as conn:
        conn.execute("INSERT INTO users (id, handle) VALUES (%s, 'ünïcødé')", (author,))
        for start in range(0, len(MIXED_TOPICS), 4):
            conn.execute(
                "INSERT INTO posts (id, author_id, body, topics) VALUES (%s, %s, 'b', %s)",
                (str(uuid.uuid4()), author, MIXED_TOPICS[start : start + 4]),
            )
    with psycopg.connect(settings.pg.conninfo()) as conn:
        spec = dict(projection("graph", settings).spec_all(PostgresSource(conn)))
    store = falkordb_store(store_servers.settings.falkordb, graph=f"p{uuid.uuid4().hex[:8]}", page=3)
    try:
        store.ensure_schema()  # the id indexes: what made paging by ``n.id > $after`` skip items
        assert store.apply([Put(key, 1, doc) for key, doc in spec.items()]).changed == len(spec)
        assert {k.id for k, _ in store.live_items("Topic")} == set(MIXED_TOPICS)
        clean = verify_projection(settings, "graph", store, use_digests=False)
        assert (clean.total, clean.checked, clean.held) == (0, len(spec), len(spec))
        assert verify_projection(settings, "graph", store).total == 0  # by the server's range digests

        tagged = next(k.id for k in spec if k.collection == "TAGGED" and k.id.endswith(":😀"))
        store.transport.run("MATCH (t:Topic {id: '中文'}) SET t.name = 'changed'")
        store.transport.run("MATCH ()-[r:TAGGED {id: $id}]->() DELETE r", {"id": tagged})
        store.transport.run("CREATE (:Topic {id: 'Ωmega', name: 'Ωmega', v: 1})")
        for use_digests in (False, True):  # every item read, in pages of 3; and by range digests
            drift = verify_projection(settings, "graph", store, use_digests=use_digests)
            assert (drift.wrong, drift.missing, drift.extra) == (1, 1, 1), use_digests
            assert {(s["kind"], s["id"]) for s in drift.samples} == {
                ("wrong", "中文"), ("missing", tagged), ("extra", "Ωmega")
            }
    finally:
        store.drop()
        store.close()


def test_verify_by_range_digests_reads_only_the_buckets_that_differ(
    stack: StackHandle, store_servers: StackHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FalkorDB computes each bucket's item count and sum of item hashes: a clean graph of 3,000
    users is verified without reading one item, and a node changed directly in the store (no event)
    is found by reading only the items of its bucket."""
    database = f"digests_{uuid.uuid4().hex[:10]}"
    settings = stack.with_env(PROJECTORS_PG_DATABASE=database)
    migrate(settings.pg, "digests_pub", capture_tables(settings.capture))
    with psycopg.connect(settings.pg.conninfo()) as conn:
        conn.execute("INSERT INTO users (id, handle) SELECT gen_random_uuid(), 'user ' || g || ' ü' "
                     "FROM generate_series(1, 3000) g")
    with psycopg.connect(settings.pg.conninfo()) as conn:
        spec = dict(projection("graph", settings).spec_all(PostgresSource(conn)))
    store = falkordb_store(store_servers.settings.falkordb, graph=f"d{uuid.uuid4().hex[:8]}")
    try:
        store.ensure_schema()
        assert store.apply([Put(key, 1, doc) for key, doc in spec.items()]).changed == len(spec) == 3000
        whole = verify_projection(settings, "graph", store, use_digests=False)
        assert (whole.total, whole.items_read, whole.digests_read) == (0, 3000, 0)
        clean = verify_projection(settings, "graph", store)
        assert (clean.total, clean.checked, clean.held, clean.items_read) == (0, 3000, 3000, 0)
        assert 8 <= clean.digests_read <= 16, clean.digests_read  # about 256 items per bucket
        with monkeypatch.context() as patched:  # the same digests, summed over node-id ranges of 500
            patched.setattr(graph_digests, "NODE_RANGE", 500)
            digests = store.digests
            assert digests is not None and len(digests._ranges("User")) >= 6
            again = verify_projection(settings, "graph", store)
            assert (again.total, again.items_read, again.digests_read) == (0, 0, clean.digests_read)

        victim = sorted(k.id for k in spec)[1234]
        store.transport.run("MATCH (u:User {id: $id}) SET u.handle = 'changed behind the projector'", {"id": victim})
        drift = verify_projection(settings, "graph", store)
        assert (drift.wrong, drift.missing, drift.extra) == (1, 0, 0)
        assert drift.samples[0]["id"] == victim and drift.samples[0]["differs"]["handle"]["held"].startswith("changed")
        assert 0 < drift.items_read <= 3000 // 4, drift.items_read  # one bucket of about 3000 / 16
    finally:
        store.drop()
        store.close()


@pytest.fixture()
def search(tmp_path: Path) -> Iterator[SqliteSearchStore]:
    store = SqliteSearchStore(tmp_path / "s.sqlite3")
    yield store
    store.close()


def post(i: str, author: str, body: str, topics: list[str], created: str, v: int = 1) -> Put:
    doc = {"id": i, "authorId": author, "body": body, "topics": topics, "createdAt": created}
    return Put(ItemKey("posts", i), v, doc)


def test_search_ranks_words_and_filters(search: SqliteSearchStore) -> None:
    search.apply([
        post("1", "ann", "streaming databases with kafka", ["kafka", "db"], "2026-01-01T00:00:00.000000Z"),
        post("2", "bob", "kafka kafka everywhere", ["kafka"], "2026-02-01T00:00:00.000000Z"),
        post("3", "ann", "graph databases", ["graphs"], "2026-03-01T00:00:00.000000Z"),
    ])
    assert [d["id"] for d in search.search("posts", "kafka", {})] == ["2", "1"]
    assert [d["id"] for d in search.search("posts", "datab", {})] in (["1", "3"], ["3", "1"])  # prefix
    assert [d["id"] for d in search.search("posts", "", {"authorId": "ann"})] == ["3", "1"]  # newest first
    assert [d["id"] for d in search.search("posts", "", {"topics": ["graphs", "db"]})] == ["3", "1"]
    assert [d["id"] for d in search.search("posts", "", {"topics": "kafka"})] == ["2", "1"]
    window = {"createdAfter": "2026-01-15T00:00:00Z", "createdBefore": "2026-03-01T00:00:00.000000Z"}
    assert [d["id"] for d in search.search("posts", "", window)] == ["2"]
    # search syntax in a query is never interpreted: plain words, all required
    assert [d["id"] for d in search.search("posts", 'kafka ( "streaming*', {})] == ["1"]
    assert search.search("posts", '"foo OR ( NEAR kafka*', {}) == []
    search.apply([Remove(ItemKey("posts", "2"), 2)])
    assert [d["id"] for d in search.search("posts", "kafka", {})] == ["1"]
    with pytest.raises(ValueError, match="unknown filter"):
        search.search("posts", "x", {"colour": "red"})


def test_search_reads_shards_newest_first_up_to_its_candidates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The text goes to shards of SHARD_DOCS documents; a search ranks at most ``candidates``
    matches, taken from the newest shard back, so its cost does not grow with the index."""
    from projectors.stores import search_fts

    monkeypatch.setattr(search_fts, "SHARD_DOCS", 10)
    store = SqliteSearchStore(tmp_path / "sharded.sqlite3", candidates=12)
    # 35 posts that all say "kafka"; the older the post, the more often (a better bm25 match)
    store.apply([
        post(str(i), "ann", " ".join(["kafka"] * (36 - i) + ["filler"] * 3), [],
             f"2026-01-01T00:00:{i:02d}.000000Z")
        for i in range(35)
    ])
    assert store._shards_newest_first() == ["fts_3", "fts_2", "fts_1", "fts_0"]
    # only the 12 newest matches are ranked: the best of them is the oldest of those twelve
    found = [d["id"] for d in store.search("posts", "kafka", {}, limit=3)]
    assert found == ["23", "24", "25"]
    # with room for every match, the best post overall (the oldest, in the first shard) comes first
    everything = SqliteSearchStore(tmp_path / "sharded.sqlite3", create=False, candidates=1000)
    assert [d["id"] for d in everything.search("posts", "kafka", {}, limit=2)] == ["0", "1"]
    # an edit or a delete of a post in an old shard reaches that shard
    store.apply([post("0", "ann", "graphs only", [], "2026-01-01T00:00:00.000000Z", v=2),
                 Remove(ItemKey("posts", "1"), 2)])
    assert [d["id"] for d in everything.search("posts", "kafka", {}, limit=2)] == ["2", "3"]
    assert [d["id"] for d in everything.search("posts", "graphs", {})] == ["0"]
    # a dropped store starts again with no shard
    store.drop()
    store.ensure_schema()
    store.apply([post("9", "bob", "kafka", [], "2026-01-02T00:00:00.000000Z")])
    assert [d["id"] for d in store.search("posts", "kafka", {})] == ["9"]
    everything.close()
    store.close()


def test_the_embedded_engine_computes_the_same_range_digests_as_the_spec_side(search: SqliteSearchStore) -> None:
    """SQLite hashes each live document as verify hashes the spec's (``stores/digests.py``); a
    document changed in the database behind the store shows in its bucket's digest only."""
    from projectors.stores.digests import item_hash, key_bucket

    docs = [post(str(i), "ann", f"body {i} ü", ["kafka"], f"2026-01-01T00:00:{i:02d}.000000Z").doc for i in range(40)]
    search.apply([Put(ItemKey("posts", d["id"]), 1, d) for d in docs] + [Remove(ItemKey("posts", "39"), 2)])
    live = docs[:39]
    expected: dict[int, tuple[int, int]] = {}
    for doc in live:
        bucket = key_bucket(doc["id"]) & 7
        count, total = expected.get(bucket, (0, 0))
        expected[bucket] = (count + 1, total + item_hash(doc))
    digests = search.digests
    assert digests.count("posts") == 39
    assert digests.digests("posts", 8) == expected
    victim = live[7]["id"]
    search._conn.execute("UPDATE docs SET doc = json_set(doc, '$.body', 'edited') WHERE idx = 'posts' AND id = ?",
                         (victim,))
    changed = digests.digests("posts", 8)
    assert {b for b in expected if changed[b] != expected[b]} == {key_bucket(victim) & 7}
    assert victim in digests.ids_in("posts", 8, [key_bucket(victim) & 7])
