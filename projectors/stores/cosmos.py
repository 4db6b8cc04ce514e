"""Cosmos DB containers (``userFeed``, ``counters``...) with the version guard, by point operations.

Each item is the projection's document plus ``sourceVersion`` and ``deleted`` (and ``ttl``: -1 on a
live item, or the seconds until its ``expiresAt`` when the document has one: :func:`ttl_of`). A write
is never preceded by a read or a query:

- a Put creates the item (new ids: one request), or patches it with the condition
  ``sourceVersion < v`` (existing ids: one request; 412 means the store holds a newer or equal
  version: stale); which one is tried first follows what the container's recent items were;
- a Remove patches the item into a tombstone (``deleted: true``, the new ``sourceVersion``, ``ttl``:
  the tombstone setting) with the same condition, so an older write arriving later cannot bring it
  back until the tombstone expires; an item that is not there costs one answered request (404) and
  leaves nothing behind. The containers have time to live on (``defaultTtl = -1``): live items never
  expire, tombstones do;
- a partition's many new items go in transactional batches of creates.

Two workers racing on one item cannot make an older version win: the condition is checked by the
server in the same request that writes. One gap is left by design: a Remove that finds no item
leaves no tombstone, so a concurrent older Put of the same item (another worker that read the source
earlier) can still create it; ``verify --repair`` finds and removes it.

Every request is counted by kind (point read, point write, patch, batch, query, cross-partition
query) with the request units the server charged (``x-ms-request-charge``), for metrics and the bench.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import DecodeError, ServiceRequestError, ServiceResponseError
from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy, PartitionKey
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosClientTimeoutError, CosmosHttpResponseError

from projectors.errors import Severity, response_headers, translated
from projectors.model import (
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
NEW_SHARE_WEIGHT = 0.1
PATCH_MAX_OPS = 10  # Azure's limit of operations in one patch
BATCH_MAX = 100  # Azure's limit of operations in one transactional batch
BATCH_FROM = 3  # a partition's new items in a batch from this many on
MAX_CONFLICTS = 8  # create/patch races with other writers on one item before giving up for now
SCAN_TIMEOUT_S = 120.0  # one page of a whole-container read
REQUEST_KINDS = ("point_read", "point_write", "patch", "batch", "query", "cross_partition_query", "change_feed")
# The local Cosmos REST server answers a point read of a missing item with a 500 ("Cannot read
# properties of undefined") unless this header is set, when it answers 404 like Azure; Azure ignores
# it on point reads.
POINT_READ_HEADERS = {"x-ms-documentdb-query-enablecrosspartition": "true"}


def ttl_of(doc: Document, now: datetime | None = None) -> int:
    """A live item's ``ttl``: -1 (never expires), or for a document with an ``expiresAt`` (ISO-8601,
    UTC) the seconds from this write until then (at least 1: Cosmos counts from the item's last
    write)."""
    expires = doc.get("expiresAt")
    if not isinstance(expires, str):
        return -1
    left = datetime.fromisoformat(expires) - (now or datetime.now(UTC))
    return max(1, math.ceil(left.total_seconds()))


def severity(exc: Exception) -> Severity:
    """Transport failures and transient statuses may succeed when sent again; a wrong or read-only
    key (401, 403) is the configuration; the server's other definite refusals (400 bad request,
    404, 413 too large...) refuse the item."""
    if isinstance(exc, CosmosHttpResponseError):
        if exc.status_code is None or exc.status_code in RETRIABLE_STATUS:
            return Severity.RETRIABLE
        return Severity.CONFIGURATION if exc.status_code in (401, 403) else Severity.REFUSED
    return Severity.RETRIABLE if isinstance(exc, TRANSPORT_ERRORS) else Severity.REFUSED


def _translated(exc: Exception) -> Exception:
    return translated("Cosmos", exc, severity(exc))


def live_doc(item: Mapping[str, Any]) -> Document | None:
    if item.get("deleted"):
        return None
    return {k: v for k, v in item.items() if k not in BOOKKEEPING}


def held(item: Mapping[str, Any] | None) -> Held | None:
    if item is None:
        return None
    return Held(int(item.get("sourceVersion", -1)), live_doc(item))


class RequestCounter:
    """Requests sent, by kind, and the request units the server charged for them (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = dict.fromkeys(REQUEST_KINDS, 0)
        self.request_units = 0.0

    def count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def hook(self, headers: Mapping[str, str], _body: object = None) -> None:
        charge = headers.get("x-ms-request-charge") if headers else None
        if charge:
            with self._lock:
                self.request_units += float(charge)

    @contextlib.contextmanager
    def sent(self, kind: str) -> Iterator[None]:
        """One request of ``kind``; its charge comes through :meth:`hook` (``response_hook``), or
        from the error when it was refused (a 404, 409 or 412 costs request units on Azure)."""
        self.count(kind)
        try:
            yield
        except Exception as exc:
            self.hook(response_headers(exc))
            raise

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {**self.counts, "request_units": round(self.request_units, 2)}


class CosmosStore:
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
        """Point operations only, never a query: each Put is a blind create or a conditional patch
        (``sourceVersion < v``), each Remove a conditional patch to a tombstone that expires; the
        item is read only when a patch cannot say it (more than 10 fields). A partition's new items
        go in transactional batches of creates. Every operation runs in the writer pool and fails
        alone: a failure is reported for its item, the others stand."""
        newest, dropped = newest_per_key(ops)
        groups: dict[tuple[str, str], list[Operation]] = defaultdict(list)
        for op in newest:
            groups[(op.key.collection, op.key.partition)].append(op)
        outcomes: list[Outcome] = []
        failures: list[ItemFailure] = []
        futures: list[tuple[list[Operation], Future[list[Outcome | Exception]]]] = []
        for (name, _partition), group in groups.items():
            try:
                self.container(name)  # an unknown container fails its items here
            except Exception as exc:
                failures += [ItemFailure(op, exc, severity(exc)) for op in group]
                continue
            puts = [op for op in group if isinstance(op, Put) and op.fresh is not False]
            # a partition's many puts (a follow, a conversion, a replay) learn apart from single items
            share: str | tuple[str, str] = (name, "group") if len(puts) >= BATCH_FROM else name
            rest: list[Operation] = group
            likely_new = all(op.fresh for op in puts) or self._new_share[share] >= 0.5
            if share != name and likely_new:
                batched = {id(op) for op in puts}
                rest = [op for op in group if id(op) not in batched]
                for start in range(0, len(puts), BATCH_MAX):
                    batch = puts[start : start + BATCH_MAX]
                    futures.append(([*batch], self._pool.submit(self._create_batch, batch)))
            futures += [([op], self._pool.submit(self._one, op, share)) for op in rest]
        for chunk, future in futures:  # every partition's writes run together, then are collected
            try:
                results = future.result()
            except Exception as exc:  # pragma: no cover - the calls catch their own errors
                results = [exc] * len(chunk)
            for op, result in zip(chunk, results, strict=True):
                if isinstance(result, Exception):
                    failures.append(ItemFailure(op, result, severity(result)))
                else:
                    outcomes.append(result)
        changed, stale, unchanged = tally(outcomes)
        return ApplyResult(changed, stale + dropped, unchanged, failures)

    def _one(self, op: Operation, share: str | tuple[str, str] | None = None) -> list[Outcome | Exception]:
        try:
            return [self._put(op, share or op.key.collection) if isinstance(op, Put) else self._remove(op)]
        except Exception as exc:
            return [exc]

    def _create_batch(self, ops: list[Put]) -> list[Outcome | Exception]:
        """New items of one partition in one transactional batch of creates (one request for up to
        100). When one of them exists already, the batch fails (atomically on Azure); the items not
        created go one by one, where the version guard decides."""
        name, partition = ops[0].key.collection, ops[0].key.partition
        container = self.container(name)
        statuses: list[int] = []
        try:
            with self.requests.sent("batch"):
                container.execute_item_batch(
                    [("create", (self._body(op),)) for op in ops], partition_key=partition,
                    response_hook=self.requests.hook,
                )
            self._learn((name, "group"), new=True)
            return [Outcome.CHANGED] * len(ops)
        except CosmosBatchOperationError as exc:
            statuses = [int(r.get("statusCode", 0)) for r in (exc.operation_responses or [])]
            # an item of the batch existed: a replay or a rewrite, where the items mostly exist;
            # the next groups of this container go item by item (patches first) until creates win again
            with self._lock:
                self._new_share[(name, "group")] = min(self._new_share[(name, "group")], 0.3)
        except Exception as exc:
            return [exc] * len(ops)
        out: list[Outcome | Exception] = []
        for i, op in enumerate(ops):
            if i < len(statuses) and statuses[i] in (200, 201):
                out.append(Outcome.CHANGED)  # created before the batch stopped (not atomic locally)
            else:  # some items of this partition exist: patch first
                out += self._one(Put(op.key, op.version, op.doc, fresh=False), (name, "group"))
        return out

    def _put(self, op: Put, share: str | tuple[str, str]) -> Outcome:
        """Create when the container's recent single items were mostly new (a post's fan-out),
        else a conditional patch first (counters, edits: the item is there). A create that meets an
        existing item (409) patches it; a patch that meets none (404) creates it; a patch whose
        condition fails (412) met a version as new or newer: stale."""
        guess = op.fresh is None  # no hint from the projection: follow what recent items were
        create_first = self._new_share[share] >= 0.5 if guess else bool(op.fresh)
        patch = self._patch_ops(op)
        for attempt in range(MAX_CONFLICTS):
            if create_first or attempt > 0:
                try:
                    self._create(op)
                    if guess:
                        self._learn(share, new=True)
                    return Outcome.CHANGED
                except CosmosHttpResponseError as exc:
                    if exc.status_code != 409:
                        raise
                    if guess:
                        self._learn(share, new=False)
            if patch is None:  # more fields than a patch carries: read, then replace with the etag
                return self._write(op, self._point_read(op.key))
            try:
                self._patch(op.key, patch, op.version)
                if guess and not create_first:
                    self._learn(share, new=False)
                return Outcome.CHANGED
            except CosmosHttpResponseError as exc:
                if exc.status_code == 412:
                    return Outcome.STALE
                if exc.status_code != 404:
                    raise
                if guess and not create_first:
                    self._learn(share, new=True)
            create_first = True  # gone meanwhile (or never there): create it
        raise TimeoutError(f"{op.key}: too many concurrent writers, giving up for now")

    def _remove(self, op: Operation) -> Outcome:
        """A tombstone at ``op.version`` where the item is older; nothing where there is no item."""
        ops: list[dict[str, Any]] = [
            {"op": "set", "path": "/deleted", "value": True},
            {"op": "set", "path": "/sourceVersion", "value": op.version},
            {"op": "set", "path": "/ttl", "value": self.tombstone_ttl_s},
        ]
        try:
            self._patch(op.key, ops, op.version)
            return Outcome.CHANGED
        except CosmosHttpResponseError as exc:
            if exc.status_code == 412:
                return Outcome.STALE
            if exc.status_code == 404:
                return Outcome.UNCHANGED  # never there (or expired): nothing to remove, nothing written
            raise

    def _patch_ops(self, op: Put) -> list[dict[str, Any]] | None:
        field = self.partition_fields[op.key.collection]
        ops = [{"op": "set", "path": f"/{k}", "value": v} for k, v in op.doc.items() if k not in ("id", field)]
        ops += [
            {"op": "set", "path": "/sourceVersion", "value": op.version},
            {"op": "set", "path": "/deleted", "value": False},
            # a revived tombstone must not expire; an item with an ``expiresAt`` expires then
            {"op": "set", "path": "/ttl", "value": ttl_of(op.doc)},
        ]
        return ops if len(ops) <= PATCH_MAX_OPS else None

    def _patch(self, key: ItemKey, ops: list[dict[str, Any]], version: int) -> None:
        with self.requests.sent("patch"):
            self.container(key.collection).patch_item(
                key.id, partition_key=key.partition, patch_operations=ops,
                filter_predicate=f"FROM c WHERE c.sourceVersion < {int(version)}",
                no_response=True, response_hook=self.requests.hook,
            )

    def _create(self, op: Put) -> None:
        with self.requests.sent("point_write"):
            self.container(op.key.collection).create_item(
                self._body(op), no_response=True, response_hook=self.requests.hook
            )

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
                raise _translated(exc) from exc
            doc = live_doc(item) if item is not None else None
            if doc is not None:
                out[key] = doc
        return out

    def _learn(self, container: str | tuple[str, str], new: bool) -> None:
        """Moving share of single items that did not exist yet (the last ~10 weigh most)."""
        with self._lock:
            self._new_share[container] = (1 - NEW_SHARE_WEIGHT) * self._new_share[container] + (
                NEW_SHARE_WEIGHT if new else 0.0
            )

    def _body(self, op: Put) -> dict[str, Any]:
        """A live item's whole document (a Remove is always a patch: see :meth:`_remove`)."""
        field = self.partition_fields[op.key.collection]
        body = {**op.doc, "id": op.key.id, field: op.key.partition, "sourceVersion": op.version, "deleted": False}
        if "expiresAt" in op.doc:
            body["ttl"] = ttl_of(op.doc)
        return body

    def _write(self, op: Put, item: dict[str, Any] | None) -> Outcome:
        """Read-then-write with the etag, for documents a patch cannot carry."""
        container = self.container(op.key.collection)  # this thread's
        for _attempt in range(MAX_CONFLICTS):
            decided = outcome(op, held(item))
            if decided is Outcome.STALE:
                return decided
            try:
                with self.requests.sent("point_write"):
                    if item is None:
                        container.create_item(self._body(op), response_hook=self.requests.hook)
                    else:
                        container.replace_item(
                            op.key.id, self._body(op), etag=item["_etag"],
                            match_condition=MatchConditions.IfNotModified, response_hook=self.requests.hook,
                        )
                return decided
            except CosmosHttpResponseError as exc:
                if exc.status_code not in (409, 412):
                    raise
                # another writer got there first: read what it wrote and decide again
                item = self._point_read(op.key)
        raise TimeoutError(f"{op.key}: too many concurrent writers, giving up for now")

    # -- reads --------------------------------------------------------------------------------------
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
            raise _translated(exc) from exc
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
            raise _translated(exc) from exc
