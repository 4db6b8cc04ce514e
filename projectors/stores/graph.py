"""The graph store: one set of Cypher, in the dialect Neo4j and FalkorDB both accept, over a transport.

Two transports (``graph_transports.py``): the official ``neo4j`` driver (Bolt) for Neo4j in
production, and the native ``falkordb`` client for FalkorDB, the local default (FalkorDB's own Bolt
endpoint crashes on batched parameters: UNWIND lists of about 50 maps or more). Only the DDL differs per backend.

Elements: nodes ``User``, ``Post``, ``Topic`` keyed by ``id``; relationships of fixed endpoint labels
keyed by ``id``. Every element carries ``v``, the version of the write that last set it. A removal
leaves ``(:Tombstone {key: "<collection>:<id>", v})``. Every write query is guarded itself (``WHERE
n.v < row.v``), so two workers racing can never let an older version win, and counts what it did
(applied, and of those the unchanged or the removed), which classifies a batch in one round trip.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from projectors.errors import Severity, translated
from projectors.graph_model import EDGE_ENDS, NODE_LABELS
from projectors.model import (
    ApplyResult,
    Document,
    ItemFailure,
    ItemKey,
    Operation,
    Put,
)
from projectors.stores.graph_digests import GraphDigests
from projectors.stores.guard import newest_per_key

CHUNK = 2000
PAGE = 5000  # live items read per query
FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Transport(Protocol):
    backend: str

    def run(self, cypher: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def severity(self, exc: Exception) -> Severity: ...

    def ddl(self) -> list[str]: ...

    def prepare(self) -> None: ...

    def drop(self) -> None: ...

    def close(self) -> None: ...


def _label(collection: str) -> str:
    if collection not in NODE_LABELS and collection not in EDGE_ENDS:
        raise ValueError(f"unknown graph collection {collection!r}")
    return collection


# -- the Cypher, once ------------------------------------------------------------------------------

def same_content(element: str) -> str:
    """True when a written element already holds exactly the row's content: its id, its version and
    the row's properties, each equal. Computed before the SET, in the same query."""
    return (
        f"({element}.v IS NOT NULL AND size(keys({element})) = size(keys(row.props)) + 2 "
        f"AND all(k IN keys(row.props) WHERE {element}[k] = row.props[k]))"
    )


# a put returns two counts, not a row per item: result rows cost the client more than the write
TALLY = "count({e}) AS applied, sum(CASE WHEN same THEN 1 ELSE 0 END) AS unchanged"


def tombstone_of(collection: str, item_id: str) -> str:
    """The Cypher expression of an item's tombstone key, ``"<collection>:<id>"`` (built in the query:
    the rows carry only ids, and every byte of a row is serialized by the client and parsed again)."""
    return f"'{collection}:' + {item_id}"


def q_put_nodes(label: str) -> str:
    return (
        "UNWIND $rows AS row "
        f"OPTIONAL MATCH (t:Tombstone {{key: {tombstone_of(label, 'row.id')}}}) "
        "WITH row, t WHERE t IS NULL OR t.v < row.v "
        f"MERGE (n:{label} {{id: row.id}}) "
        f"WITH row, n, {same_content('n')} AS same WHERE n.v IS NULL OR n.v < row.v "
        "SET n += row.props, n.v = row.v "
        f"RETURN {TALLY.format(e='n')}"
    )


def q_put_edges(rel: str) -> str:
    start, end = EDGE_ENDS[rel]
    return (
        "UNWIND $rows AS row "
        f"OPTIONAL MATCH (t:Tombstone {{key: {tombstone_of(rel, 'row.id')}}}) "
        f"OPTIONAL MATCH (ta:Tombstone {{key: {tombstone_of(start, 'row.from')}}}) "
        f"OPTIONAL MATCH (tb:Tombstone {{key: {tombstone_of(end, 'row.to')}}}) "
        "WITH row, t, ta, tb WHERE (t IS NULL OR t.v < row.v) AND (ta IS NULL OR ta.v < row.v) "
        "AND (tb IS NULL OR tb.v < row.v) "
        f"MERGE (a:{start} {{id: row.from}}) "
        f"MERGE (b:{end} {{id: row.to}}) "
        f"MERGE (a)-[r:{rel} {{id: row.id}}]->(b) "
        f"WITH row, r, {same_content('r')} AS same WHERE r.v IS NULL OR r.v < row.v "
        "SET r += row.props, r.v = row.v "
        f"RETURN {TALLY.format(e='r')}"
    )


def q_load_nodes(label: str) -> str:
    """A rebuild's first fill of an empty graph: no tombstones to honour, no versions to compare
    (still MERGE, so a chunk sent twice after a lost answer writes nothing twice)."""
    return (
        f"UNWIND $rows AS row MERGE (n:{label} {{id: row.id}}) SET n += row.props, n.v = row.v "
        "RETURN count(n) AS applied, 0 AS unchanged"
    )


def q_load_edges(rel: str) -> str:
    start, end = EDGE_ENDS[rel]
    return (
        f"UNWIND $rows AS row MERGE (a:{start} {{id: row.from}}) MERGE (b:{end} {{id: row.to}}) "
        f"MERGE (a)-[r:{rel} {{id: row.id}}]->(b) SET r += row.props, r.v = row.v "
        "RETURN count(r) AS applied, 0 AS unchanged"
    )


def q_remove(collection: str) -> str:
    """A removal applies when it is newer than both the item's tombstone and the live item (stale
    otherwise: nothing written); it then records its tombstone and deletes the item if there is one.
    Returns how many applied and how many of those deleted a live item."""
    live, delete = (
        (f"(n:{collection} {{id: row.id}})", "DETACH DELETE n")
        if collection in NODE_LABELS
        else (f"()-[n:{collection} {{id: row.id}}]->()", "DELETE n")
    )
    return (
        "UNWIND $rows AS row "
        f"OPTIONAL MATCH (t:Tombstone {{key: {tombstone_of(collection, 'row.id')}}}) "
        f"OPTIONAL MATCH {live} "
        "WITH row, t, n WHERE (t IS NULL OR t.v < row.v) AND (n IS NULL OR n.v IS NULL OR n.v < row.v) "
        f"MERGE (k:Tombstone {{key: {tombstone_of(collection, 'row.id')}}}) SET k.v = row.v "
        f"WITH n, n IS NOT NULL AS live {delete} "
        "RETURN count(*) AS applied, sum(CASE WHEN live THEN 1 ELSE 0 END) AS removed"
    )


def q_live_nodes(label: str) -> str:
    return (
        f"MATCH (n:{label}) WHERE id(n) > $after "
        "RETURN id(n) AS at, n.id AS id, properties(n) AS props ORDER BY id(n) LIMIT $limit"
    )


def q_live_edges(rel: str) -> str:
    return (
        f"MATCH (a)-[r:{rel}]->(b) WHERE id(r) > $after "
        "RETURN id(r) AS at, r.id AS id, properties(r) AS props, a.id AS f, b.id AS t ORDER BY id(r) LIMIT $limit"
    )


def node_doc(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k != "v"}


def edge_doc(props: Mapping[str, Any], start: str, end: str) -> dict[str, Any]:
    doc = {"id": props["id"], "from": start, "to": end}
    doc.update({k: v for k, v in props.items() if k not in ("id", "v")})
    return doc


class GraphStore:
    """The graph projection store over a :class:`Transport`."""

    def __init__(self, transport: Transport, page: int = PAGE) -> None:
        self.transport = transport
        self.page = page

    @property
    def digests(self) -> GraphDigests | None:
        """Range digests computed by the server, where it can (FalkorDB); None: read every item."""
        if getattr(self.transport, "backend", "") != "falkordb":
            return None
        return GraphDigests(self.transport)

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
        return translated(f"graph ({self.transport.backend})", exc, self.transport.severity(exc))

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
        try:
            self.transport.drop()
        except Exception as exc:
            raise self._translated(exc) from exc

    # -- writes -------------------------------------------------------------------------------------
    def load(self, ops: Sequence[Operation]) -> ApplyResult:
        """Puts into an empty graph (a rebuild's first fill), without the guard's reads: about a
        quarter faster than :meth:`apply` on FalkorDB."""
        return self.apply(ops, empty=True)

    def apply(self, ops: Sequence[Operation], empty: bool = False) -> ApplyResult:
        newest, dropped = newest_per_key(ops)
        groups: dict[tuple[str, str], list[Operation]] = defaultdict(list)
        for op in newest:
            _label(op.key.collection)
            groups[(op.key.collection, "put" if isinstance(op, Put) else "remove")].append(op)
        counts = [0, 0, 0]  # changed, stale, unchanged
        failures: list[ItemFailure] = []
        # nodes before edges (an edge's endpoints exist), edge removals before node removals
        order = sorted(groups, key=lambda g: (g[1] == "remove", (g[0] in EDGE_ENDS) != (g[1] == "remove")))
        for collection, kind in order:
            group = groups[(collection, kind)]
            for start in range(0, len(group), CHUNK):
                chunk = group[start : start + CHUNK]
                try:
                    done = self._apply_chunk(collection, kind, chunk, empty)
                except Exception as exc:
                    failures += [ItemFailure(op, exc, self.transport.severity(exc)) for op in chunk]
                    continue
                counts = [a + b for a, b in zip(counts, done, strict=True)]
        changed, stale, unchanged = counts
        return ApplyResult(changed, stale + dropped, unchanged, failures)

    def _apply_chunk(self, collection: str, kind: str, ops: list[Operation], empty: bool) -> tuple[int, int, int]:
        """(changed, stale, unchanged) of one chunk, in one round trip: each query is guarded itself
        and counts what it did; what it did not write lost to a newer version or tombstone."""
        if kind == "remove":
            rows = [{"id": op.key.id, "v": op.version} for op in ops]
            (counts,) = self.transport.run(q_remove(collection), {"rows": rows})
            applied, removed = int(counts["applied"]), int(counts["removed"] or 0)
            return removed, len(ops) - applied, applied - removed
        puts = [op for op in ops if isinstance(op, Put)]
        if collection in NODE_LABELS:
            query = (q_load_nodes if empty else q_put_nodes)(collection)
            rows = [
                {"id": op.key.id, "v": op.version, "props": {k: v for k, v in op.doc.items() if k != "id"}}
                for op in puts
            ]
        else:
            query = (q_load_edges if empty else q_put_edges)(collection)
            rows = [
                {
                    "id": op.key.id,
                    "from": str(op.doc["from"]),
                    "to": str(op.doc["to"]),
                    "v": op.version,
                    "props": {k: v for k, v in op.doc.items() if k not in ("id", "from", "to")},
                }
                for op in puts
            ]
        (counts,) = self.transport.run(query, {"rows": rows})
        applied, same = int(counts["applied"] or 0), int(counts["unchanged"] or 0)
        same = min(same, applied)  # counts the store got wrong stay within what was sent
        return applied - same, max(0, len(puts) - applied), same

    # -- reads --------------------------------------------------------------------------------------
    def live_items(self, collection: str, page: int | None = None) -> Iterator[tuple[ItemKey, Document]]:
        """Every live element of ``collection``, ``page`` at a time, keyset-paged by the store's own
        element id (an integer: its order and ``>`` agree in every store). Not by the ``id`` property:
        FalkorDB's range index on a string scans ``n.id > $after`` in an order of its own (a page
        after 'a' left out 'é', 'Ω' and '中'), and Neo4j documents the order of strings with
        special characters as inconsistent. (Neo4j 5 deprecates ``id()``; its ``elementId()`` is a
        string, not ordered by creation.) Verify keeps the items by key, in no order."""
        label = _label(collection)
        size = page or self.page
        after = -1
        query = q_live_nodes(label) if label in NODE_LABELS else q_live_edges(label)
        while True:
            rows = self.transport.run(query, {"after": after, "limit": size})
            for row in rows:
                props = row["props"]
                doc = node_doc(props) if label in NODE_LABELS else edge_doc(props, str(row["f"]), str(row["t"]))
                yield ItemKey(collection, str(row["id"])), doc
            if len(rows) < size:
                return
            after = int(rows[-1]["at"])

    def find_keys(self, collection: str, equals: Mapping[str, str], partition: str | None = None) -> list[ItemKey]:
        label = _label(collection)
        conditions, params = [], {}
        for i, (field, value) in enumerate(sorted(equals.items())):
            if not FIELD.match(field):
                raise ValueError(f"bad field name {field!r}")
            target = {"from": "a.id", "to": "b.id"}.get(field, f"n.{field}") if label in EDGE_ENDS else f"n.{field}"
            conditions.append(f"{target} = $p{i}")
            params[f"p{i}"] = value
        where = " AND ".join(conditions) or "true"
        pattern = f"(n:{label})" if label in NODE_LABELS else f"(a)-[n:{label}]->(b)"
        try:
            rows = self.transport.run(f"MATCH {pattern} WHERE {where} RETURN n.id AS id", params)
        except Exception as exc:
            raise self._translated(exc) from exc
        return [ItemKey(collection, str(r["id"])) for r in rows]

    def read_items(self, keys: Sequence[ItemKey]) -> dict[ItemKey, Document]:
        """The live elements of ``keys`` (absent: no element), by their id indexes, one query per
        collection; the documents are those :meth:`live_items` gives."""
        by_collection: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            by_collection[_label(key.collection)].append(key.id)
        out: dict[ItemKey, Document] = {}
        for label, ids in by_collection.items():
            query = (
                f"UNWIND $ids AS id MATCH (n:{label} {{id: id}}) RETURN n.id AS id, properties(n) AS props"
                if label in NODE_LABELS
                else f"UNWIND $ids AS id MATCH (a)-[n:{label} {{id: id}}]->(b) "
                "RETURN n.id AS id, properties(n) AS props, a.id AS f, b.id AS t"
            )
            try:
                rows = self.transport.run(query, {"ids": ids})
            except Exception as exc:
                raise self._translated(exc) from exc
            for row in rows:
                props = row["props"]
                doc = node_doc(props) if label in NODE_LABELS else edge_doc(props, str(row["f"]), str(row["t"]))
                out[ItemKey(label, str(row["id"]))] = doc
        return out
