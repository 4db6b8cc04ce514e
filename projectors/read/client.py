"""The client read services use: a feed page, counters, friend-of-friend suggestions, search.

Queries follow the documented item shapes (docs/projections.md, schemas/projections/); tombstones
(``deleted = true``) are never returned.

Each read goes to the live generation of its store (``stores/generations.py``): the client re-reads
the generation pointer at most once a second, and at once when a read fails (the generation it knew
may just have been dropped by ``projectors rebuild``, which waits longer than that before dropping).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from azure.cosmos import CosmosClient

from projectors.runtime.stores import generations, open_raw_store
from projectors.settings import Settings
from projectors.stores.generations import CosmosPointer, Generations, suffix

R = TypeVar("R")
POINTER_TTL_S = 1.0

FEED_PAGE = (
    "SELECT TOP @limit c.id, c.recipientId, c.postId, c.authorId, c.createdAt, c.bodyPreview, c.topics "
    "FROM c WHERE c.recipientId = @recipient AND c.deleted = false ORDER BY c.createdAt DESC"
)
# the celebrities the recipient follows (fan-out on read), and each one's newest posts
FEED_FOLLOWS = "SELECT c.authorId FROM c WHERE c.recipientId = @recipient AND c.deleted = false"
CELEBRITY_POSTS = (
    "SELECT TOP @limit c.postId, c.authorId, c.createdAt, c.bodyPreview, c.topics "
    "FROM c WHERE c.authorId = @author AND c.deleted = false ORDER BY c.createdAt DESC"
)
# the items of the same time as a page's last one (posts of one transaction share it): a page cut
# among them is completed, then ordered by post id, so it is the same page whatever the store returned
FEED_TIES = (
    "SELECT c.id, c.recipientId, c.postId, c.authorId, c.createdAt, c.bodyPreview, c.topics "
    "FROM c WHERE c.recipientId = @recipient AND c.deleted = false AND c.createdAt = @at"
)
CELEBRITY_TIES = (
    "SELECT c.postId, c.authorId, c.createdAt, c.bodyPreview, c.topics "
    "FROM c WHERE c.authorId = @author AND c.deleted = false AND c.createdAt = @at"
)
COUNTERS = "SELECT c.id, c.subjectId, c.kind, c.count FROM c WHERE c.subjectId = @subject AND c.deleted = false"

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
        c = settings.cosmos
        self._cosmos = CosmosClient(
            c.endpoint, credential=c.key.get_secret_value(), connection_verify=c.verify_tls,
            enable_endpoint_discovery=False,
        )
        self._db = self._cosmos.get_database_client(c.database)
        self._pointers: dict[str, Generations] = {}
        self._known: dict[str, tuple[int, float]] = {}  # projection -> (generation, read at)
        self._stores: dict[tuple[str, int], Any] = {}

    # -- following the live generation --------------------------------------------------------------
    def _pointer(self, projection: str) -> Generations:
        if projection not in self._pointers:
            if projection in ("feed", "counters"):
                self._pointers[projection] = CosmosPointer(self._db, projection)
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
            if projection == "search" and self.settings.search.backend == "meilisearch":
                from projectors.stores.search_meili import MeilisearchStore

                # read services hold the search-only key; the master key stays with the writers
                search = self.settings.search
                self._stores[key] = MeilisearchStore(search.meili_url, search.meili_search_key.get_secret_value())
            else:
                self._stores[key] = open_raw_store(self.settings, projection, generation)
        return self._stores[key]

    # -- the reads ----------------------------------------------------------------------------------
    def feed_page(self, recipient_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The recipient's latest ``limit`` feed items, newest first: their ``userFeed`` partition
        (posts fanned out on write) merged with the newest posts of the celebrities they follow
        (``feedFollows``, ``feedPosts``: fanned out on read), ordered by time then post id. Partition
        queries only: one for the page, one for the subscriptions, one per followed celebrity, and
        one more for each of those that fills the page (the items tied with its last one)."""

        def read(generation: int) -> list[dict[str, Any]]:
            def container(name: str) -> Any:
                return self._db.get_container_client(name + suffix(generation))

            def query(name: str, sql: str, partition: str, **params: Any) -> list[dict[str, Any]]:
                parameters = [{"name": f"@{k}", "value": v} for k, v in params.items()]
                return list(container(name).query_items(sql, parameters=parameters, partition_key=partition))

            def newest(name: str, sql: str, ties: str, partition: str, **params: Any) -> list[dict[str, Any]]:
                items = query(name, sql, partition, limit=limit, **params)
                if len(items) == limit:
                    known = {i["postId"] for i in items}
                    more = query(name, ties, partition, at=items[-1]["createdAt"], **params)
                    items += [i for i in more if i["postId"] not in known]
                return items

            page = newest("userFeed", FEED_PAGE, FEED_TIES, recipient_id, recipient=recipient_id)
            for follow in query("feedFollows", FEED_FOLLOWS, recipient_id, recipient=recipient_id):
                author = follow["authorId"]
                for post in newest("feedPosts", CELEBRITY_POSTS, CELEBRITY_TIES, author, author=author):
                    page.append({"id": f"{recipient_id}:{post['postId']}", "recipientId": recipient_id, **post})
            page.sort(key=lambda item: (item["createdAt"], item["postId"]), reverse=True)
            return page[:limit]

        return self._read("feed", read)

    def counters(self, subject_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """``{subjectId: {kind: count}}`` for posts (likes, replies) and users (followers, following, posts)."""
        subjects = list(subject_ids)

        def read(generation: int) -> dict[str, dict[str, int]]:
            container = self._db.get_container_client("counters" + suffix(generation))
            out: dict[str, dict[str, int]] = {}
            for subject in subjects:
                items = container.query_items(
                    COUNTERS, parameters=[{"name": "@subject", "value": subject}], partition_key=subject
                )
                out[subject] = {item["kind"]: int(item["count"]) for item in items}
            return out

        return self._read("counters", read)

    def suggestions(self, user_id: str, limit: int = 10) -> list[dict[str, Any]]:
        def read(generation: int) -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = self._store("graph", generation).query(
                SUGGESTIONS, {"id": user_id, "limit": limit}
            )
            return rows

        return self._read("graph", read)

    def search(self, index: str, query: str, filters: dict[str, Any] | None = None, limit: int = 20) -> list[Any]:
        """Full-text search in ``posts`` (filters: authorId, topics, createdAfter/createdBefore) or ``users``."""

        def read(generation: int) -> list[Any]:
            result: list[Any] = self._store("search", generation).search(index, query, filters or {}, limit)
            return result

        return self._read("search", read)

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        for pointer in self._pointers.values():
            pointer.close()
        self._stores.clear()
        self._pointers.clear()
