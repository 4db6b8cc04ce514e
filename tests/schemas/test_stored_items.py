"""The contract of schemas/projections: what read services get from the stores' own clients.

A workload with deletes (tombstones) and celebrities (feedPosts, feedFollows, feedAuthors) runs
through the real local pipeline (PostgreSQL, capture, broker, a worker per projection) to zero drift; then
every Cosmos item of every container (read with the azure-cosmos client, tombstones and Cosmos's
system properties included), every FalkorDB node and relationship (as the falkordb client returns
their properties) and every search document (as the search client returns it) is validated against
schemas/; the first mismatch fails, naming the item. Each check also shows it can fail: a real item
is refused by its schema with one of the fields it carries taken out of the schema.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
from azure.cosmos import CosmosClient
from falkordb import FalkorDB
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from projectors import schemas
from projectors.bench.feed_scenarios import server_requests
from projectors.db.migrate import connect
from projectors.graph_model import EDGE_ENDS as EDGES
from projectors.model import Put, Remove
from projectors.projections import DESCRIPTORS, PROJECTIONS
from projectors.projections.counters import CountersProjection
from projectors.projections.documents import STORED
from projectors.read.client import ReadClient, ReadUnavailable
from projectors.settings import Settings
from projectors.source import PostgresSource
from projectors.stores.cosmos import POINT_READ_HEADERS
from projectors.stores.factory import generations, open_raw_store
from projectors.stores.search_common import INDEXES
from projectors.stores.search_meili import MeilisearchStore
from projectors.workload import SocialWorkload
from tests.conftest import QUICK_BATCHES, StackHandle, local_stack
from tests.operations.test_operators import assert_clean

COSMOS_CONTAINERS = {name: d.partitions for name, d in DESCRIPTORS.items() if d.store == "cosmos"}
CELEBRITY_FOLLOWERS = 4


@pytest.fixture(scope="module")
def projected() -> Iterator[StackHandle]:
    """The whole local stack after a workload, every projection at zero drift."""
    env = {**QUICK_BATCHES, "PROJECTORS_FEED_CELEBRITY_FOLLOWERS": str(CELEBRITY_FOLLOWERS)}
    with local_stack("projectors-contract-", **env) as handle:
        with connect(handle.settings.pg) as conn:
            load = SocialWorkload(conn, rng=random.Random(31))
            load.seed(users=25, posts=40, follows=90)
            load.run(400)
            assert_clean(handle, list(PROJECTIONS))
            # removals of items the stores hold (an item removed before it was written leaves no
            # tombstone): every kind, whatever the dice said, then more of the mix
            for rare in (load.delete_post, load.delete_post, load.delete_user, load.unfollow, load.block,
                         load.mute, load.delete_reply, load.unreact):
                rare()
            conn.commit()
            load.run(100)
        assert_clean(handle, list(PROJECTIONS))
        yield handle


@cache
def schema(projection: str, collection: str) -> dict[str, Any]:
    path = schemas.SCHEMAS_DIR / "projections" / projection / f"{collection}.json"
    assert path.exists(), f"no schema for {projection}/{collection}"
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def mismatch(item: Any, against: dict[str, Any]) -> str | None:
    """Why ``item`` does not validate (formats such as uuid checked too), or None."""
    error = best_match(Draft202012Validator(against, format_checker=Draft202012Validator.FORMAT_CHECKER)
                       .iter_errors(item))
    if error is None:
        return None
    return f"{error.message} (at {'/'.join(map(str, error.absolute_path)) or 'the item'})"


def check(projection: str, collection: str, item: Any, what: str) -> None:
    why = mismatch(item, schema(projection, collection))
    if why is not None:
        pytest.fail(f"{what} does not match schemas/projections/{projection}/{collection}.json: {why}\n"
                    f"{json.dumps(item, default=str)[:2000]}")


def without(projection: str, collection: str, field: str) -> dict[str, Any]:
    """The schema with ``field`` taken out of every object it describes (the schemas before stored
    items were described had no sourceVersion, deleted, ttl, Cosmos properties or v)."""
    out = copy.deepcopy(schema(projection, collection))
    for part in [out, *out.get("$defs", {}).values()]:
        part.get("properties", {}).pop(field, None)
        if field in part.get("required", []):
            part["required"].remove(field)
    return out


def assert_can_fail(projection: str, collection: str, item: dict[str, Any], fields: list[str]) -> None:
    present = [f for f in fields if f in item]
    assert present, f"{collection} item carries none of {fields}"
    for field in present:
        assert mismatch(item, without(projection, collection, field)) is not None, (
            f"{collection}: a schema without {field} still accepts {item}"
        )


# -- Cosmos ----------------------------------------------------------------------------------------

def cosmos(handle: StackHandle, projection: str) -> CosmosClient:
    c = handle.settings.cosmos.of(projection)
    return CosmosClient(c.endpoint, credential=c.key.get_secret_value(), connection_verify=c.verify_tls,
                        enable_endpoint_discovery=False)


def test_every_cosmos_item_matches_its_schema(projected: StackHandle) -> None:
    clients = {projection: cosmos(projected, projection) for projection in COSMOS_CONTAINERS}
    seen: dict[str, dict[str, int]] = {}
    try:
        for projection, containers in COSMOS_CONTAINERS.items():
            database = clients[projection].get_database_client(projected.settings.cosmos.database)
            for name, path in containers.items():
                container = database.get_container_client(name)
                counts = seen.setdefault(name, {"live": 0, "tombstones": 0})
                firsts: dict[bool, dict[str, Any]] = {}
                for item in container.query_items("SELECT * FROM c", enable_cross_partition_query=True):
                    check(projection, name, item, f"{name} item {item.get('id')!r}")
                    counts["tombstones" if item.get("deleted") else "live"] += 1
                    firsts.setdefault(bool(item.get("deleted")), item)
                # a point read returns the same shape
                for item in firsts.values():
                    read = container.read_item(item["id"], partition_key=item[path.lstrip("/")],
                                               headers=POINT_READ_HEADERS)
                    check(projection, name, read, f"{name} item {item['id']!r} (point read)")
                    assert_can_fail(projection, name, read,
                                    ["sourceVersion", "deleted", "ttl", "_rid", "_self", "_etag", "_ts"])
    finally:
        for client in clients.values():
            client.close()
    assert all(counts["live"] > 0 for counts in seen.values()), seen
    assert seen["userFeed"]["tombstones"] > 0 and seen["counters"]["tombstones"] > 0, seen


# -- the graph -------------------------------------------------------------------------------------

def test_every_graph_element_matches_its_schema(projected: StackHandle) -> None:
    falkor = projected.settings.falkordb
    db = FalkorDB(host=falkor.host, port=falkor.port)
    graph = db.select_graph(falkor.graph)
    labels: dict[str, int] = {}
    try:
        for node_labels, props in graph.query("MATCH (n) RETURN labels(n), properties(n)").result_set:
            assert len(node_labels) == 1, f"node {props} has labels {node_labels}"
            label = node_labels[0]
            check("graph", label, props, f"{label} node {props.get('id', props.get('key'))!r}")
            labels[label] = labels.get(label, 0) + 1
            if label == "User" and "v" in props and labels[label] == 1:
                assert_can_fail("graph", label, props, ["v", "handle"])
        rows = graph.query("MATCH (a)-[r]->(b) RETURN type(r), properties(r), labels(a), labels(b)").result_set
        for rel, props, start, end in rows:
            check("graph", rel, props, f"{rel} relationship {props.get('id')!r}")
            assert (start, end) == ([EDGES[rel][0]], [EDGES[rel][1]]), f"{rel} {props['id']} joins {start}, {end}"
            if labels.get(rel) is None:
                assert_can_fail("graph", rel, props, ["v"])
            labels[rel] = labels.get(rel, 0) + 1
    finally:
        db.connection.close()
    # every label and relationship type has items, tombstones included; none without a schema
    assert set(labels) == set(STORED["graph"]), labels


# -- search ----------------------------------------------------------------------------------------

def test_every_search_document_matches_its_schema(projected: StackHandle) -> None:
    reader = ReadClient(projected.settings)
    store = open_raw_store(projected.settings, "search")
    try:
        for index in INDEXES:
            held = dict(store.live_items(index))
            found = reader.search(index, "", limit=len(held) + 10)
            assert len(found) == len(held) > 0, index
            for doc in found:
                check("search", index, doc, f"{index} document {doc.get('id')!r} (search client)")
            # what Meilisearch holds for the same documents: bookkeeping, and tombstones
            for key, doc in held.items():
                for raw in (MeilisearchStore._body(Put(key, 7, doc)), MeilisearchStore._body(Remove(key, 8))):
                    check("search", index, raw, f"{index} document {key.id!r} (Meilisearch raw)")
            assert_can_fail("search", index, found[0], ["id", "topics", "handle"])
    finally:
        store.close()
        reader.close()


# -- counters are one query of the subjects' partitions -------------------------------------------

def test_counters_are_one_query_with_the_same_answers(projected: StackHandle) -> None:
    settings = projected.settings
    with connect(settings.pg) as conn:
        source = PostgresSource(conn)
        expected: dict[str, dict[str, int]] = {}
        for key, doc in CountersProjection().spec_all(source):
            expected.setdefault(key.partition, {})[str(doc["kind"])] = int(doc["count"])
    client = cosmos(projected, "counters")
    try:
        container = client.get_database_client(settings.cosmos.database).get_container_client("counters")
        removed = sorted({i["subjectId"] for i in container.query_items(
            "SELECT c.subjectId FROM c WHERE c.deleted = true", enable_cross_partition_query=True)})
    finally:
        client.close()
    assert removed and not set(removed) & set(expected)
    posts = [s for s, kinds in expected.items() if "likes" in kinds][:8]
    users = [s for s, kinds in expected.items() if "followers" in kinds][:8]
    unknown = str(uuid.uuid4())
    subjects = [*posts, *users, removed[0], unknown, "not-a-uuid", posts[0]]

    reader = ReadClient(settings)
    try:
        before = server_requests(settings).get("counters", {})
        got = reader.counters(subjects)
        after = server_requests(settings).get("counters", {})
    finally:
        reader.close()
    assert got == {s: expected.get(s, {}) for s in subjects}
    assert got[removed[0]] == {} and got[unknown] == {} and got["not-a-uuid"] == {}
    assert all(len(got[p]) == 2 for p in posts) and all(len(got[u]) == 3 for u in users)
    sent = {kind: after.get(kind, 0) - before.get(kind, 0) for kind in after}
    # one query of the subjects' partitions, no point read (workers may write meanwhile)
    assert sent.get("cross_partition_query") == 1, sent
    assert not any(sent.get(k) for k in ("point_read", "point_read_refused", "query", "read_feed")), sent


def test_counters_of_a_container_gone_fail_instead_of_reading_empty(projected: StackHandle) -> None:
    """A query of a dropped container answers 404 (a missing item is only absent): the store read fails
    (and is retried on the live generation) rather than answering ``{}``; the client then answers
    from PostgreSQL, or raises when the fallback is off."""
    settings = projected.settings
    with connect(settings.pg) as conn:
        row = conn.execute("SELECT id::text FROM users ORDER BY id LIMIT 1").fetchone()
    assert row is not None
    pointer = generations(settings, "counters")
    live = read_counters(settings, [row[0]])
    assert len(live[row[0]]) == 3
    try:
        pointer.write(9)  # the live generation now has no container
        fallback = read_counters(settings, [row[0]])
        assert fallback == live and fallback.source == "postgres"  # type: ignore[attr-defined]
        with pytest.raises(ReadUnavailable, match="CosmosResourceNotFoundError"):
            read_counters(projected.with_env(PROJECTORS_READ_FALLBACK="false"), [row[0]])
    finally:
        pointer.write(0)
        pointer.close()
    assert read_counters(settings, [row[0]]) == live


def read_counters(settings: Settings, subjects: list[str]) -> dict[str, dict[str, int]]:
    """Through a new client (a client keeps the live generation it read for a second)."""
    reader = ReadClient(settings)
    try:
        return reader.counters(subjects)
    finally:
        reader.close()
