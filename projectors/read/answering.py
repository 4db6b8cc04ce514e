"""The answer-with-fallback machinery of :class:`~projectors.read.client.ReadClient`: the stores
and the generation pointers it follows, connected on first use; a read of the live generation within
``PROJECTORS_READ_STORE_TIMEOUT_S`` (again on a fresh generation when it fails), else the same
answer from PostgreSQL (``read/fallback.py``), counted; a writer's token waited for first."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import cached_property
from typing import Any, TypeVar

from azure.cosmos import CosmosClient
from prometheus_client import Counter as MetricCounter
from pydantic import SecretStr

from projectors.errors import ConfigurationError, ProjectorsError
from projectors.projections import descriptor
from projectors.read.answers import marked
from projectors.read.cursor import Cursors
from projectors.read.fallback import PostgresReads
from projectors.read.freshness import Freshness
from projectors.read.redis_reads import PostgresRedisReads, RedisReads
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


def cursor_key(settings: Settings) -> bytes:
    """``PROJECTORS_READ_CURSOR_KEY``, or one derived from the Cosmos read key (empty: a fixed one)."""
    key = settings.read.cursor_key.get_secret_value()
    if key:
        return key.encode()
    return hashlib.sha256(b"projectors-read-cursor:" + settings.cosmos.reader_key().encode()).digest()


class AnsweringClient:
    """Connections, generations and the store-or-PostgreSQL rule; the reads are :class:`ReadClient`'s."""

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

    def behind_s(self, projection: str) -> float | None:
        """Seconds ``projection`` is behind its source, as last measured in the background (None:
        not known yet, or the broker does not answer); never waits."""
        return self._freshness.behind_s(projection)

    @cached_property
    def redis_reads(self) -> tuple[RedisReads, PostgresRedisReads]:
        """The ``redis`` projection's reads (``read/redis_reads.py``): Redis, and PostgreSQL's."""
        return RedisReads(self.settings), PostgresRedisReads(self._postgres)

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
