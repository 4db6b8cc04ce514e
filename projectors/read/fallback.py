"""Read services' answers from PostgreSQL, for when a projection's store does not answer.

Each read is the projection's own spec, asked for one answer: the feed's visibility rule
(``projections/feed.py``), the counters' spec by key, the notifications' spec of one recipient, the
graph's friend-of-friend rule in SQL, the search indexes' documents with PostgreSQL's full-text
search. Same shapes as the store's answers; a
slower path, bounded by ``PROJECTORS_READ_FALLBACK_TIMEOUT_S`` (connection and statement timeout).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from projectors.model import Document, ItemKey
from projectors.projections import projection as projection_of
from projectors.projections.base import is_uuid
from projectors.projections.counters import CountersProjection, counter_key
from projectors.projections.feed import POST_COLUMNS, item_of, post_fields, visible_to
from projectors.projections.notifications import NotificationsProjection
from projectors.projections.search import SearchProjection
from projectors.read.cursor import NOTIFICATIONS, Position, ordered, past
from projectors.settings import Settings
from projectors.source import PostgresSource
from projectors.stores.search_common import check, words

# {after}: the keyset condition of a cursor's position (read/cursor.py), or nothing on a first page
FEED_AFTER = " AND (po.created_at, po.id) < (%(at)s::timestamptz, %(post)s::uuid)"
FEED_PAGE = (
    f"SELECT {POST_COLUMNS} FROM posts po "
    "WHERE (po.author_id = %(r)s OR po.author_id IN (SELECT followee_id FROM follows WHERE follower_id = %(r)s)) "
    f"AND {visible_to('%(r)s::uuid')}{{after}} "
    "ORDER BY po.created_at DESC, po.id DESC LIMIT %(limit)s"
)
# the graph's SUGGESTIONS rule (read/queries.py), in SQL over the source tables
SUGGESTIONS = """
SELECT s.id::text, s.handle::text, count(DISTINCT m.followee_id) AS mutual
FROM follows m
JOIN follows f2 ON f2.follower_id = m.followee_id
JOIN users s ON s.id = f2.followee_id
WHERE m.follower_id = %(id)s AND s.id <> %(id)s
  AND NOT EXISTS (SELECT 1 FROM follows x WHERE x.follower_id = %(id)s AND x.followee_id = s.id)
  AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = %(id)s AND b.blocked_id = s.id)
  AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = s.id AND b.blocked_id = %(id)s)
GROUP BY s.id, s.handle
ORDER BY mutual DESC, s.handle::text LIMIT %(limit)s
"""
SEARCH_TEXT = {
    "posts": "coalesce(body, '') || ' ' || coalesce(array_to_string(topics, ' '), '')",  # the store's: body, topics
    "users": "coalesce(handle::text, '') || ' ' || coalesce(display_name, '') || ' ' || coalesce(bio, '')",
}


class PostgresReads:
    """One connection, opened when first needed and again after a failure."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conn: psycopg.Connection[Any] | None = None

    def _source(self) -> PostgresSource:
        if self._conn is None or self._conn.closed or self._conn.broken:
            timeout_ms = int(self.settings.read.fallback_timeout_s * 1000)
            conninfo = make_conninfo(
                self.settings.pg.conninfo(),
                connect_timeout=max(1, int(self.settings.read.fallback_timeout_s)),
                options=f"-c statement_timeout={timeout_ms} -c default_transaction_read_only=on",
            )
            self._conn = psycopg.connect(conninfo, autocommit=True)
        return PostgresSource(self._conn)

    def _rows(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        source = self._source()
        with source.conn.cursor() as cur:
            cur.execute(sql, params)  # type: ignore[arg-type]
            return cur.fetchall()

    def feed_page(self, recipient_id: str, limit: int, position: Position | None = None) -> list[dict[str, Any]]:
        """The feed's items after ``position`` (from the first without one), newest first."""
        if not is_uuid(recipient_id):
            return []
        params: dict[str, Any] = {"r": recipient_id, "limit": limit}
        if position is not None:
            if not is_uuid(position.id):
                return []  # a signed cursor holds a post id: never the case
            params.update(at=position.at, post=position.id)
        sql = FEED_PAGE.format(after="" if position is None else FEED_AFTER)
        rows = self._rows(sql, params)
        return [dict(item_of(recipient_id, post_fields(*row))[1]) for row in rows]

    def counters(self, subjects: Sequence[str], kinds: Sequence[str]) -> dict[str, dict[str, int]]:
        keys = [counter_key(s, k) for s in dict.fromkeys(subjects) if is_uuid(s) for k in kinds]
        found = CountersProjection().spec_for(keys, self._source()) if keys else {}
        out: dict[str, dict[str, int]] = {subject: {} for subject in subjects}
        for key, doc in found.items():
            out[key.partition][str(doc["kind"])] = int(doc["count"])
        return out

    def items(self, projection: str, keys: Sequence[ItemKey]) -> dict[str, Document]:
        """The projection's spec of ``keys``: what its store holds for them when it is caught up."""
        found = projection_of(projection, self.settings).spec_for(keys, self._source()) if keys else {}
        return {key.id: doc for key, doc in found.items()}

    def notifications(
        self, user_id: str, limit: int, unread_only: bool, position: Position | None = None
    ) -> list[dict[str, Any]]:
        """The notifications spec of the user's items after ``position``, newest first (``latestAt``,
        then id: ``read/cursor.py``)."""
        if not is_uuid(user_id):
            return []
        docs = NotificationsProjection().items_of([user_id], self._source())
        items = ordered(NOTIFICATIONS, (dict(d) for d in docs.values() if not (unread_only and d["read"])))
        return past(NOTIFICATIONS, items, position)[:limit]

    def unread_count(self, user_id: str) -> int:
        if not is_uuid(user_id):
            return 0
        docs = NotificationsProjection().items_of([user_id], self._source())
        return sum(1 for d in docs.values() if not d["read"])

    def suggestions(self, user_id: str, limit: int) -> list[dict[str, Any]]:
        if not is_uuid(user_id):
            return []
        rows = self._rows(SUGGESTIONS, {"id": user_id, "limit": limit})
        return [{"id": i, "handle": h, "mutual": int(n)} for i, h, n in rows]

    def search(self, index: str, query: str, filters: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """PostgreSQL's full-text search over the same documents (``simple`` configuration; ranked by
        ``ts_rank``, the newest first without words). Filters as the store's: authorId, topics,
        createdAfter, createdBefore (posts)."""
        kind = next(k for k in SearchProjection.kinds if k.collection == index)
        where, params = ["TRUE"], {"limit": limit, "q": query}
        if index == "posts":
            if "authorId" in filters:
                where.append("author_id = %(author)s::uuid")
                params["author"] = str(filters["authorId"])
            topics = filters.get("topics")
            if topics:
                where.append("topics && %(topics)s::text[]")
                params["topics"] = [str(t) for t in (topics if isinstance(topics, list) else [topics])]
            if "createdAfter" in filters:
                where.append("created_at >= %(after)s::timestamptz")
                params["after"] = str(filters["createdAfter"])
            if "createdBefore" in filters:
                where.append("created_at < %(before)s::timestamptz")
                params["before"] = str(filters["createdBefore"])
        check(index, filters)
        text = f"to_tsvector('simple', {SEARCH_TEXT[index]})"
        terms = [t.lower() for t in words(query)]
        if terms:  # every word, the last one as a prefix (as the search stores match)
            params["q"] = " & ".join([*terms[:-1], terms[-1] + ":*"])
            where.append(f"{text} @@ to_tsquery('simple', %(q)s)")
            order = f"ts_rank({text}, to_tsquery('simple', %(q)s)) DESC, id"
        else:
            order = "created_at DESC, id" if index == "posts" else "id"
        # the kind's SQL selects the document's columns; the ordering columns come from the table
        sql = kind.sql.format(where=" AND ".join(where)) + f" ORDER BY {order} LIMIT %(limit)s"
        return [dict(kind.item(row)[1]) for row in self._rows(sql, params)]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

