"""Reads of the source of truth (PostgreSQL) for the projections: tickets and snapshots."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import tuple_row

TICKET_SEQUENCE = "projectors_read_ticket"


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


class PostgresSource:
    """A connection to the source database, used by one thread at a time.

    ``read()`` takes a ticket and then opens a REPEATABLE READ snapshot: every statement inside sees
    the same state, which contains every change committed before the ticket was taken.
    """

    def __init__(self, conn: psycopg.Connection[Any], counts: SourceCounts | None = None) -> None:
        self.conn = conn
        self.counts = counts if counts is not None else SourceCounts()

    def ticket(self) -> int:
        self.counts.queries += 1
        row = self.conn.execute(f"SELECT nextval('{TICKET_SEQUENCE}')").fetchone()
        assert row is not None
        return int(row[0])

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
