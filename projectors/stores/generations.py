"""Generations: which copy of a projection's store is live, and how a rebuild swaps a new one in.

A projection's store has a generation number. Generation 0 has the plain names (Cosmos containers
``userFeed`` and ``counters``, the FalkorDB graph ``social``, ``search.sqlite3``); generation N adds
``-gN`` (``userFeed-g2``, ``social-g2``, ``search-g2.sqlite3``, Neo4j database ``neo4j-g2``). A pointer
kept next to the data, in the same store, says which generation is live:

- Cosmos: an item ``{id: <projection>, generation}`` in the container ``projectorsGenerations``;
- FalkorDB: the key ``projectors:generation:<graph>`` (same server);
- Redis: the key ``<prefix>.generation`` (same server; outside every generation's keys,
  ``<prefix>:`` and ``<prefix>-gN:``, so dropping one keeps it);
- Neo4j: a ``(:ProjectorsGeneration {projection, generation})`` node in the configured database;
- SQLite: a file ``<search file>.generation`` replaced atomically (``os.replace``).

Writing the pointer is one atomic write, so a read client sees the old generation or the new one,
whole. Workers read it when they start; read clients follow it (``read/answering.py``).

Meilisearch needs no pointer: a rebuild writes the indexes ``g1-posts``/``g1-users`` and exchanges them
with the live ones in one ``swap-indexes`` task; the live names stay ``posts``/``users``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Protocol

POINTER_CONTAINER = "projectorsGenerations"


def suffix(generation: int) -> str:
    return "" if generation == 0 else f"-g{generation}"


def sqlite_path(base: Path, generation: int) -> Path:
    return base if generation == 0 else base.with_name(f"{base.stem}{suffix(generation)}{base.suffix}")


class Generations(Protocol):
    """The live generation of one projection's store, and the swap that changes it."""

    def current(self) -> int: ...

    def next(self) -> int:
        """The generation a rebuild builds into."""

    def swap_in(self, generation: int) -> int:
        """Make ``generation`` live, atomically; return the generation that now holds the old data
        (the one to drop)."""

    def close(self) -> None: ...


class _Pointer:
    """A pointer-based generation: the new generation is a new name; swapping rewrites the pointer."""

    def read(self) -> int | None:
        raise NotImplementedError

    def write(self, generation: int) -> None:
        raise NotImplementedError

    def current(self) -> int:
        return self.read() or 0

    def next(self) -> int:
        return self.current() + 1

    def swap_in(self, generation: int) -> int:
        old = self.current()
        self.write(generation)
        return old

    def close(self) -> None:
        pass


class CosmosPointer(_Pointer):
    def __init__(self, database: Any, projection: str) -> None:
        self.database = database
        self.projection = projection

    def read(self) -> int | None:
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        # a query, not a point read: the local Cosmos REST server fails (500) a point read of a
        # missing item instead of answering 404; the id is the partition key, in the query too
        try:
            items = list(self.database.get_container_client(POINTER_CONTAINER).query_items(
                "SELECT c.generation FROM c WHERE c.id = @id",
                parameters=[{"name": "@id", "value": self.projection}],
                partition_key=self.projection,
            ))
        except CosmosResourceNotFoundError:  # no container: nothing was ever rebuilt
            return None
        return int(items[0]["generation"]) if items else None

    def write(self, generation: int) -> None:
        from azure.cosmos import PartitionKey
        from azure.cosmos.exceptions import CosmosResourceExistsError

        try:
            container = self.database.create_container_if_not_exists(POINTER_CONTAINER, PartitionKey("/id"))
        except CosmosResourceExistsError:  # created meanwhile by another projection's swap on this account
            container = self.database.get_container_client(POINTER_CONTAINER)
        container.upsert_item({"id": self.projection, "generation": generation})


class RedisPointer(_Pointer):
    """FalkorDB is a Redis module: the pointer is a plain key next to the graphs."""

    def __init__(
        self, host: str, port: int, graph: str, *, key: str | None = None, username: str | None = None,
        password: str | None = None,
    ) -> None:
        import redis

        self.key = key or f"projectors:generation:{graph}"
        self.redis = redis.Redis(
            host=host, port=port, username=username, password=password, socket_timeout=5.0,
            socket_connect_timeout=3.0,
        )

    def read(self) -> int | None:
        value = self.redis.get(self.key)
        return None if value is None else int(value)

    def write(self, generation: int) -> None:
        self.redis.set(self.key, str(generation))

    def close(self) -> None:
        self.redis.close()


class Neo4jPointer(_Pointer):
    def __init__(self, driver: Any, database: str, projection: str) -> None:
        self.driver, self.database, self.projection = driver, database, projection

    def read(self) -> int | None:
        records, _, _ = self.driver.execute_query(
            "MATCH (g:ProjectorsGeneration {projection: $p}) RETURN g.generation AS generation",
            {"p": self.projection},
            database_=self.database,
        )
        return int(records[0]["generation"]) if records else None

    def write(self, generation: int) -> None:
        self.driver.execute_query(
            "MERGE (g:ProjectorsGeneration {projection: $p}) SET g.generation = $g",
            {"p": self.projection, "g": generation},
            database_=self.database,
        )

    def close(self) -> None:
        self.driver.close()


class FilePointer(_Pointer):
    def __init__(self, base: Path) -> None:
        self.path = Path(f"{base}.generation")

    def read(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except FileNotFoundError:
            return None

    def write(self, generation: int) -> None:
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(f"{generation}\n")
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, self.path)


class MeiliSwap:
    """Meilisearch: always generation 0 under the live names; a rebuild builds generation 1 under the
    ``g1-`` prefix and ``swap-indexes`` exchanges the contents; ``g1-*`` then holds the old data."""

    def __init__(self, live: Any) -> None:
        self.live = live  # the MeilisearchStore of the live names

    def current(self) -> int:
        return 0

    def next(self) -> int:
        return 1

    def swap_in(self, generation: int) -> int:
        self.live.swap(meili_prefix(generation))
        return generation

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.live.close()


def meili_prefix(generation: int) -> str:
    return "" if generation == 0 else f"g{generation}-"
