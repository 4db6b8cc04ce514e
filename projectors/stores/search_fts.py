"""The embedded search engine: SQLite FTS5 (bm25 ranking, unicode61 tokenizer, prefix matching; how
words match, and where Meilisearch differs: docs/projections.md, "How words match").

Documents live as JSON in ``docs`` with their version (tombstones: ``deleted = 1``); topics of posts
go to ``doc_topics`` for the any-of filter. WAL mode: one writer process (the worker) and any number
of readers.

A search costs what its answer costs, not what the index holds: the text goes to FTS5 shards of
``SHARD_DOCS`` documents by rowid (``fts_0``, ``fts_1``, ... in the order documents were first
written), and a search ranks (bm25, within each shard) at most ``candidates`` matching documents
(``PROJECTORS_SEARCH_SQLITE_CANDIDATES``, 500), read from the newest shard back until it has that
many, as time-partitioned indexes are searched.
One FTS5 table would make every query decode whole doclists (a prefix query merges every matching
term's), so its cost would grow with the index: measured 10x slower at 10x the documents.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from projectors.errors import Severity
from projectors.model import ApplyResult, Document, ItemFailure, ItemKey, Operation, Put
from projectors.stores.digests import item_hash, key_bucket
from projectors.stores.guard import Held, Outcome, newest_per_key, outcome, tally
from projectors.stores.search_common import INDEXES, check, topics_of, words

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    rid      INTEGER PRIMARY KEY,
    idx      TEXT NOT NULL,
    id       TEXT NOT NULL,
    version  INTEGER NOT NULL,
    deleted  INTEGER NOT NULL,
    doc      TEXT,
    author   TEXT,
    created  TEXT,
    UNIQUE (idx, id)
);
CREATE INDEX IF NOT EXISTS docs_author ON docs (idx, author, created);
CREATE INDEX IF NOT EXISTS docs_created ON docs (idx, created);
CREATE TABLE IF NOT EXISTS doc_topics (
    rid   INTEGER NOT NULL,
    topic TEXT NOT NULL,
    PRIMARY KEY (topic, rid)
);
CREATE INDEX IF NOT EXISTS doc_topics_rid ON doc_topics (rid);
"""
SHARD_DOCS = 8192  # documents per full-text shard
CANDIDATES = 500  # matching documents a search ranks at most, newest first (the setting's default)
SHARD_COLUMNS = "text, tokenize = 'unicode61 remove_diacritics 2'"
SHARD_NAME = re.compile(r"fts_(\d+)")


def shard_of(rid: int) -> str:
    return f"fts_{rid // SHARD_DOCS}"


def text_of(index: str, doc: Document) -> str:
    if index == "posts":
        return " ".join([str(doc.get("body", "")), *map(str, doc.get("topics", []))])
    return " ".join(str(doc.get(f, "")) for f in ("handle", "displayName", "bio"))


class SqliteSearchStore:
    """``create=False`` (readers): open an existing database only; a missing file raises
    ``sqlite3.OperationalError`` instead of being created empty."""

    def __init__(self, path: Path, create: bool = True, candidates: int = CANDIDATES) -> None:
        self.path = path
        self.candidates = candidates
        self.create = create
        self._lock = threading.Lock()
        self._shards: set[str] = set()  # full-text shards known to exist (the writer creates them)
        self._conn = self._connect()
        self._dropped = False

    @property
    def digests(self) -> SqliteDigests:
        """Range digests computed inside SQLite (the scheme: ``stores/digests.py``)."""
        return SqliteDigests(self)

    def _connect(self) -> sqlite3.Connection:
        mode = "rwc" if self.create else "rw"
        conn = sqlite3.connect(
            f"{self.path.absolute().as_uri()}?mode={mode}", uri=True, timeout=30, check_same_thread=False,
            isolation_level=None,
        )
        # the range digests' functions (SqliteDigests)
        conn.create_function("item_hash", 1, lambda doc: item_hash(json.loads(doc)), deterministic=True)
        conn.create_function("key_bucket", 2, lambda i, n: key_bucket(i) & (n - 1), deterministic=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
        return conn

    def ensure_schema(self) -> None:
        with self._lock:
            if self._dropped:  # created again after a drop
                self._conn, self._dropped = self._connect(), False
                self._shards.clear()
            self._conn.executescript(SCHEMA)

    def ping(self) -> bool:
        try:
            with self._lock:
                self._conn.execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def drop(self) -> None:
        """Delete this generation's database file (readers that still have it open keep reading it)."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self._dropped = True

    # -- writes -------------------------------------------------------------------------------------
    def apply(self, ops: Sequence[Operation]) -> ApplyResult:
        newest, dropped = newest_per_key(ops)
        outcomes: list[Outcome] = []
        failures: list[ItemFailure] = []
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                for op in newest:
                    if op.key.collection not in INDEXES:
                        unknown = ValueError(f"unknown index {op.key.collection!r}")
                        failures.append(ItemFailure(op, unknown, Severity.REFUSED))
                        continue
                    outcomes.append(self._apply_one(op))
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                self._shards.clear()  # a shard created in the transaction is gone with it
                # locked, busy, disk I/O: may pass
                level = Severity.RETRIABLE if isinstance(exc, sqlite3.OperationalError) else Severity.REFUSED
                return ApplyResult(failures=[ItemFailure(op, exc, level) for op in newest])
        changed, stale, unchanged = tally(outcomes)
        return ApplyResult(changed, stale + dropped, unchanged, failures)

    def _apply_one(self, op: Operation) -> Outcome:
        c = self._conn
        index, item_id = op.key.collection, op.key.id
        row = c.execute(
            "SELECT rid, version, deleted, doc FROM docs WHERE idx = ? AND id = ?", (index, item_id)
        ).fetchone()
        held = None if row is None else Held(row[1], None if row[2] else json.loads(row[3]))
        decided = outcome(op, held)
        if decided is Outcome.STALE:
            return decided
        if row is not None:
            rid = row[0]
            c.execute(f"DELETE FROM {self._shard(rid)} WHERE rowid = ?", (rid,))
            c.execute("DELETE FROM doc_topics WHERE rid = ?", (rid,))
        if isinstance(op, Put):
            doc = dict(op.doc)
            values = (op.version, json.dumps(doc), doc.get("authorId"), doc.get("createdAt"))
            if row is None:
                rid = c.execute(
                    "INSERT INTO docs (idx, id, version, deleted, doc, author, created) VALUES (?, ?, ?, 0, ?, ?, ?)",
                    (index, item_id, *values),
                ).lastrowid
            else:
                c.execute(
                    "UPDATE docs SET version = ?, deleted = 0, doc = ?, author = ?, created = ? WHERE rid = ?",
                    (*values, rid),
                )
            c.execute(f"INSERT INTO {self._shard(rid)} (rowid, text) VALUES (?, ?)", (rid, text_of(index, doc)))
            c.executemany(
                "INSERT OR IGNORE INTO doc_topics (rid, topic) VALUES (?, ?)",
                [(rid, str(t)) for t in doc.get("topics", [])],
            )
        elif row is None:
            c.execute(
                "INSERT INTO docs (idx, id, version, deleted) VALUES (?, ?, ?, 1)", (index, item_id, op.version)
            )
        else:
            c.execute(
                "UPDATE docs SET version = ?, deleted = 1, doc = NULL, author = NULL, created = NULL WHERE rid = ?",
                (op.version, row[0]),
            )
        return decided

    def _shard(self, rid: int) -> str:
        """The full-text shard of ``rid``, created on its first document."""
        name = shard_of(rid)
        if name not in self._shards:
            self._conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {name} USING fts5({SHARD_COLUMNS})")
            self._shards.add(name)
        return name

    # -- reads --------------------------------------------------------------------------------------
    def live_items(self, collection: str, page: int = 5000) -> Iterator[tuple[ItemKey, Document]]:
        after = -1
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT rid, id, doc FROM docs WHERE idx = ? AND deleted = 0 AND rid > ? ORDER BY rid LIMIT ?",
                    (collection, after, page),
                ).fetchall()
            for rid, item_id, doc in rows:
                after = rid
                yield ItemKey(collection, item_id), json.loads(doc)
            if len(rows) < page:
                return

    def read_items(self, keys: Sequence[ItemKey]) -> dict[ItemKey, Document]:
        """The live documents of ``keys`` (absent: no document or a tombstone)."""
        out: dict[ItemKey, Document] = {}
        wanted = list(keys)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            pairs = ", ".join("(?, ?)" for _ in chunk)
            params = [value for key in chunk for value in (key.collection, key.id)]
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT idx, id, doc FROM docs WHERE deleted = 0 AND (idx, id) IN (VALUES {pairs})", params
                ).fetchall()
            for index, item_id, doc in rows:
                out[ItemKey(index, item_id)] = json.loads(doc)
        return out

    def find_keys(self, collection: str, equals: Mapping[str, str], partition: str | None = None) -> list[ItemKey]:
        found = []
        for key, doc in self.live_items(collection):
            if all(doc.get(k) == v for k, v in equals.items()):
                found.append(key)
        return found

    def search(self, index: str, query: str, filters: Mapping[str, Any], limit: int = 20) -> list[dict[str, Any]]:
        """Full-text search, best match first (bm25) among the newest ``candidates`` matching
        documents; without words, the newest documents.

        Filters (posts): ``authorId``, ``topics`` (any of), ``createdAfter`` / ``createdBefore``
        (ISO-8601 UTC, inclusive / exclusive)."""
        check(index, filters)
        terms = words(query)
        where, params = ["d.idx = ?", "d.deleted = 0"], [index]
        if "authorId" in filters:
            where.append("d.author = ?")
            params.append(str(filters["authorId"]))
        topics = topics_of(filters)
        if topics:
            marks = ", ".join("?" for _ in topics)
            where.append(f"EXISTS (SELECT 1 FROM doc_topics t WHERE t.rid = d.rid AND t.topic IN ({marks}))")
            params += topics
        if "createdAfter" in filters:
            where.append("d.created >= ?")
            params.append(str(filters["createdAfter"]))
        if "createdBefore" in filters:
            where.append("d.created < ?")
            params.append(str(filters["createdBefore"]))
        if not terms:
            sql = f"SELECT d.doc FROM docs d WHERE {' AND '.join(where)} ORDER BY d.created DESC, d.id LIMIT ?"
            with self._lock:
                rows = self._conn.execute(sql, [*params, limit]).fetchall()
            return [json.loads(r[0]) for r in rows]
        match = " ".join(f'"{t}"' for t in terms[:-1]) + (" " if len(terms) > 1 else "") + f'"{terms[-1]}"*'
        found: list[tuple[float, str, int]] = []  # (bm25, created, rid): each shard's best
        taken = 0  # candidates ranked so far
        with self._lock:
            for shard in self._shards_newest_first():
                rows = self._conn.execute(
                    "SELECT score, created, rid, count(*) OVER () FROM ("
                    f"SELECT bm25({shard}) AS score, d.created AS created, d.rid AS rid "
                    f"FROM {shard} JOIN docs d ON d.rid = {shard}.rowid WHERE {shard} MATCH ? "
                    f"AND {' AND '.join(where)} "
                    f"ORDER BY {shard}.rowid DESC LIMIT ?) ORDER BY score, created DESC LIMIT ?",
                    [match, *params, self.candidates - taken, limit],
                ).fetchall()
                found += [(score, created, rid) for score, created, rid, _count in rows]
                taken += rows[0][3] if rows else 0
                if taken >= self.candidates:
                    break
            found.sort(key=lambda row: row[1] or "", reverse=True)  # ties: the newest first
            found.sort(key=lambda row: row[0])  # best match first (bm25 is lower for better)
            best = [rid for _score, _created, rid in found[:limit]]
            marks = ", ".join("?" for _ in best)
            docs = dict(self._conn.execute(f"SELECT rid, doc FROM docs WHERE rid IN ({marks})", best).fetchall())
        return [json.loads(docs[rid]) for rid in best]

    def _shards_newest_first(self) -> list[str]:
        names = self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'fts_*'")
        numbers = [int(m.group(1)) for (name,) in names if (m := SHARD_NAME.fullmatch(name))]
        return [f"fts_{n}" for n in sorted(numbers, reverse=True)]


class SqliteDigests:
    """Range digests of the embedded engine, computed by SQLite with the same item hash and buckets
    as the graph server's (:mod:`projectors.stores.digests`). The engine runs in the verifying
    process, so this saves holding every item, not the CPU of hashing them."""

    def __init__(self, store: SqliteSearchStore) -> None:
        self.store = store

    def _run(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self.store._lock:
            return self.store._conn.execute(sql, params).fetchall()

    def count(self, collection: str) -> int:
        return int(self._run("SELECT count(*) FROM docs WHERE idx = ? AND deleted = 0", [collection])[0][0])

    def digests(self, collection: str, buckets: int) -> dict[int, tuple[int, int]]:
        rows = self._run(
            "SELECT key_bucket(id, ?) AS b, count(*), sum(item_hash(doc)) FROM docs "
            "WHERE idx = ? AND deleted = 0 GROUP BY b", [buckets, collection],
        )
        return {int(b): (int(c), int(total)) for b, c, total in rows}

    def ids_in(self, collection: str, buckets: int, chosen: list[int]) -> list[str]:
        marks = ", ".join("?" for _ in chosen)
        rows = self._run(
            f"SELECT id FROM docs WHERE idx = ? AND deleted = 0 AND key_bucket(id, ?) IN ({marks})",
            [collection, buckets, *chosen],
        )
        return [str(r[0]) for r in rows]
