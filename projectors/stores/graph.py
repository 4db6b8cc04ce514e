"""The graph store: one set of Cypher, in the dialect Neo4j and FalkorDB both accept, over a transport.

Two transports (``graph_transports.py``): the official ``neo4j`` driver (Bolt) for Neo4j in
production, and the native ``falkordb`` client for FalkorDB, the local default (FalkorDB's own Bolt
endpoint crashes on batched parameters, INFRA.md). Only the DDL differs per backend.

Elements: nodes ``User``, ``Post``, ``Topic`` keyed by ``id``; relationships of fixed endpoint labels
keyed by ``id``. Every element carries ``v``, the version of the write that last set it. A removal
leaves ``(:Tombstone {key: "<collection>:<id>", v})``. Every write query is guarded itself (``WHERE
n.v < row.v``), so two workers racing can never let an older version win; a pre-read of the
versions (removals) or the write's own counts (puts) only classify what a batch did.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from projectors.errors import RetriableError
from projectors.projections.model import (
    ApplyResult,
    Document,
    ItemFailure,
    ItemKey,
    Operation,
    Put,
)
from projectors.stores.guard import Held, Outcome, newest_per_key, outcome, tally

NODES = ("User", "Post", "Topic")
EDGES: dict[str, tuple[str, str]] = {
    "FOLLOWS": ("User", "User"),
    "AUTHORED": ("User", "Post"),
    "REACTED": ("User", "Post"),
    "REPLIED": ("User", "Post"),
    "TAGGED": ("Post", "Topic"),
    "BLOCKS": ("User", "User"),
}
CHUNK = 2000
FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Transport(Protocol):
    backend: str

    def run(self, cypher: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def retriable(self, exc: Exception) -> bool: ...

    def ddl(self) -> list[str]: ...

    def prepare(self) -> None: ...

    def drop(self) -> None: ...

    def close(self) -> None: ...


def _label(collection: str) -> str:
    if collection not in NODES and collection not in EDGES:
        raise ValueError(f"unknown graph collection {collection!r}")
    return collection


# -- the Cypher, once ------------------------------------------------------------------------------

def q_node_versions(label: str) -> str:
    return f"UNWIND $ids AS id MATCH (n:{label} {{id: id}}) RETURN n.id AS id, properties(n) AS props"


def q_edge_versions(rel: str) -> str:
    return (
        f"UNWIND $ids AS id MATCH (a)-[r:{rel} {{id: id}}]->(b) "
        "RETURN r.id AS id, properties(r) AS props, a.id AS f, b.id AS t"
    )


Q_TOMBSTONES = "UNWIND $keys AS k MATCH (t:Tombstone {key: k}) RETURN t.key AS key, t.v AS v"


def same_content(element: str) -> str:
    """True when a written element already holds exactly the row's content: its id, its version and
    the row's properties, each equal. Computed before the SET, in the same query."""
    return (
        f"({element}.v IS NOT NULL AND size(keys({element})) = size(keys(row.props)) + 2 "
        f"AND all(k IN keys(row.props) WHERE {element}[k] = row.props[k]))"
    )


# a put returns two counts, not a row per item: result rows cost the client more than the write
TALLY = "count({e}) AS applied, sum(CASE WHEN same THEN 1 ELSE 0 END) AS unchanged"


def q_put_nodes(label: str) -> str:
    return (
        "UNWIND $rows AS row "
        "OPTIONAL MATCH (t:Tombstone {key: row.key}) "
        "WITH row, t WHERE t IS NULL OR t.v < row.v "
        f"MERGE (n:{label} {{id: row.id}}) "
        f"WITH row, n, {same_content('n')} AS same WHERE n.v IS NULL OR n.v < row.v "
        "SET n += row.props, n.v = row.v "
        f"RETURN {TALLY.format(e='n')}"
    )


def q_put_edges(rel: str) -> str:
    start, end = EDGES[rel]
    return (
        "UNWIND $rows AS row "
        "OPTIONAL MATCH (t:Tombstone {key: row.key}) "
        "OPTIONAL MATCH (ta:Tombstone {key: row.fromKey}) "
        "OPTIONAL MATCH (tb:Tombstone {key: row.toKey}) "
        "WITH row, t, ta, tb WHERE (t IS NULL OR t.v < row.v) AND (ta IS NULL OR ta.v < row.v) "
        "AND (tb IS NULL OR tb.v < row.v) "
        f"MERGE (a:{start} {{id: row.from}}) "
        f"MERGE (b:{end} {{id: row.to}}) "
        f"MERGE (a)-[r:{rel} {{id: row.id}}]->(b) "
        f"WITH row, r, {same_content('r')} AS same WHERE r.v IS NULL OR r.v < row.v "
        "SET r += row.props, r.v = row.v "
        f"RETURN {TALLY.format(e='r')}"
    )


def q_remove(collection: str) -> str:
    match = (
        f"MATCH (n:{collection} {{id: row.id}}) WHERE n.v IS NULL OR n.v < row.v DETACH DELETE n"
        if collection in NODES
        else f"MATCH ()-[n:{collection} {{id: row.id}}]->() WHERE n.v IS NULL OR n.v < row.v DELETE n"
    )
    return (
        "UNWIND $rows AS row "
        "MERGE (t:Tombstone {key: row.key}) "
        "WITH row, t WHERE t.v IS NULL OR t.v < row.v "
        "SET t.v = row.v "
        f"WITH row {match}"
    )


def q_live_nodes(label: str) -> str:
    return (
        f"MATCH (n:{label}) WHERE n.id > $after "
        "RETURN n.id AS id, properties(n) AS props ORDER BY n.id LIMIT $limit"
    )


def q_live_edges(rel: str) -> str:
    return (
        f"MATCH (a)-[r:{rel}]->(b) WHERE r.id > $after "
        "RETURN r.id AS id, properties(r) AS props, a.id AS f, b.id AS t ORDER BY r.id LIMIT $limit"
    )


def node_doc(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k != "v"}


def edge_doc(props: Mapping[str, Any], start: str, end: str) -> dict[str, Any]:
    doc = {"id": props["id"], "from": start, "to": end}
    doc.update({k: v for k, v in props.items() if k not in ("id", "v")})
    return doc


def _version(props: Mapping[str, Any]) -> int:
    v = props.get("v")
    return -1 if v is None else int(v)


def tombstone_key(collection: str, item_id: str) -> str:
    return f"{collection}:{item_id}"


class GraphStore:
    """The graph projection store over a :class:`Transport`."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    # -- schema and health --------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        try:
            self.transport.prepare()
        except Exception as exc:
            raise self._translated(exc) from exc
        for statement in self.transport.ddl():
            try:
                self.transport.run(statement)
            except Exception as exc:  # an index that exists already
                if "already" not in str(exc).lower() and "equivalent" not in str(exc).lower():
                    raise self._translated(exc) from exc

    def _translated(self, exc: Exception) -> Exception:
        return RetriableError(f"graph ({self.transport.backend}): {exc}") if self.transport.retriable(exc) else exc

    def ping(self) -> bool:
        own = getattr(self.transport, "ping", None)
        if own is not None:
            return bool(own())
        try:
            self.transport.run("RETURN 1 AS ok")
            return True
        except Exception:
            return False

    def close(self) -> None:
        self.transport.close()

    def drop(self) -> None:
        """Delete this graph (a rebuild drops the generation it replaced)."""
        self.transport.drop()

    def query(self, cypher: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Read queries of read services (e.g. friend-of-friend suggestions)."""
        return self.transport.run(cypher, params or {})

    # -- writes -------------------------------------------------------------------------------------
    def apply(self, ops: Sequence[Operation]) -> ApplyResult:
        newest, dropped = newest_per_key(ops)
        groups: dict[tuple[str, str], list[Operation]] = defaultdict(list)
        for op in newest:
            _label(op.key.collection)
            groups[(op.key.collection, "put" if isinstance(op, Put) else "remove")].append(op)
        counts = [0, 0, 0]  # changed, stale, unchanged
        failures: list[ItemFailure] = []
        # nodes before edges (an edge's endpoints exist), edge removals before node removals
        order = sorted(groups, key=lambda g: (g[1] == "remove", (g[0] in EDGES) != (g[1] == "remove")))
        for collection, kind in order:
            group = groups[(collection, kind)]
            for start in range(0, len(group), CHUNK):
                chunk = group[start : start + CHUNK]
                try:
                    done = self._apply_chunk(collection, kind, chunk)
                except Exception as exc:
                    retriable = self.transport.retriable(exc)
                    failures += [ItemFailure(op, exc, retriable) for op in chunk]
                    continue
                counts = [a + b for a, b in zip(counts, done, strict=True)]
        changed, stale, unchanged = counts
        return ApplyResult(changed, stale + dropped, unchanged, failures)

    def _apply_chunk(self, collection: str, kind: str, ops: list[Operation]) -> tuple[int, int, int]:
        """(changed, stale, unchanged) of one chunk."""
        if kind == "remove":
            return self._remove_chunk(collection, ops)
        puts = [op for op in ops if isinstance(op, Put)]
        if collection in NODES:
            query = q_put_nodes(collection)
            rows = [
                {
                    "key": tombstone_key(collection, op.key.id),
                    "id": op.key.id,
                    "v": op.version,
                    "props": {k: v for k, v in op.doc.items() if k != "id"},
                }
                for op in puts
            ]
        else:
            start, end = EDGES[collection]
            query = q_put_edges(collection)
            rows = [
                {
                    "key": tombstone_key(collection, op.key.id),
                    "fromKey": tombstone_key(start, str(op.doc["from"])),
                    "toKey": tombstone_key(end, str(op.doc["to"])),
                    "id": op.key.id,
                    "from": op.doc["from"],
                    "to": op.doc["to"],
                    "v": op.version,
                    "props": {k: v for k, v in op.doc.items() if k not in ("id", "from", "to")},
                }
                for op in puts
            ]
        # one round trip: the guarded write counts what it wrote and what of that held the same
        # content; what it did not write lost to a newer version or tombstone (its own, an endpoint's)
        (tally_row,) = self.transport.run(query, {"rows": rows})
        applied, same = int(tally_row["applied"]), int(tally_row["unchanged"] or 0)
        return applied - same, len(puts) - applied, same

    def _remove_chunk(self, collection: str, ops: list[Operation]) -> tuple[int, int, int]:
        held = self._held(collection, ops)
        decided = [(op, outcome(op, held.get(op.key))) for op in ops]
        todo = [op for op, o in decided if o is not Outcome.STALE]
        if todo:
            rows = [{"key": tombstone_key(collection, op.key.id), "id": op.key.id, "v": op.version} for op in todo]
            self.transport.run(q_remove(collection), {"rows": rows})
        return tally([o for _, o in decided])

    def _held(self, collection: str, ops: list[Operation]) -> dict[ItemKey, Held]:
        """Versions (a live item's or its tombstone's) and live documents of a chunk's items."""
        ids = [op.key.id for op in ops]
        versions: dict[ItemKey, int] = {}
        docs: dict[ItemKey, Document] = {}
        keys = sorted(tombstone_key(collection, i) for i in ids)
        for row in self.transport.run(Q_TOMBSTONES, {"keys": keys}):
            key = ItemKey(collection, str(row["key"]).split(":", 1)[1])
            versions[key] = max(versions.get(key, -1), int(row["v"] if row["v"] is not None else -1))
        if collection in NODES:
            for row in self.transport.run(q_node_versions(collection), {"ids": ids}):
                key = ItemKey(collection, str(row["id"]))
                versions[key] = max(versions.get(key, -1), _version(row["props"]))
                docs[key] = node_doc(row["props"])
        else:
            for row in self.transport.run(q_edge_versions(collection), {"ids": ids}):
                key = ItemKey(collection, str(row["id"]))
                versions[key] = max(versions.get(key, -1), _version(row["props"]))
                docs[key] = edge_doc(row["props"], str(row["f"]), str(row["t"]))
        return {key: Held(v, docs.get(key)) for key, v in versions.items()}

    # -- reads --------------------------------------------------------------------------------------
    def live_items(self, collection: str, page: int = 5000) -> Iterator[tuple[ItemKey, Document]]:
        label = _label(collection)
        after = ""
        query = q_live_nodes(label) if label in NODES else q_live_edges(label)
        while True:
            rows = self.transport.run(query, {"after": after, "limit": page})
            for row in rows:
                props = row["props"]
                doc = node_doc(props) if label in NODES else edge_doc(props, str(row["f"]), str(row["t"]))
                yield ItemKey(collection, str(row["id"])), doc
            if len(rows) < page:
                return
            after = str(rows[-1]["id"])

    def find_keys(self, collection: str, equals: Mapping[str, str], partition: str | None = None) -> list[ItemKey]:
        label = _label(collection)
        conditions, params = [], {}
        for i, (field, value) in enumerate(sorted(equals.items())):
            if not FIELD.match(field):
                raise ValueError(f"bad field name {field!r}")
            target = {"from": "a.id", "to": "b.id"}.get(field, f"n.{field}") if label in EDGES else f"n.{field}"
            conditions.append(f"{target} = $p{i}")
            params[f"p{i}"] = value
        where = " AND ".join(conditions) or "true"
        pattern = f"(n:{label})" if label in NODES else f"(a)-[n:{label}]->(b)"
        try:
            rows = self.transport.run(f"MATCH {pattern} WHERE {where} RETURN n.id AS id", params)
        except Exception as exc:
            raise self._translated(exc) from exc
        return [ItemKey(collection, str(r["id"])) for r in rows]
