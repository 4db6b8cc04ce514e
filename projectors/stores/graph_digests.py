"""Range digests computed by the graph server (FalkorDB), so a verify of a clean graph transfers a
few hundred (count, sum of item hashes) rows per label instead of every item.

The scheme (item hash, buckets) is :mod:`projectors.stores.digests`; the server computes it with a
JavaScript function library loaded with ``GRAPH.UDF LOAD`` (FalkorDB 4.10+), on the documents
:meth:`GraphStore.live_items` gives (a node's properties without ``v``; an edge's with its
endpoints' ids). Neo4j has no such functions without plugins: its verify reads every item.
"""

from __future__ import annotations

from typing import Any

from projectors.graph_model import EDGE_ENDS, NODE_LABELS

LIBRARY = "projectors_verify"

SCRIPT = r"""
const TABLE = (() => {
  const t = new Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(s) {
  let c = 0xffffffff;
  for (let i = 0; i < s.length; i++) c = TABLE[(c ^ s.charCodeAt(i)) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function esc(s) {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}
function canon(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "string") return esc(v);
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : JSON.stringify(v);
  if (typeof v === "bigint") return v.toString();
  if (Array.isArray(v)) return "[" + v.map(canon).join(",") + "]";
  const keys = Object.keys(v).sort();
  return "{" + keys.map((k) => esc(k) + ":" + canon(v[k])).join(",") + "}";
}
function bucket(id, buckets) { return crc32(esc(String(id))) & (buckets - 1); }
function node(props) {
  const doc = {};
  for (const k of Object.keys(props)) if (k !== "v") doc[k] = props[k];
  return crc32(canon(doc));
}
function edge(props, from, to) {
  const doc = { id: props.id, from: from, to: to };
  for (const k of Object.keys(props)) if (k !== "id" && k !== "v") doc[k] = props[k];
  return crc32(canon(doc));
}
falkor.register("bucket", bucket);
falkor.register("node", node);
falkor.register("edge", edge);
"""


# node ids per query: each digest query reads the nodes of one range of node ids (an id seek), or
# the relationships that start at them, so no query holds the graph for long or meets the client's
# timeout, however large the graph. Relationships are read from fewer start nodes at a time: a user
# follows and reacts to many others (measured: 200,000 follows of 12,000 users, 24 queries of at
# most 0.5 s, 1.15 times one whole-type query; by relationship id ranges, 1.4 times, every query
# scanning every relationship of the type)
NODE_RANGE = 8192
EDGE_RANGE = 512


def _scope(label: str) -> str:
    """The items of ``label`` in the node-id range [$lo, $hi): nodes of the label, or the
    relationships of the type whose start node is in it."""
    if label in NODE_LABELS:
        return f"MATCH (n:{label}) WHERE id(n) >= $lo AND id(n) < $hi"
    start = EDGE_ENDS[label][0]
    return f"MATCH (a:{start}) WHERE id(a) >= $lo AND id(a) < $hi MATCH (a)-[n:{label}]->(z)"


def q_digests(label: str) -> str:
    h = f"{LIBRARY}.node(properties(n))" if label in NODE_LABELS else f"{LIBRARY}.edge(properties(n), a.id, z.id)"
    return f"{_scope(label)} WITH {LIBRARY}.bucket(n.id, $buckets) AS b, {h} AS h RETURN b, count(h) AS c, sum(h) AS s"


def q_ids_in(label: str) -> str:
    return f"{_scope(label)} WITH n WHERE {LIBRARY}.bucket(n.id, $buckets) IN $chosen RETURN n.id AS id"


def q_count(label: str) -> str:
    pattern = f"(n:{label})" if label in NODE_LABELS else f"()-[n:{label}]->()"
    return f"MATCH {pattern} RETURN count(n) AS c"


def q_id_span(label: str) -> str:
    """The lowest and highest node id of ``label``'s nodes, or of its relationships' start nodes' label."""
    start = label if label in NODE_LABELS else EDGE_ENDS[label][0]
    return f"MATCH (n:{start}) RETURN min(id(n)) AS lo, max(id(n)) AS hi"


class GraphDigests:
    """Range digests of one graph, computed by the server (``transport``: a FalkorDB one)."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self._loaded = False

    def _load(self) -> None:
        if not self._loaded:
            self.transport.load_library(LIBRARY, SCRIPT)
            self._loaded = True

    def count(self, collection: str) -> int:
        self._check(collection)
        rows = self.transport.run(q_count(collection))
        return int(rows[0]["c"]) if rows else 0

    def digests(self, collection: str, buckets: int) -> dict[int, tuple[int, int]]:
        """``{bucket: (items, sum of item hashes)}`` over ``buckets`` (a power of two), summed over
        the node-id ranges."""
        self._check(collection)
        self._load()
        out: dict[int, tuple[int, int]] = {}
        for lo, hi in self._ranges(collection):
            rows = self.transport.run(q_digests(collection), {"buckets": buckets, "lo": lo, "hi": hi})
            for r in rows:
                b = int(float(r["b"]))
                count, total = out.get(b, (0, 0))
                out[b] = (count + int(r["c"]), total + int(float(r["s"])))
        return out

    def ids_in(self, collection: str, buckets: int, chosen: list[int]) -> list[str]:
        """The ids of the items in the ``chosen`` buckets."""
        self._check(collection)
        self._load()
        ids: list[str] = []
        for lo, hi in self._ranges(collection):
            rows = self.transport.run(q_ids_in(collection), {"buckets": buckets, "chosen": chosen, "lo": lo, "hi": hi})
            ids += [str(r["id"]) for r in rows]
        return ids

    def _ranges(self, collection: str) -> list[tuple[int, int]]:
        rows = self.transport.run(q_id_span(collection))
        if not rows or rows[0]["hi"] is None:
            return []
        low, high = int(rows[0]["lo"]), int(rows[0]["hi"])
        step = NODE_RANGE if collection in NODE_LABELS else EDGE_RANGE
        return [(lo, lo + step) for lo in range(low, high + 1, step)]

    @staticmethod
    def _check(collection: str) -> None:
        if collection not in NODE_LABELS and collection not in EDGE_ENDS:
            raise ValueError(f"unknown graph collection {collection!r}")
