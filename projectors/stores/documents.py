"""Cosmos DB containers (``userFeed``, ``counters``) with the version guard.

Each item is the projection's document plus ``sourceVersion`` and ``deleted``; a removal replaces the
item with a tombstone ``{id, <partition key>, sourceVersion, deleted: true}`` (optionally with a
``ttl``), so an older write arriving later cannot bring it back. Writes use optimistic concurrency
(``replace_item`` with the read ``_etag``, ``create_item`` for a new id): two workers racing on one
item re-read and decide again, so the newest version always wins.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import DecodeError, ServiceRequestError, ServiceResponseError
from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy, PartitionKey
from azure.cosmos.exceptions import CosmosClientTimeoutError, CosmosHttpResponseError

from projectors.errors import RetriableError
from projectors.projections.model import (
    ApplyResult,
    Document,
    ItemFailure,
    ItemKey,
    Operation,
    Put,
)
from projectors.settings import CosmosSettings
from projectors.stores.guard import Held, Outcome, newest_per_key, outcome, tally

BOOKKEEPING = {"sourceVersion", "deleted", "ttl", "_rid", "_self", "_etag", "_attachments", "_ts", "_lsn"}
# what Azure documents as transient: timeout, gone (a partition moved), throttled, retry-with, server
RETRIABLE_STATUS = {408, 410, 429, 449, 500, 502, 503, 504}
# failures of the transport, not answers of the server: the request may never have arrived, or its
# answer was cut off (every write is versioned, so sending it again is safe)
TRANSPORT_ERRORS = (
    ServiceRequestError,
    ServiceResponseError,
    CosmosClientTimeoutError,
    DecodeError,
    ConnectionError,
    TimeoutError,
    OSError,
)
FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
READ_CHUNK = 100
POINT_READS_UP_TO = 4  # items of one partition in a batch read by point reads; more: one query
NEW_SHARE_WEIGHT = 0.1
# The local Cosmos REST server answers a point read of a missing item with a 500 ("Cannot read
# properties of undefined") unless this header is set, when it answers 404 like Azure; Azure ignores
# it on point reads.
POINT_READ_HEADERS = {"x-ms-documentdb-query-enablecrosspartition": "true"}


def retriable(exc: Exception) -> bool:
    """Whether ``exc`` may succeed when sent again: transport failures and transient statuses are;
    the server's definite refusals (400 bad request, 403, 413 too large...) are not."""
    if isinstance(exc, CosmosHttpResponseError):
        return exc.status_code is None or exc.status_code in RETRIABLE_STATUS
    return isinstance(exc, TRANSPORT_ERRORS)


def _translated(exc: Exception) -> Exception:
    return RetriableError(f"Cosmos: {exc}") if retriable(exc) else exc


def live_doc(item: Mapping[str, Any]) -> Document | None:
    if item.get("deleted"):
        return None
    return {k: v for k, v in item.items() if k not in BOOKKEEPING}


def held(item: Mapping[str, Any] | None) -> Held | None:
    if item is None:
        return None
    return Held(int(item.get("sourceVersion", -1)), live_doc(item))


class CosmosStore:
    def __init__(
        self,
        settings: CosmosSettings,
        containers: Mapping[str, str],
        tombstone_ttl_s: int | None = None,
        writers: int = 4,
        suffix: str = "",
    ) -> None:
        self.settings = settings
        self.suffix = suffix  # a rebuild's generation: ``userFeed-g2`` (stores/generations.py)
        self.partition_fields = {name: path.lstrip("/") for name, path in containers.items()}
        self.paths = dict(containers)
        self.tombstone_ttl_s = tombstone_ttl_s
        # one client per thread: the sync client keeps each request's state on the shared connection
        # (``last_response_headers``, mutated after every request), so writes from the pool sharing
        # one client failed at random with "OrderedDict mutated during iteration"
        self._local = threading.local()
        self._clients: list[CosmosClient] = []
        self._epoch = 0  # a drop forgets every thread's container proxies
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="cosmos-write")
        # per container: how many of the last single-item writes were of new items (create first?)
        self._new_share: defaultdict[str, float] = defaultdict(lambda: 1.0)

    @property
    def client(self) -> CosmosClient:
        """This thread's client, connected on first use (the client calls the account at
        construction): a store that is down when a worker starts is retried like any other outage."""
        client: CosmosClient | None = getattr(self._local, "client", None)
        if client is None:
            client = self._connect()
            with self._lock:
                self._clients.append(client)
            self._local.client, self._local.containers, self._local.epoch = client, {}, self._epoch
        return client

    def _connect(self) -> CosmosClient:
        settings = self.settings
        return CosmosClient(
            settings.endpoint,
            credential=settings.key.get_secret_value(),
            connection_verify=settings.verify_tls,
            enable_endpoint_discovery=False,
            connection_timeout=5,
            read_timeout=30,
            retry_total=2,
            retry_connect=1,
            retry_read=1,
            retry_backoff_max=2,
        )

    @property
    def database(self) -> DatabaseProxy:
        return self.client.get_database_client(self.settings.database)

    def container(self, name: str) -> ContainerProxy:
        if name not in self.paths:
            raise ValueError(f"unknown container {name!r} (this store has {', '.join(self.paths)})")
        database = self.database
        containers: dict[str, ContainerProxy] = self._local.containers
        if self._local.epoch != self._epoch:
            containers.clear()
            self._local.epoch = self._epoch
        if name not in containers:
            containers[name] = database.get_container_client(name + self.suffix)
        return containers[name]

    # -- schema and health --------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        try:
            database = self.client.create_database_if_not_exists(self.settings.database)
            for name, path in self.paths.items():
                database.create_container_if_not_exists(name + self.suffix, PartitionKey(path))
        except Exception as exc:
            raise _translated(exc) from exc

    def drop(self) -> None:
        """Delete this generation's containers (a rebuild drops the one it replaced)."""
        for name in self.paths:
            try:
                self.database.delete_container(name + self.suffix)
            except CosmosHttpResponseError as exc:
                if exc.status_code != 404:
                    raise _translated(exc) from exc
            except Exception as exc:
                raise _translated(exc) from exc
        self._epoch += 1

    def ping(self) -> bool:
        try:
            self.database.read()
            return True
        except Exception:
            return False

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    # -- writes -------------------------------------------------------------------------------------
    def apply(self, ops: Sequence[Operation]) -> ApplyResult:
        newest, dropped = newest_per_key(ops)
        groups: dict[tuple[str, str], list[Operation]] = defaultdict(list)
        for op in newest:
            groups[(op.key.collection, op.key.partition)].append(op)
        outcomes: list[Outcome] = []
        failures: list[ItemFailure] = []
        futures: list[tuple[Operation, Future[Outcome]]] = []
        # a partition with a few items: each item point-read (1 RU) and written in the pool; with
        # more, one query reads them all (about 3 RU, one round trip), itself in the pool: reads
        # never queue one after the other in the batch thread
        queried: list[tuple[list[Operation], Future[dict[str, dict[str, Any]]]]] = []
        alone: list[Operation] = []
        for (name, partition), group in groups.items():
            try:
                self.container(name)  # an unknown container fails its items here
            except Exception as exc:
                failures += [ItemFailure(op, exc, retriable(exc)) for op in group]
                continue
            if len(group) <= POINT_READS_UP_TO:
                alone += group
            else:
                ids = [op.key.id for op in group]
                queried.append((group, self._pool.submit(self._read, name, partition, ids)))
        futures += [(op, self._pool.submit(self._read_and_write, op)) for op in alone]
        for group, reading in queried:
            try:
                existing = reading.result()
            except Exception as exc:
                failures += [ItemFailure(op, exc, retriable(exc)) for op in group]
                continue
            futures += [(op, self._pool.submit(self._write, op, existing.get(op.key.id))) for op in group]
        for op, future in futures:  # every partition's writes run together, then are collected
            try:
                outcomes.append(future.result())
            except Exception as exc:
                failures.append(ItemFailure(op, exc, retriable(exc)))
        changed, stale, unchanged = tally(outcomes)
        return ApplyResult(changed, stale + dropped, unchanged, failures)

    def _read(self, name: str, partition: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        # the partition key is in the query as well as in the request: the local Cosmos REST server
        # ignores the request's partition key and refuses a query without it
        container, field = self.container(name), self.partition_fields[name]  # this thread's
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), READ_CHUNK):
            chunk = ids[start : start + READ_CHUNK]
            for item in container.query_items(
                f"SELECT * FROM c WHERE c.{field} = @pk AND ARRAY_CONTAINS(@ids, c.id)",
                parameters=[{"name": "@pk", "value": partition}, {"name": "@ids", "value": chunk}],
                partition_key=partition,
            ):
                out[item["id"]] = item
        return out

    def _read_and_write(self, op: Operation) -> Outcome:
        """One item read on its own (one of a few of its partition in the batch). When most such
        items of the container were new lately (a post's fan-out: every follower's feed item is
        new), it is created without reading it first, and read only if it exists (409): one request
        instead of two. Otherwise (counters, replays: the item is there) it is point-read, then
        written. Either way the version guard decides."""
        name = op.key.collection
        container = self.container(name)  # this thread's
        if self._new_share[name] >= 0.5:
            decided = outcome(op, None)
            try:
                container.create_item(self._body(op))
                self._learn(name, new=True)
                return decided
            except CosmosHttpResponseError as exc:
                if exc.status_code != 409:
                    raise
                self._learn(name, new=False)
        try:
            item: dict[str, Any] | None = container.read_item(
                op.key.id, partition_key=op.key.partition, headers=POINT_READ_HEADERS
            )
        except CosmosHttpResponseError as exc:
            if exc.status_code != 404:
                raise
            item = None
        else:
            self._learn(name, new=False)
        if item is None:
            self._learn(name, new=True)
        return self._write(op, item)

    def _learn(self, container: str, new: bool) -> None:
        """Moving share of single items that did not exist yet (the last ~10 weigh most)."""
        with self._lock:
            self._new_share[container] = (1 - NEW_SHARE_WEIGHT) * self._new_share[container] + (
                NEW_SHARE_WEIGHT if new else 0.0
            )

    def _body(self, op: Operation) -> dict[str, Any]:
        field = self.partition_fields[op.key.collection]
        if isinstance(op, Put):
            return {**op.doc, "id": op.key.id, field: op.key.partition, "sourceVersion": op.version, "deleted": False}
        body: dict[str, Any] = {"id": op.key.id, field: op.key.partition, "sourceVersion": op.version, "deleted": True}
        if self.tombstone_ttl_s is not None:
            body["ttl"] = self.tombstone_ttl_s
        return body

    def _write(self, op: Operation, item: dict[str, Any] | None) -> Outcome:
        container = self.container(op.key.collection)  # this thread's
        for _attempt in range(8):
            decided = outcome(op, held(item))
            if decided is Outcome.STALE:
                return decided
            try:
                if item is None:
                    container.create_item(self._body(op))
                else:
                    container.replace_item(
                        op.key.id, self._body(op), etag=item["_etag"], match_condition=MatchConditions.IfNotModified
                    )
                return decided
            except CosmosHttpResponseError as exc:
                if exc.status_code not in (409, 412):
                    raise
                # another writer got there first: read what it wrote and decide again
                try:
                    item = container.read_item(op.key.id, partition_key=op.key.partition)
                except CosmosHttpResponseError as read_exc:
                    if read_exc.status_code != 404:
                        raise
                    item = None
        raise TimeoutError(f"{op.key}: too many concurrent writers, giving up for now")

    # -- reads --------------------------------------------------------------------------------------
    def live_items(self, collection: str) -> Iterator[tuple[ItemKey, Document]]:
        field = self.partition_fields[collection]
        for item in self.container(collection).query_items(
            "SELECT * FROM c WHERE c.deleted = false", enable_cross_partition_query=True, max_item_count=1000
        ):
            doc = live_doc(item)
            if doc is not None:
                yield ItemKey(collection, item["id"], str(item[field])), doc

    def find_keys(self, collection: str, equals: Mapping[str, str], partition: str | None = None) -> list[ItemKey]:
        field = self.partition_fields[collection]
        conditions: list[str] = ["c.deleted = false"]
        params: list[dict[str, object]] = []
        if partition is not None:
            conditions.append(f"c.{field} = @pk")
            params.append({"name": "@pk", "value": partition})
        for i, (name, value) in enumerate(sorted(equals.items())):
            if not FIELD.match(name):
                raise ValueError(f"bad field name {name!r}")
            conditions.append(f"c.{name} = @p{i}")
            params.append({"name": f"@p{i}", "value": value})
        query = f"SELECT c.id, c.{field} FROM c WHERE {' AND '.join(conditions)}"
        try:
            container = self.container(collection)
            items = (
                container.query_items(query, parameters=params, partition_key=partition)
                if partition is not None
                else container.query_items(query, parameters=params, enable_cross_partition_query=True)
            )
            return [ItemKey(collection, item["id"], str(item[field])) for item in items]
        except Exception as exc:
            raise _translated(exc) from exc
