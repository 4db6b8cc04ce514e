"""What only the graph and the search stores do: edges and their endpoints, the read-side queries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from projectors.projections.model import ItemKey, Put, Remove
from projectors.read.client import SUGGESTIONS
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


def test_friend_of_friend_suggestions(graph: GraphStore) -> None:
    ops = [user(i) for i in "abcdexy"]
    ops += [follows("a", "b"), follows("a", "c"), follows("b", "x"), follows("c", "x"), follows("b", "y")]
    ops += [follows("c", "d"), follows("a", "d")]  # d is followed already: not suggested
    ops += [follows("b", "e"), Put(ItemKey("BLOCKS", "e:a"), 1, {"id": "e:a", "from": "e", "to": "a"})]
    graph.apply(ops)
    rows = graph.query(SUGGESTIONS, {"id": "a", "limit": 10})
    assert [(r["id"], r["mutual"]) for r in rows] == [("x", 2), ("y", 1)]


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
