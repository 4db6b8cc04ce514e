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

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, TypeVar

from azure.cosmos import CosmosClient
from prometheus_client import Counter as MetricCounter
from pydantic import SecretStr

from projectors.errors import ConfigurationError, ProjectorsError
from projectors.model import ItemKey
from projectors.projections import descriptor
from projectors.projections.base import is_uuid, iso
from projectors.projections.counters import COLLECTION as COUNTERS
from projectors.projections.counters import CountersProjection
from projectors.projections.notifications import unread_at, unread_key
from projectors.read.cursor import FEED, NOTIFICATIONS, Cursors, ordered, past
from projectors.read.fallback import PostgresReads
from projectors.read.redis_reads import PostgresRedisReads, RedisReads, checked
from projectors.settings import Settings
from projectors.stores.cosmos_reads import CosmosContainers
from projectors.stores.factory import generations, open_raw_store
from projectors.stores.generations import CosmosPointer, Generations, Neo4jPointer, suffix
from projectors.stores.graph_transports import graph_reader

R = TypeVar("R")
POINTER_TTL_S = 1.0
log = logging.getLogger(__name__)
# the azure SDK's background endpoint health check logs a traceback at ERROR when it runs after its
# client closed (every short-lived client): not a read service's concern, kept off its stderr
AZURE_HEALTH_CHECK_LOGGER = "azure.cosmos._GlobalEndpointManager"
logging.getLogger(AZURE_HEALTH_CHECK_LOGGER).setLevel(logging.CRITICAL)
FALLBACKS = MetricCounter(
    "projectors_read_fallbacks",
    "Read calls answered from PostgreSQL (the store did not answer, or was too far behind)",
    ["projection"],
)


class ReadUnavailable(ProjectorsError):
    """Neither the projection's store nor PostgreSQL answered."""


class Freshness:
    """How many seconds each projection a client reads is behind its source, measured by a daemon
    thread every ``every_s`` (its consumer group's committed position against the topics: no store
    read), so that no read waits for it. Unknown (None) until first measured, and again while the
    broker does not answer: an unknown lag never sends a read to PostgreSQL."""

    def __init__(self, settings: Settings, every_s: float) -> None:
        self.settings = settings
        self.every_s = every_s
        self._behind: dict[str, float] = {}
        self._wanted: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def behind_s(self, projection: str) -> float | None:
        with self._lock:
            self._wanted.add(projection)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="read-freshness", daemon=True)
                self._thread.start()
        return self._behind.get(projection)

    def _run(self) -> None:
        from confluent_kafka import Consumer

        from projectors.operations.status import seconds_behind

        consumer = Consumer({**self.settings.kafka.client_config(), "group.id": "projectors-read-freshness",
                             "enable.auto.commit": False})
        try:
            while not self._stop.is_set():
                for name in sorted(self._wanted):
                    try:
                        self._behind[name] = seconds_behind(self.settings, name, consumer)
                    except Exception as exc:  # the broker does not answer: unknown
                        log.debug("freshness of %s unknown: %s", name, exc)
                        self._behind.pop(name, None)
                self._stop.wait(self.every_s)
        finally:
            consumer.close()

    def close(self) -> None:
        self._stop.set()


class Page(list[dict[str, Any]]):
    """A list of items, with where it came from: ``"store"`` or ``"postgres"`` (the fallback), and,
    for a read given a writer's token, whether the projection had applied the write (``caught_up``).
    A paged list (feed, notifications) has ``next_cursor``: the cursor of the next page, None at the end."""

    source: str = "store"
    caught_up: bool | None = None
    next_cursor: str | None = None


class Counts(dict[str, dict[str, int]]):
    """Counters by subject, with ``source`` and ``caught_up`` as :class:`Page`."""

    source: str = "store"
    caught_up: bool | None = None


class Items(dict[str, Any]):
    """Items by id, with ``source`` and ``caught_up`` as :class:`Page`."""

    source: str = "store"
    caught_up: bool | None = None


def marked(answer: Any, source: str) -> Any:
    out = Items(answer) if isinstance(answer, Items) else Counts(answer) if isinstance(answer, dict) else Page(answer)
    out.source = source
    if isinstance(out, Page):
        out.next_cursor = getattr(answer, "next_cursor", None)
    return out


def paged(cursors: Cursors, kind: str, user: str, items: list[dict[str, Any]], limit: int) -> Page:
    """The first ``limit`` of ``items`` (already in the list's order, after the cursor's position,
    one more than a page when more follow) with the cursor of the next page."""
    page = Page(items[:limit])
    page.next_cursor = cursors.next_cursor(kind, user, page, len(items) > limit)
    return page


def cursor_key(settings: Settings) -> bytes:
    """``PROJECTORS_READ_CURSOR_KEY``, or one derived from the Cosmos read key (empty: a fixed one)."""
    key = settings.read.cursor_key.get_secret_value()
    if key:
        return key.encode()
    return hashlib.sha256(b"projectors-read-cursor:" + settings.cosmos.reader_key().encode()).digest()


def commit_token(conn: Any) -> int:
    """Read-your-writes: call right after a write's COMMIT, on any connection to the source; pass the
    token as ``after=`` to a read. It is the WAL position then (at or past the commit)."""
    from projectors.capture.preflight import parse_lsn

    row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    return parse_lsn(str(row[0]))

# {after}: the keyset condition of a cursor's position (the items after it), or nothing on a first page
FEED_AFTER = " AND (c.createdAt < @at OR (c.createdAt = @at AND c.postId < @post))"
FEED_PAGE = (
    "SELECT TOP @limit c.id, c.recipientId, c.postId, c.authorId, c.createdAt, c.bodyPreview, c.topics "
    "FROM c WHERE c.recipientId = @recipient AND c.deleted = false{after} ORDER BY c.createdAt DESC"
)
# the celebrities the recipient follows (fan-out on read), and each one's newest posts
FEED_FOLLOWS = "SELECT c.authorId FROM c WHERE c.recipientId = @recipient AND c.deleted = false"
CELEBRITY_POSTS = (
    "SELECT TOP @limit c.postId, c.authorId, c.createdAt, c.bodyPreview, c.topics "
    "FROM c WHERE c.authorId = @author AND c.deleted = false{after} ORDER BY c.createdAt DESC"
)
# the items of the same time as a page's last one (posts of one transaction share it): a page cut
# among them is completed, then ordered by post id, so it is the same page whatever the store returned
FEED_TIES = (
    "SELECT c.id, c.recipientId, c.postId, c.authorId, c.createdAt, c.bodyPreview, c.topics "
    "FROM c WHERE c.recipientId = @recipient AND c.deleted = false AND c.createdAt = @tie{after}"
)
CELEBRITY_TIES = (
    "SELECT c.postId, c.authorId, c.createdAt, c.bodyPreview, c.topics "
    "FROM c WHERE c.authorId = @author AND c.deleted = false AND c.createdAt = @tie{after}"
)
# a recipient's newest notifications (the unread counter, a point read, is not one of them), and the
# items of the same time as a page's last one (a page cut among them is completed, ordered by id)
NOTIFICATION_FIELDS = "c.id, c.recipientId, c.kind, c.postId, c.actorIds, c.count, c.latestAt, c.expiresAt, c.read"
NOTIFICATIONS_WHERE = (
    "c.recipientId = @recipient AND c.deleted = false AND c.kind != 'unreadNotifications' AND c.expiresAt > @now"
)
NOTIFICATIONS_AFTER = " AND (c.latestAt < @at OR (c.latestAt = @at AND c.id < @item))"
NOTIFICATIONS_PAGE = f"SELECT TOP @limit {NOTIFICATION_FIELDS} FROM c WHERE {NOTIFICATIONS_WHERE}{{unread}}{{after}} " \
    "ORDER BY c.latestAt DESC"
NOTIFICATION_TIES = (
    f"SELECT {NOTIFICATION_FIELDS} FROM c WHERE {NOTIFICATIONS_WHERE}{{unread}}{{after}} AND c.latestAt = @tie"
)
# a subject's counters are the items of its partition (``<subjectId>:<kind>``, partition ``subjectId``)
COUNTER_KINDS = tuple(kind.suffix.lstrip(":") for kind in CountersProjection.kinds)

# Friends of friends the user does not follow yet, has not blocked and is not blocked by, ranked by
# how many of the user's followees follow them. One query, both graph backends (FalkorDB counts an
# anonymous middle node once per row group, so the middle node is named and counted DISTINCT).
SUGGESTIONS = (
    "MATCH (me:User {id: $id})-[:FOLLOWS]->(m:User)-[:FOLLOWS]->(s:User) "
    "WHERE s.id <> $id AND NOT (me)-[:FOLLOWS]->(s) AND NOT (me)-[:BLOCKS]->(s) AND NOT (s)-[:BLOCKS]->(me) "
    "RETURN s.id AS id, s.handle AS handle, count(DISTINCT m) AS mutual ORDER BY mutual DESC, handle LIMIT $limit"
)


class ReadClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._cosmos: dict[str, CosmosClient] = {}  # per Cosmos projection (each may be its own account)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="read")
        self._postgres = PostgresReads(settings)
        self.fallbacks: Counter[str] = Counter()  # calls answered from PostgreSQL, by projection
        self._pointers: dict[str, Generations] = {}
        self._known: dict[str, tuple[int, float]] = {}  # projection -> (generation, read at)
        self._stores: dict[tuple[str, int], Any] = {}
        self._freshness = Freshness(settings, settings.read.max_behind_check_s)
        self.cursors = Cursors(cursor_key(settings))

    def _db(self, projection: str) -> Any:
        """The Cosmos database of ``projection``'s account, connected on first use (the client reads
        the account at creation)."""
        if projection not in self._cosmos:
            c = self.settings.cosmos.of(descriptor(projection).cosmos_account)
            self._cosmos[projection] = CosmosClient(
                c.endpoint, credential=c.reader_key(), connection_verify=c.verify_tls,
                enable_endpoint_discovery=False, connection_timeout=max(1, int(self.settings.read.store_timeout_s)),
            )
        return self._cosmos[projection].get_database_client(self.settings.cosmos.database)

    def _answer(
        self, projection: str, read: Callable[[int], R], fallback: Callable[[], R], after: int | None = None
    ) -> Any:
        """``read`` from the store within the bound, else ``fallback`` from PostgreSQL; with a
        writer's token (``after``), first wait up to ``PROJECTORS_READ_WAIT_S`` for the projection
        to apply it."""
        caught_up = None if after is None else self.wait_for(projection, after)
        answer = self._answer_now(projection, read, fallback)
        answer.caught_up = caught_up
        return answer

    def wait_for(self, projection: str, token: int) -> bool:
        """Wait until capture published everything up to ``token`` and ``projection``'s consumer
        group committed past it (no store read); False when the bound ran out first."""
        from projectors.operations.caught_up import wait_for_pipeline

        deadline = time.monotonic() + self.settings.read.wait_s
        done = wait_for_pipeline(self.settings, [projection], deadline, sleep=lambda s: time.sleep(min(s, 0.2)),
                                 start_lsn=token)
        return done[projection].caught_up

    def _answer_now(self, projection: str, read: Callable[[int], R], fallback: Callable[[], R]) -> Any:
        bound = self.settings.read.max_behind_s
        lag = self._freshness.behind_s(projection) if bound > 0 and self.settings.read.fallback else None
        if lag is not None and lag > bound:
            why = f"is {lag:.0f}s behind its source (PROJECTORS_READ_MAX_BEHIND_S={bound:g})"
            log.info("the %s store %s; answering from PostgreSQL", projection, why)
        else:
            future = self._pool.submit(self._read, projection, read)
            try:
                return marked(future.result(timeout=self.settings.read.store_timeout_s), "store")
            except ConfigurationError:
                raise  # a wrong setting (a search database that does not exist): a fallback would hide it
            except Exception as exc:
                why = ("did not answer in time" if isinstance(exc, FutureTimeout)
                       else f"failed: {type(exc).__name__}: {exc}")
                if not self.settings.read.fallback:
                    raise ReadUnavailable(f"the {projection} store {why}") from exc
                log.warning("the %s store %s; answering from PostgreSQL", projection, why)
        self.fallbacks[projection] += 1
        FALLBACKS.labels(projection).inc()
        try:
            return marked(fallback(), "postgres")
        except Exception as exc:
            self._postgres.close()
            raise ReadUnavailable(
                f"the {projection} store {why}, and PostgreSQL did not answer either ({type(exc).__name__}: {exc})"
            ) from exc

    # -- following the live generation --------------------------------------------------------------
    def _pointer(self, projection: str) -> Generations:
        if projection not in self._pointers:
            if descriptor(projection).store == "cosmos":
                self._pointers[projection] = CosmosPointer(self._db(projection), projection)
            elif descriptor(projection).store == "redis":
                self._pointers[projection] = self.redis_reads[0].pointer()  # as the reader ACL user
            elif projection == "graph" and self.settings.graph.backend == "neo4j":
                import neo4j

                g = self.settings.graph
                driver = neo4j.GraphDatabase.driver(g.neo4j_uri, auth=g.reader_auth())
                self._pointers[projection] = Neo4jPointer(driver, g.neo4j_database, projection)
            else:
                self._pointers[projection] = generations(self.settings, projection)
        return self._pointers[projection]

    def generation(self, projection: str, fresh: bool = False) -> int:
        if projection == "search" and self.settings.search.backend == "meilisearch":
            return 0  # Meilisearch swaps the indexes themselves: the live names never change
        known = self._known.get(projection)
        if fresh or known is None or time.monotonic() - known[1] > POINTER_TTL_S:
            known = (self._pointer(projection).current(), time.monotonic())
            self._known[projection] = known
        return known[0]

    def _read(self, projection: str, read: Callable[[int], R]) -> R:
        generation = self.generation(projection)
        try:
            return read(generation)
        except Exception:
            latest = self.generation(projection, fresh=True)
            if latest == generation:
                raise
            return read(latest)

    def _store(self, projection: str, generation: int) -> Any:
        key = (projection, generation)
        if key not in self._stores:
            for old in [k for k in self._stores if k[0] == projection]:
                self._stores.pop(old).close()
            if projection == "graph":
                self._stores[key] = graph_reader(self.settings, suffix(generation))
            elif projection == "search" and self.settings.search.backend == "meilisearch":
                from projectors.stores.search_meili import MeilisearchStore

                # read services hold the search-only key; the master key stays with the writers
                search = self.settings.search
                self._stores[key] = MeilisearchStore(search.meili_url, search.meili_search_key.get_secret_value())
            elif descriptor(projection).store == "cosmos":
                # read services hold the read-only key; the account key stays with the writers
                d = descriptor(projection)
                c = self.settings.cosmos.of(d.cosmos_account)
                reader = c.model_copy(update={"key": SecretStr(c.reader_key())})
                self._stores[key] = CosmosContainers(reader, d.partitions, suffix=suffix(generation))
            else:
                # a reader never creates a store: a missing search database is a wrong setting
                self._stores[key] = open_raw_store(self.settings, projection, generation, create=False)
        return self._stores[key]

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
    def behind_s(self, projection: str) -> float | None:
        """Seconds ``projection`` is behind its source, as last measured in the background (None:
        not known yet, or the broker does not answer); never waits."""
        return self._freshness.behind_s(projection)

    # -- the redis projection (logic: read/redis_reads.py) ------------------------------------------
    @cached_property
    def redis_reads(self) -> tuple[RedisReads, PostgresRedisReads]:
        return RedisReads(self.settings), PostgresRedisReads(self._postgres)

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

    def close(self) -> None:
        if "redis_reads" in self.__dict__:
            self.redis_reads[0].close()
        self._freshness.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._postgres.close()
        for store in self._stores.values():
            store.close()
        for pointer in self._pointers.values():
            pointer.close()
        self._stores.clear()
        self._pointers.clear()
