"""The client read services use: a feed page, counters, friend-of-friend suggestions, search,
notifications and the unread count.

Queries follow the documented item shapes (docs/projections.md, schemas/projections/); tombstones
(``deleted = true``) are never returned.

Read services hold read-only credentials only: the Cosmos read key, a graph session that cannot
write (FalkorDB ``GRAPH.RO_QUERY``; Neo4j ``READ_ACCESS`` sessions as the reader user) and
Meilisearch's search key. The client runs its own queries; it has no method for arbitrary ones.

When a store does not answer within ``PROJECTORS_READ_STORE_TIMEOUT_S`` (or fails), or its
projection is known to be more than ``PROJECTORS_READ_MAX_BEHIND_S`` behind its source (when set;
:class:`Freshness` measures it in the background), the call is answered from PostgreSQL instead
(``read/fallback.py``: the projection's own spec, the same shape),
marked ``source == "postgres"`` on the answer and counted in ``fallbacks`` and the
``projectors_read_fallbacks_total`` metric; a read service gets a slower answer, not an exception.
Only when PostgreSQL does not answer either does the call raise :class:`ReadUnavailable`, naming
both. Stores are connected on first use, so one store being down never stops the others' reads. A
store that is not there at all (the embedded search database missing at its configured path) raises
:class:`ConfigurationError` naming the path and the setting: the client never creates a store, and
no fallback hides a wrong setting.

Each read goes to the live generation of its store (``stores/generations.py``): the client re-reads
the generation pointer at most once a second, and at once when a read fails (the generation it knew
may just have been dropped by ``projectors rebuild``, which waits longer than that before dropping).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from projectors.errors import ConfigurationError
from projectors.model import ItemKey
from projectors.projections import descriptor
from projectors.projections.base import is_uuid, iso
from projectors.projections.counters import COLLECTION as COUNTERS
from projectors.projections.notifications import unread_at, unread_key
from projectors.read.answering import AnsweringClient, ReadUnavailable
from projectors.read.answers import Counts, Items, Page, paged
from projectors.read.cursor import FEED, NOTIFICATIONS, ordered, past
from projectors.read.queries import (
    CELEBRITY_POSTS,
    CELEBRITY_TIES,
    COUNTER_KINDS,
    FEED_AFTER,
    FEED_FOLLOWS,
    FEED_PAGE,
    FEED_TIES,
    NOTIFICATION_TIES,
    NOTIFICATIONS_AFTER,
    NOTIFICATIONS_PAGE,
    SUGGESTIONS,
)
from projectors.read.redis_reads import FIRST_PAGES, checked
from projectors.stores.generations import suffix

log = logging.getLogger(__name__)
REDIS_PAUSE_S = 10.0  # after Redis failed a first page, feed reads leave it alone this long

# what read services import from here, besides the client: its answers and its one exception
__all__ = ["Counts", "Items", "Page", "ReadClient", "ReadUnavailable", "commit_token"]


def commit_token(conn: Any) -> int:
    """Read-your-writes: call right after a write's COMMIT, on any connection to the source; pass the
    token as ``after=`` to a read. It is the WAL position then (at or past the commit)."""
    from projectors.capture.preflight import parse_lsn

    row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    return parse_lsn(str(row[0]))


class ReadClient(AnsweringClient):
    """The reads (the machinery each goes through: ``read/answering.py``)."""

    # -- the reads ----------------------------------------------------------------------------------
    def feed_page(
        self, recipient_id: str, limit: int = 50, cursor: str | None = None, after: int | None = None
    ) -> Page:
        """The recipient's feed, newest first, ``limit`` items a page: their ``userFeed`` partition
        (posts fanned out on write) merged with the posts of the celebrities they follow
        (``feedFollows``, ``feedPosts``: fanned out on read), ordered by ``(createdAt, postId)``
        descending (``read/cursor.py``). ``cursor``: the ``next_cursor`` of the previous page (None:
        the first page); :class:`InvalidCursor` for a cursor not given for this recipient's feed.
        Keyset paging: each source is asked for the items after the cursor's position only, so any
        page costs the same. Partition queries only: one for the page, one for the subscriptions, one
        per followed celebrity, and one more for each of those that fills the page (the items tied
        with its last one). ``after``: a writer's commit token (read-your-writes)."""
        position = self.cursors.decode(FEED, recipient_id, cursor)
        if position is None and after is None:
            hot = self.hot_feed_page(recipient_id, limit)
            if hot is not None:
                return hot
        keyset = {} if position is None else {"at": position.at, "post": position.id}
        cond = "" if position is None else FEED_AFTER

        def read(generation: int) -> Page:
            def container(name: str) -> Any:
                return self._db("feed").get_container_client(name + suffix(generation))

            def query(name: str, sql: str, partition: str, **params: Any) -> list[dict[str, Any]]:
                parameters = [{"name": f"@{k}", "value": v} for k, v in params.items()]
                return list(container(name).query_items(sql.format(after=cond), parameters=parameters,
                                                        partition_key=partition))

            def newest(name: str, sql: str, ties: str, partition: str, **params: Any) -> list[dict[str, Any]]:
                # one more than a page says whether another page follows
                items = query(name, sql, partition, limit=limit + 1, **params, **keyset)
                if len(items) == limit + 1:
                    items += query(name, ties, partition, tie=items[-1]["createdAt"], **params, **keyset)
                return items

            items = newest("userFeed", FEED_PAGE, FEED_TIES, recipient_id, recipient=recipient_id)
            for follow in query("feedFollows", FEED_FOLLOWS, recipient_id, recipient=recipient_id):
                author = follow["authorId"]
                for post in newest("feedPosts", CELEBRITY_POSTS, CELEBRITY_TIES, author, author=author):
                    items.append({"id": f"{recipient_id}:{post['postId']}", "recipientId": recipient_id, **post})
            return paged(self.cursors, FEED, recipient_id, past(FEED, ordered(FEED, items), position), limit)

        def fallback() -> Page:
            items = self._postgres.feed_page(recipient_id, limit + 1, position)
            return paged(self.cursors, FEED, recipient_id, items, limit)

        return self._answer("feed", read, fallback, after)  # type: ignore[no-any-return]

    _redis_paused_until = 0.0

    def hot_feed_page(self, recipient_id: str, limit: int) -> Page | None:
        """The first page from the redis projection's copy (the same items and order as the feed
        store's), its TTL extended; None when Redis does not hold it (the worker is then asked to
        write it, for the next read), fails (Redis is then left alone for ``REDIS_PAUSE_S``), or the
        redis projection is more than ``PROJECTORS_READ_MAX_BEHIND_S`` behind."""
        if limit > self.settings.redis.feed_page_size or not is_uuid(recipient_id):
            return None
        bound = self.settings.read.max_behind_s
        lag = self.behind_s("redis") if bound > 0 else None
        if time.monotonic() < self._redis_paused_until or (lag is not None and lag > bound):
            return None
        redis = self.redis_reads[0]
        try:
            generation = self.generation("redis")
            items = redis.feed_page(recipient_id, generation)
            if items is None:
                FIRST_PAGES.labels("feed store").inc()
                redis.want(recipient_id, generation)
                return None
        except Exception as exc:
            log.warning("feed pages from Redis paused %.0fs: %s: %s", REDIS_PAUSE_S, type(exc).__name__, exc)
            self._redis_paused_until = time.monotonic() + REDIS_PAUSE_S
            return None
        FIRST_PAGES.labels("redis").inc()
        return paged(self.cursors, FEED, recipient_id, items[: limit + 1], limit)

    def counters(self, subject_ids: Iterable[str], after: int | None = None) -> Counts:
        """``{subjectId: {kind: count}}`` for posts (likes, replies) and users (followers, following, posts);
        a subject without counters (unknown, removed, not a uuid) gets ``{}``. One request for up to
        1,000 subjects: a query of their partitions (``c.subjectId IN (...)``, partition key
        ``/subjectId``), which Cosmos sends to those partitions only. A missing item is absent from
        the answer; a container dropped by a rebuild meanwhile fails the query (404), and the read
        goes again to the live generation."""
        subjects = list(subject_ids)

        def read(generation: int) -> dict[str, dict[str, int]]:
            # a subject id that is not a PostgreSQL uuid has no counters
            wanted = [subject for subject in dict.fromkeys(subjects) if is_uuid(subject)]
            found = self._store("counters", generation).partitions_items(COUNTERS, wanted) if wanted else []
            out: dict[str, dict[str, int]] = {subject: {} for subject in subjects}
            for key, doc in found:
                if key.partition in out and str(doc["kind"]) in COUNTER_KINDS:
                    out[key.partition][str(doc["kind"])] = int(doc["count"])
            return out

        return self._answer(  # type: ignore[no-any-return]
            "counters", read, lambda: self._postgres.counters(subjects, COUNTER_KINDS), after
        )

    def notifications(
        self, user_id: str, limit: int = 50, cursor: str | None = None, unread_only: bool = False,
        after: int | None = None,
    ) -> Page:
        """The user's notifications (``schemas/projections/notifications``), newest first (by
        ``(latestAt, id)`` descending), ``limit`` a page; only unread ones with ``unread_only``.
        ``cursor``: the ``next_cursor`` of the previous page (keyset paging, ``read/cursor.py``).
        Queries of the user's partition only: one for the page, one more when the page is full (the
        items tied with its last one). Items past their ``expiresAt`` are never returned.

        Marking read is the app's write to PostgreSQL, not to the store:
        ``projectors.projections.notifications.mark_read(conn, user_id, up_to)`` (every item whose
        ``latestAt`` is at or before ``up_to``: pass the newest ``latestAt`` shown); the projection
        follows it through capture like any other change."""
        position = self.cursors.decode(NOTIFICATIONS, user_id, cursor)
        keyset = {} if position is None else {"at": position.at, "item": position.id}

        def read(generation: int) -> Page:
            if not is_uuid(user_id):
                return Page()
            container = self._db("notifications").get_container_client("notifications" + suffix(generation))
            unread = " AND c.read = false" if unread_only else ""
            cond = "" if position is None else NOTIFICATIONS_AFTER

            def query(sql: str, **params: Any) -> list[dict[str, Any]]:
                parameters = [{"name": f"@{k}", "value": v} for k, v in params.items()]
                return list(container.query_items(sql.format(unread=unread, after=cond), parameters=parameters,
                                                  partition_key=user_id))

            now = iso(datetime.now(UTC))
            items = query(NOTIFICATIONS_PAGE, recipient=user_id, now=now, limit=limit + 1, **keyset)
            if len(items) == limit + 1:
                items += query(NOTIFICATION_TIES, recipient=user_id, now=now, tie=items[-1]["latestAt"], **keyset)
            found = past(NOTIFICATIONS, ordered(NOTIFICATIONS, items), position)
            return paged(self.cursors, NOTIFICATIONS, user_id, found, limit)

        def fallback() -> Page:
            items = self._postgres.notifications(user_id, limit + 1, unread_only, position)
            return paged(self.cursors, NOTIFICATIONS, user_id, items, limit)

        return self._answer("notifications", read, fallback, after)  # type: ignore[no-any-return]

    def unread_count(self, user_id: str, after: int | None = None) -> int:
        """How many of the user's notifications are unread (:meth:`unread_counts`, the number alone)."""
        return self.unread_counts(user_id, after)[user_id]["unread"]

    def unread_counts(self, user_id: str, after: int | None = None) -> Counts:
        """``{user_id: {"unread": n}}`` with ``source`` and ``caught_up``: one point read of
        ``<userId>:unreadNotifications`` (absent: none), counting its unread items not yet expired."""

        def read(generation: int) -> dict[str, dict[str, int]]:
            if not is_uuid(user_id):
                return {user_id: {"unread": 0}}
            key = unread_key(user_id)
            found = self._store("notifications", generation).read_items([key])
            if not found:  # a missing item, or a container dropped by a rebuild meanwhile (404 both)
                self._db("notifications").get_container_client("notifications" + suffix(generation)).read()
            doc = found.get(key)
            return {user_id: {"unread": unread_at(doc, datetime.now(UTC)) if doc else 0}}

        def fallback() -> dict[str, dict[str, int]]:
            return {user_id: {"unread": self._postgres.unread_count(user_id)}}

        return self._answer("notifications", read, fallback, after)  # type: ignore[no-any-return]

    def suggestions(self, user_id: str, limit: int = 10, after: int | None = None) -> Page:
        def read(generation: int) -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = self._store("graph", generation).run(
                SUGGESTIONS, {"id": user_id, "limit": limit}
            )
            return rows

        return self._answer(  # type: ignore[no-any-return]
            "graph", read, lambda: self._postgres.suggestions(user_id, limit), after
        )

    def search(
        self, index: str, query: str, filters: dict[str, Any] | None = None, limit: int = 20, after: int | None = None
    ) -> Page:
        """Full-text search in ``posts`` (filters: authorId, topics, createdAfter/createdBefore) or ``users``."""

        def read(generation: int) -> list[Any]:
            result: list[Any] = self._store("search", generation).search(index, query, filters or {}, limit)
            return result

        return self._answer(  # type: ignore[no-any-return]
            "search", read, lambda: self._postgres.search(index, query, filters or {}, limit), after
        )

    def items(self, projection: str, keys: Iterable[ItemKey], after: int | None = None) -> Items:
        """The live items of ``keys`` in a Cosmos projection (absent: no such item), by point reads
        run together; from the projection's own spec in PostgreSQL when the store does not answer.
        The read of any projection whose items are looked up by key, e.g.
        ``items("publicProfiles", [profile_key(user_id), ...])``."""
        wanted = [k for k in dict.fromkeys(keys) if is_uuid(k.partition or k.id)]
        if descriptor(projection).store != "cosmos":
            raise ConfigurationError(f"items() reads Cosmos projections by key; {projection!r} is not one")

        def read(generation: int) -> Items:
            found = self._store(projection, generation).read_items(wanted) if wanted else {}
            return Items({key.id: doc for key, doc in found.items()})

        def fallback() -> Items:
            return Items(self._postgres.items(projection, wanted))

        return self._answer(projection, read, fallback, after)  # type: ignore[no-any-return]

    # -- the redis projection (logic: read/redis_reads.py) ------------------------------------------
    def profiles(self, user_ids: Iterable[str], after: int | None = None) -> Items:
        """Profiles by user id (handle, displayName, bio, followers, following, posts) from Redis's
        hashes; from PostgreSQL when Redis does not answer or is behind."""
        ids = [u for u in dict.fromkeys(user_ids) if is_uuid(u)]
        redis, postgres = self.redis_reads
        return self._answer(  # type: ignore[no-any-return]
            "redis", lambda g: Items(redis.profiles(ids, g)), lambda: Items(postgres.profiles(ids)), after
        )

    def leaderboard(self, kind: str, day: str | None = None, limit: int = 10, after: int | None = None) -> Page:
        """The top ``limit`` of a leaderboard (``authors``: likes received, ``posts``: reactions +
        replies, ``topics``: public posts) of a UTC day (``YYYY-MM-DD``, today by default; ``all``:
        authors of all time): ``[{member, score}]``, the highest score first."""
        board_day = checked(self.settings, kind, day)
        redis, postgres = self.redis_reads
        return self._answer(  # type: ignore[no-any-return]
            "redis", lambda g: redis.leaderboard(kind, board_day, limit, g),
            lambda: postgres.leaderboard(self.settings, kind, board_day, limit), after,
        )

    def trending_topics(self, day: str | None = None, limit: int = 10, after: int | None = None) -> Page:
        """The topics with the most public posts on a UTC day (today by default)."""
        return self.leaderboard("topics", day, limit, after)
