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

from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from azure.core import MatchConditions
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosHttpResponseError

from projectors.model import ApplyResult, ItemFailure, ItemKey, Operation, Put
from projectors.stores.cosmos_common import (
    BATCH_FROM,
    BATCH_MAX,
    BOOKKEEPING,
    MAX_CONFLICTS,
    NEW_SHARE_WEIGHT,
    PATCH_MAX_OPS,
    POINT_READ_HEADERS,
    RequestCounter,
    held,
    live_doc,
    severity,
    ttl_of,
)
from projectors.stores.cosmos_reads import CosmosContainers
from projectors.stores.guard import Outcome, newest_per_key, outcome, tally

# what other modules import from here, where it lives now
__all__ = ["BOOKKEEPING", "POINT_READ_HEADERS", "CosmosContainers", "CosmosStore", "RequestCounter", "live_doc",
           "severity", "ttl_of"]


class CosmosStore(CosmosContainers):
    """The containers with the version guard on every write (the module's docstring says how)."""

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
