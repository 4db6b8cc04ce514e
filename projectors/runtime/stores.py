"""Which store each projection writes, from the settings (one place)."""

from __future__ import annotations

from typing import cast

from projectors.errors import ConfigurationError
from projectors.projections.model import ProjectionStore
from projectors.settings import Settings

COSMOS_CONTAINERS = {
    "feed": {"userFeed": "/recipientId"},
    "counters": {"counters": "/subjectId"},
}


def open_raw_store(settings: Settings, projection: str) -> ProjectionStore:
    """The store adapter itself, without the retry wrapper (verify and the read side use this)."""
    if projection in COSMOS_CONTAINERS:
        from projectors.stores.documents import CosmosStore

        return CosmosStore(settings.cosmos, COSMOS_CONTAINERS[projection])
    if projection == "graph":
        if settings.graph.backend == "neo4j":
            from projectors.stores.graph_transports import neo4j_store

            g = settings.graph
            return neo4j_store(g.neo4j_uri, (g.neo4j_user, g.neo4j_password.get_secret_value()), g.neo4j_database)
        from projectors.stores.graph_transports import falkordb_store

        return falkordb_store(settings.falkordb)
    if projection == "search":
        if settings.search.backend == "meilisearch":
            from projectors.stores.search_meili import MeilisearchStore

            return MeilisearchStore(settings.search.meili_url, settings.search.meili_master_key.get_secret_value())
        from projectors.stores.search_fts import SqliteSearchStore

        settings.search_sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteSearchStore(settings.search_sqlite_path)
    raise ConfigurationError(f"unknown projection {projection!r}")


def open_store(settings: Settings, projection: str) -> ProjectionStore:
    """The store wrapped in the retry policy: retriable failures are retried until they succeed."""
    from projectors.runtime.retry import RetryingStore, RetryPolicy

    policy = RetryPolicy(
        initial_s=settings.worker.retry_initial_s, max_s=settings.worker.retry_max_s, multiplier=2.0, max_attempts=None
    )
    return cast(ProjectionStore, RetryingStore(open_raw_store(settings, projection), policy))
