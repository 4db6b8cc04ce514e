"""The embedded search engine: SQLite FTS5 (bm25 ranking, unicode61 tokenizer, prefix matching).

Documents live as JSON in ``docs`` with their version (tombstones: ``deleted = 1``); the text goes
to the FTS5 table ``fts`` under the document's rowid; topics of posts go to ``doc_topics`` for the
any-of filter. WAL mode: one writer process (the worker) and any number of readers.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from projectors.errors import Severity
from projectors.model import ApplyResult, Document, ItemFailure, ItemKey, Operation, Put
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
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(text, tokenize = 'unicode61 remove_diacritics 2');
"""


def text_of(index: str, doc: Document) -> str:
    if index == "posts":
        return " ".join([str(doc.get("body", "")), *map(str, doc.get("topics", []))])
    return " ".join(str(doc.get(f, "")) for f in ("handle", "displayName", "bio"))


class SqliteSearchStore:
    """``create=False`` (readers): open an existing database only; a missing file raises
    ``sqlite3.OperationalError`` instead of being created empty."""

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = path
        self.create = create
        self._lock = threading.Lock()
        self._conn = self._connect()
        self._dropped = False

    def _connect(self) -> sqlite3.Connection:
        mode = "rwc" if self.create else "rw"
        conn = sqlite3.connect(
            f"{self.path.absolute().as_uri()}?mode={mode}", uri=True, timeout=30, check_same_thread=False,
            isolation_level=None,
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
        return conn

    def ensure_schema(self) -> None:
        with self._lock:
            if self._dropped:  # created again after a drop
                self._conn, self._dropped = self._connect(), False
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
            c.execute("DELETE FROM fts WHERE rowid = ?", (rid,))
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
            c.execute("INSERT INTO fts (rowid, text) VALUES (?, ?)", (rid, text_of(index, doc)))
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
        """Full-text search, best match first (bm25); without words, the newest documents.

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
        if terms:
            match = " ".join(f'"{t}"' for t in terms[:-1]) + (" " if len(terms) > 1 else "") + f'"{terms[-1]}"*'
            sql = (
                "SELECT d.doc FROM fts JOIN docs d ON d.rid = fts.rowid "
                f"WHERE fts MATCH ? AND {' AND '.join(where)} ORDER BY bm25(fts), d.created DESC LIMIT ?"
            )
            args: list[Any] = [match, *params, limit]
        else:
            sql = f"SELECT d.doc FROM docs d WHERE {' AND '.join(where)} ORDER BY d.created DESC, d.id LIMIT ?"
            args = [*params, limit]
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [json.loads(r[0]) for r in rows]
