"""A Cosmos projection's containers: the clients (one per thread), the schema, and the reads (point
reads, whole-container scans for verify, the change feed, lookups by field)."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy, PartitionKey
from azure.cosmos.exceptions import CosmosHttpResponseError

from projectors.model import Document, ItemKey
from projectors.settings import CosmosSettings
from projectors.stores.cosmos_common import (
    FIELD,
    POINT_READ_HEADERS,
    SCAN_TIMEOUT_S,
    RequestCounter,
    live_doc,
    translated_error,
)

PARTITIONS_PER_QUERY = 1000  # partition key values in one query's IN list


class CosmosContainers:
    """One Cosmos account's containers of one projection (a generation: ``suffix``): the clients,
    the schema, and every read (point reads, scans, the change feed, lookups by field). The writes
    are :class:`~projectors.stores.cosmos.CosmosStore`'s."""

    def __init__(
        self,
        settings: CosmosSettings,
        containers: Mapping[str, str],
        tombstone_ttl_s: int | None = None,  # None: PROJECTORS_COSMOS_TOMBSTONE_TTL_S
        writers: int = 4,
        suffix: str = "",
        indexing: Mapping[str, Mapping[str, Any]] | None = None,  # container -> its indexing policy
    ) -> None:
        self.settings = settings
        self.indexing = dict(indexing or {})
        self.suffix = suffix  # a rebuild's generation: ``userFeed-g2`` (stores/generations.py)
        self.partition_fields = {name: path.lstrip("/") for name, path in containers.items()}
        self.paths = dict(containers)
        self.tombstone_ttl_s: int = settings.tombstone_ttl_s if tombstone_ttl_s is None else tombstone_ttl_s
        self.requests = RequestCounter()
        # one client per thread: the sync client keeps each request's state on the shared connection
        # (``last_response_headers``, mutated after every request), so writes from the pool sharing
        # one client failed at random with "OrderedDict mutated during iteration"
        self._local = threading.local()
        self._clients: list[CosmosClient] = []
        self._epoch = 0  # a drop forgets every thread's container proxies
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="cosmos-write")
        # per container (and per container's partition groups): how many of the last writes were of
        # new items (create first? a transactional batch of creates?)
        self._new_share: defaultdict[str | tuple[str, str], float] = defaultdict(lambda: 1.0)

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
            # shorter than the server's patience: a request the server has stopped answering is
            # abandoned and retried (only the failed items) instead of holding the batch
            read_timeout=settings.request_timeout_s,
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
                # time to live on, no default expiry: only tombstones (which carry a ttl) expire
                policy = self.indexing.get(name)
                database.create_container_if_not_exists(
                    name + self.suffix, PartitionKey(path), default_ttl=-1,
                    indexing_policy=dict(policy) if policy else None,
                )
        except Exception as exc:
            raise translated_error(exc) from exc

    def drop(self) -> None:
        """Delete this generation's containers (a rebuild drops the one it replaced)."""
        for name in self.paths:
            try:
                self.database.delete_container(name + self.suffix)
            except CosmosHttpResponseError as exc:
                if exc.status_code != 404:
                    raise translated_error(exc) from exc
            except Exception as exc:
                raise translated_error(exc) from exc
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
    def _point_read(self, key: ItemKey) -> dict[str, Any] | None:
        try:
            with self.requests.sent("point_read"):
                item: dict[str, Any] = self.container(key.collection).read_item(
                    key.id, partition_key=key.partition, headers=POINT_READ_HEADERS,
                    response_hook=self.requests.hook,
                )
            return item
        except CosmosHttpResponseError as exc:
            if exc.status_code != 404:
                raise
            return None

    def read_items(self, keys: Sequence[ItemKey]) -> dict[ItemKey, Document]:
        """The live documents of ``keys`` (absent: no item or a tombstone), by point reads in the
        writer pool."""
        futures = [(key, self._pool.submit(self._point_read, key)) for key in keys]
        out: dict[ItemKey, Document] = {}
        for key, future in futures:
            try:
                item = future.result()
            except Exception as exc:
                raise translated_error(exc) from exc
            doc = live_doc(item) if item is not None else None
            if doc is not None:
                out[key] = doc
        return out

    def partitions_items(self, collection: str, partitions: Sequence[str]) -> list[tuple[ItemKey, Document]]:
        """The live documents of the logical partitions ``partitions`` of ``collection``, by one query
        per ``PARTITIONS_PER_QUERY`` of them (``c.<partition key> IN (...)``), which Cosmos routes to
        those partitions' ranges only. A container that is not there (dropped by a rebuild) raises:
        an item that is not there is simply not in the answer."""
        field = self.partition_fields[collection]
        out: list[tuple[ItemKey, Document]] = []
        values = list(dict.fromkeys(partitions))
        try:
            container = self.container(collection)
            for start in range(0, len(values), PARTITIONS_PER_QUERY):
                chunk = values[start:start + PARTITIONS_PER_QUERY]
                names = [f"@p{i}" for i in range(len(chunk))]
                query = f"SELECT * FROM c WHERE c.{field} IN ({', '.join(names)}) AND c.deleted = false"
                self.requests.count("cross_partition_query")
                for item in container.query_items(
                    query, parameters=[{"name": n, "value": v} for n, v in zip(names, chunk, strict=True)],
                    enable_cross_partition_query=True, max_item_count=1000,
                ):
                    doc = live_doc(item)
                    if doc is not None:
                        out.append((ItemKey(collection, item["id"], str(item[field])), doc))
        except Exception as exc:
            raise translated_error(exc) from exc
        return out

    def live_items(self, collection: str) -> Iterator[tuple[ItemKey, Document]]:
        field = self.partition_fields[collection]
        self.requests.count("cross_partition_query")
        # a scan of the whole container (verify): a page may take longer than a point operation
        for item in self.container(collection).query_items(
            "SELECT * FROM c WHERE c.deleted = false", enable_cross_partition_query=True, max_item_count=1000,
            read_timeout=SCAN_TIMEOUT_S,
        ):
            doc = live_doc(item)
            if doc is not None:
                yield ItemKey(collection, item["id"], str(item[field])), doc

    def changed_since(self, collection: str, since: float) -> list[ItemKey]:
        """The keys of the items written at or after ``since`` (unix time), by the projector or
        anyone else, from the container's change feed (latest version: each item once; an item
        deleted is not in it, a tombstone is). Read by an incremental verify."""
        field = self.partition_fields[collection]
        start = datetime.fromtimestamp(max(0.0, since), UTC)
        keys: set[ItemKey] = set()
        try:
            container = self.container(collection)
            for feed_range in container.read_feed_ranges():  # one per physical partition
                pages = container.query_items_change_feed(
                    feed_range=feed_range, start_time=start, max_item_count=1000, response_hook=self.requests.hook
                ).by_page()
                for page in pages:
                    self.requests.count("change_feed")
                    keys.update(ItemKey(collection, item["id"], str(item[field])) for item in page)
        except Exception as exc:
            raise translated_error(exc) from exc
        return list(keys)

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
        self.requests.count("query" if partition is not None else "cross_partition_query")
        try:
            container = self.container(collection)
            items = (
                container.query_items(query, parameters=params, partition_key=partition)
                if partition is not None
                else container.query_items(query, parameters=params, enable_cross_partition_query=True)
            )
            return [ItemKey(collection, item["id"], str(item[field])) for item in items]
        except Exception as exc:
            raise translated_error(exc) from exc
