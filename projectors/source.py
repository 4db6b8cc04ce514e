"""Reads of the source of truth (PostgreSQL) for the projections: tickets and snapshots."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from projectors.errors import RetriableError

log = logging.getLogger(__name__)

TICKET_SEQUENCE = "projectors_read_ticket"

# How many of the transactions (Debezium's 32-bit ``txId``, or a full xid8) the statement's snapshot
# does not see yet. A 32-bit id is widened with the epoch of the snapshot's xmax (an id above the
# xmax's low 32 bits is from the epoch before); a committed transaction's id is below xmax.
UNSEEN_TRANSACTIONS = """
SELECT count(*) FROM (SELECT pg_current_snapshot() AS snap) s
CROSS JOIN LATERAL (SELECT pg_snapshot_xmax(s.snap)::text::bigint AS xmax) m
CROSS JOIN unnest(%s::bigint[]) AS t(id)
CROSS JOIN LATERAL (SELECT CASE WHEN t.id >= 4294967296 THEN t.id
                                ELSE ((m.xmax >> 32) << 32) | t.id END AS wide) w
WHERE NOT pg_visible_in_snapshot(
    greatest(CASE WHEN w.wide > m.xmax THEN w.wide - 4294967296 ELSE w.wide END, 0)::text::xid8, s.snap)
"""
UNSEEN_WAIT_S = 30.0


class TransactionsNotVisible(RetriableError):
    """Transactions whose changes a batch holds are not visible to new snapshots yet."""


def array_literal(values: Sequence[str]) -> str:
    """A PostgreSQL array literal of ``values``, each quoted (any text is safe)."""
    if not values:
        return "{}"
    plain = "".join(values)
    if "\\" not in plain and '"' not in plain:  # ids: nothing to escape, joins in C
        return '{"' + '","'.join(values) + '"}'
    return "{" + ",".join(['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]) + "}"


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and set(map(type, value)) <= {str}


@dataclass
class SourceCounts:
    """Statements sent to the source and rows they returned (the load a projection puts on it)."""

    queries: int = 0
    rows: int = 0
    visibility_waits: int = 0  # ticket queries repeated because a transaction was not visible yet


class PostgresSource:
    """A connection to the source database, used by one thread at a time.

    ``read()`` takes a ticket and then opens a REPEATABLE READ snapshot: every statement inside sees
    the same state, which contains every change committed before the ticket was taken, and every
    transaction of ``must_see``.
    """

    def __init__(
        self, conn: psycopg.Connection[Any], counts: SourceCounts | None = None, must_see: Collection[int] = (),
    ) -> None:
        self.conn = conn
        self.counts = counts if counts is not None else SourceCounts()
        self.must_see = sorted(must_see)

    def ticket(self) -> int:
        """The next ticket. With ``must_see`` (the transactions of the changes being projected), only
        once a new snapshot sees every one of them: PostgreSQL sends a transaction to logical
        decoding once its commit is flushed, and only after that removes it from the running
        transactions that snapshots exclude. A read in between would miss the change it was asked
        for (seen: on a loaded machine, a worker that took a change within milliseconds read the
        rows without it)."""
        query, params = f"SELECT nextval('{TICKET_SEQUENCE}')", []
        if self.must_see:  # one statement: the ticket, and how many of them its snapshot misses
            query, params = f"{query}, ({UNSEEN_TRANSACTIONS})", [self.must_see]
        started, pause = time.monotonic(), 0.001
        while True:
            self.counts.queries += 1
            row = self.conn.execute(query, params).fetchone()
            assert row is not None
            if len(row) == 1 or row[1] == 0:
                return int(row[0])
            self.counts.visibility_waits += 1
            if time.monotonic() - started > UNSEEN_WAIT_S:
                raise TransactionsNotVisible(
                    f"{row[1]} of the transactions {self.must_see[:5]}... not visible after {UNSEEN_WAIT_S:.0f}s"
                )
            log.debug("%d of %d transactions not visible yet: waiting %.3fs", row[1], len(self.must_see), pause)
            time.sleep(pause)
            pause = min(2 * pause, 0.05)

    @contextmanager
    def read(self) -> Iterator[int]:
        """Yield a ticket; statements inside the block share one snapshot taken after it."""
        ticket = self.ticket() if self.conn.autocommit else 0
        if self.conn.autocommit:
            self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with self.conn.transaction():
                yield ticket
        else:
            yield ticket

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of ``sql``. A parameter that is a list of strings is sent as one array literal: the
        SQL casts it (``%s::uuid[]``, ``%s::text[]``). psycopg's own list dumping checks every
        element with a regex: it was a tenth of a batch's time."""
        with self.conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(sql, [array_literal(p) if _str_list(p) else p for p in params])
            rows = cur.fetchall()
        self.counts.queries += 1
        self.counts.rows += len(rows)
        return rows

    def stream(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = (), page: int = 5000
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of a server-side cursor, fetched ``page`` at a time (scales to millions of rows)."""
        with self.conn.cursor(name="projectors_stream", row_factory=tuple_row) as cur:
            cur.itersize = page
            cur.execute(sql, params)  # type: ignore[arg-type]
            self.counts.queries += 1
            for row in cur:
                self.counts.rows += 1
                yield row
