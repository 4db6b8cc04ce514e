"""The client read services use: a feed page, counters, friend-of-friend suggestions, search.

Queries follow the documented item shapes (docs/projections.md, schemas/projections/); tombstones
(``deleted = true``) are never returned.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from azure.cosmos import CosmosClient

from projectors.runtime.stores import open_raw_store
from projectors.settings import Settings

FEED_PAGE = (
    "SELECT TOP @limit c.id, c.recipientId, c.postId, c.authorId, c.createdAt, c.bodyPreview, c.topics "
    "FROM c WHERE c.recipientId = @recipient AND c.deleted = false ORDER BY c.createdAt DESC"
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
        self._graph: Any = None
        self._search: Any = None

    def feed_page(self, recipient_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The recipient's latest ``limit`` feed items, newest first (one partition)."""
        container = self._db.get_container_client("userFeed")
        return list(container.query_items(
            FEED_PAGE, parameters=[{"name": "@limit", "value": limit}, {"name": "@recipient", "value": recipient_id}],
            partition_key=recipient_id,
        ))

    def counters(self, subject_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """``{subjectId: {kind: count}}`` for posts (likes, replies) and users (followers, following, posts)."""
        container = self._db.get_container_client("counters")
        out: dict[str, dict[str, int]] = {}
        for subject in subject_ids:
            items = container.query_items(
                COUNTERS, parameters=[{"name": "@subject", "value": subject}], partition_key=subject
            )
            out[subject] = {item["kind"]: int(item["count"]) for item in items}
        return out

    def suggestions(self, user_id: str, limit: int = 10) -> list[dict[str, Any]]:
        if self._graph is None:
            self._graph = open_raw_store(self.settings, "graph")
        rows: list[dict[str, Any]] = self._graph.query(SUGGESTIONS, {"id": user_id, "limit": limit})
        return rows

    def search(self, index: str, query: str, filters: dict[str, Any] | None = None, limit: int = 20) -> list[Any]:
        """Full-text search in ``posts`` (filters: authorId, topics, createdAfter/createdBefore) or ``users``."""
        if self._search is None:
            search = self.settings.search
            if search.backend == "meilisearch":
                from projectors.stores.search_meili import MeilisearchStore

                # read services hold the search-only key; the master key stays with the writers
                self._search = MeilisearchStore(search.meili_url, search.meili_search_key.get_secret_value())
            else:
                self._search = open_raw_store(self.settings, "search")
        result: list[Any] = self._search.search(index, query, filters or {}, limit)
        return result

    def close(self) -> None:
        for store in (self._graph, self._search):
            if store is not None:
                store.close()
