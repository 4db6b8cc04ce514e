"""Which store each projection writes (its descriptor), from the settings (one place), in which
generation. The runtime wraps what it opens here in its retry policy (``runtime/retry.open_store``).

A rebuild (``operations/rebuild.py``) builds a new generation next to the live one and swaps it in;
``generations`` gives the pointer (or the Meilisearch swap) that says which one is live
(``stores/generations.py``).
"""

from __future__ import annotations

import logging

from projectors.errors import ConfigurationError
from projectors.model import ProjectionStore
from projectors.projections import descriptor
from projectors.settings import Settings
from projectors.stores.generations import Generations, meili_prefix, sqlite_path, suffix

log = logging.getLogger(__name__)

def generations(settings: Settings, projection: str) -> Generations:
    """The pointer of ``projection``'s live generation, kept in its own store."""
    d = descriptor(projection)
    store = d.store
    from projectors.stores import generations as g

    if store == "cosmos":
        from projectors.stores.cosmos import CosmosStore

        return g.CosmosPointer(CosmosStore(settings.cosmos.of(d.cosmos_account), {}).database, projection)
    if store == "graph":
        if settings.graph.backend == "neo4j":
            import neo4j

            gs = settings.graph
            auth = (gs.neo4j_user, gs.neo4j_password.get_secret_value())
            driver = neo4j.GraphDatabase.driver(gs.neo4j_uri, auth=auth)
            return g.Neo4jPointer(driver, gs.neo4j_database, projection)
        return g.RedisPointer(settings.falkordb.host, settings.falkordb.port, settings.falkordb.graph)
    if store == "redis":
        r = settings.redis
        return g.RedisPointer(
            r.host, r.port, "", key=f"{r.prefix}.generation", username=r.worker_user,
            password=r.worker_password.get_secret_value(),
        )
    if settings.search.backend == "meilisearch":
        return g.MeiliSwap(open_raw_store(settings, projection, 0))
    return g.FilePointer(settings.search_sqlite_path)


def current_generation(settings: Settings, projection: str) -> int:
    pointer = generations(settings, projection)
    try:
        return pointer.current()
    finally:
        pointer.close()


def open_raw_store(
    settings: Settings, projection: str, generation: int | None = None, *, create: bool = True
) -> ProjectionStore:
    """The store adapter itself, without the retry wrapper (verify and the read side use this), for
    ``generation`` (default: the live one). With ``create=False`` (readers) the embedded search
    database must already exist: a missing one is a :class:`ConfigurationError` naming the file and
    the setting, never an empty database made where the reader happens to look."""
    d = descriptor(projection)
    if generation is None:
        generation = current_generation(settings, projection)
    if d.store == "cosmos":
        from projectors.stores.cosmos import CosmosStore

        return CosmosStore(
            settings.cosmos.of(d.cosmos_account), d.partitions, suffix=suffix(generation), indexing=d.indexing
        )
    if d.store == "graph":
        if settings.graph.backend == "neo4j":
            from projectors.stores.graph_transports import neo4j_store

            g = settings.graph
            auth = (g.neo4j_user, g.neo4j_password.get_secret_value())
            return neo4j_store(g.neo4j_uri, auth, g.neo4j_database + suffix(generation), own_database=generation > 0)
        from projectors.stores.graph_transports import falkordb_store

        return falkordb_store(settings.falkordb, graph=settings.falkordb.graph + suffix(generation))
    if d.store == "redis":
        from projectors.stores.redis_store import RedisStore, prefix_of

        r = settings.redis
        return RedisStore(
            r.host, r.port, prefix_of(r.prefix, generation), username=r.worker_user,
            password=r.worker_password.get_secret_value(), retention_days=r.retention_days, timeout_s=r.timeout_s,
            page_ttl_s=r.feed_page_ttl_s,
        )
    if settings.search.backend == "meilisearch":
        from projectors.stores.search_meili import MeilisearchStore

        search = settings.search
        return MeilisearchStore(search.meili_url, search.meili_master_key.get_secret_value(), meili_prefix(generation))
    from projectors.stores.search_fts import SqliteSearchStore

    path = sqlite_path(settings.search_sqlite_path, generation)
    if not create:
        if not path.is_file():
            raise ConfigurationError(
                f"the search database {path} does not exist: PROJECTORS_SEARCH_SQLITE_PATH (default "
                f"<PROJECTORS_STACK_DIR>/search.sqlite3, here {settings.search_sqlite_path}) must name the "
                "file the search workers write"
            )
        return SqliteSearchStore(path, create=False, candidates=settings.search.sqlite_candidates)
    settings.search_sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteSearchStore(path, candidates=settings.search.sqlite_candidates)
