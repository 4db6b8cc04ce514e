"""Retry as a wrapper with the store's own interface: retry is a wrapper, not sprinkled.

``RetryingStore.apply`` hands the store at most ``max_ops_per_call`` operations at a time, and
re-applies only the operations a store reported as failed *and retriable* (the store is down, a
timeout, throttling) with exponential backoff and jitter, never sooner than the server's own
``retry-after`` (429), until they succeed or the policy's attempts run out; what succeeded stays
done. Permanent failures are returned at once, for the dead letters. The batch is not acknowledged
meanwhile, so a store outage loses nothing and skips nothing; a batch moves forward for as long as
the store answers at all. ``stop()`` (the worker's SIGTERM) ends the waiting at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from projectors.errors import ConfigurationError, RetriableError, response_headers
from projectors.projections.model import (
    ApplyResult,
    Document,
    ItemFailure,
    ItemKey,
    Operation,
    ProjectionStore,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    initial_s: float = 0.2
    max_s: float = 10.0
    multiplier: float = 2.0
    max_attempts: int | None = None  # None: until it works (the batch waits, uncommitted)

    def delays(self) -> Iterator[float]:
        delay, attempt = self.initial_s, 1
        while self.max_attempts is None or attempt < self.max_attempts:
            yield delay * random.uniform(0.8, 1.2)
            delay = min(delay * self.multiplier, self.max_s)
            attempt += 1

    def call(self, what: str, call: Callable[[], T], sleep: Callable[[float], None] = time.sleep) -> T:
        """``call()``, retried on any error but a configuration error until the attempts run out
        (for calls made before there is a store to wrap, e.g. reading the live generation)."""
        delays = self.delays()
        while True:
            try:
                return call()
            except ConfigurationError:
                raise
            except Exception as exc:
                delay = next(delays, None)
                if delay is None:
                    raise
                log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
                sleep(delay)


def retry_after_s(error: Exception) -> float:
    """The wait a throttling server asked for (``x-ms-retry-after-ms``, ``Retry-After``), else 0."""
    headers = response_headers(error)
    try:
        if headers.get("x-ms-retry-after-ms"):
            return float(headers["x-ms-retry-after-ms"]) / 1000
        if headers.get("Retry-After"):
            return float(headers["Retry-After"])
    except (TypeError, ValueError):
        return 0.0
    return 0.0


class Stopped(RetriableError):
    """The process is stopping: the batch is left unacknowledged, for the next worker."""


MAX_OPS_PER_CALL = 2_000


class RetryingStore:
    def __init__(
        self,
        store: ProjectionStore,
        policy: RetryPolicy,
        sleep: Callable[[float], None] | None = None,
        max_ops_per_call: int = MAX_OPS_PER_CALL,
    ) -> None:
        self.store = store
        self.policy = policy
        self._stopping = threading.Event()
        self.sleep = sleep or self._stopping.wait
        self.max_ops_per_call = max_ops_per_call
        self.retries = 0
        self.healthy = True

    def stop(self) -> None:
        """No more waiting: a retry loop in progress gives up (raises :class:`Stopped`)."""
        self._stopping.set()

    def _check_stop(self) -> None:
        if self._stopping.is_set():
            raise Stopped("stopping: the batch is left for the next worker")

    def apply(self, ops: Sequence[Operation]) -> ApplyResult:
        changed = stale = unchanged = 0
        permanent: list[ItemFailure] = []
        step = self.max_ops_per_call
        for start in range(0, len(ops), step):
            result = self._apply_chunk(ops[start : start + step])
            changed += result.changed
            stale += result.skipped_stale
            unchanged += result.unchanged
            permanent += result.failures
        return ApplyResult(changed, stale, unchanged, permanent)

    def _apply_chunk(self, ops: Sequence[Operation]) -> ApplyResult:
        changed = stale = unchanged = 0
        permanent: list[ItemFailure] = []
        pending: Sequence[Operation] = ops
        delays = self.policy.delays()
        while True:
            try:
                result = self.store.apply(pending)
            except Exception as exc:
                result = ApplyResult(failures=[ItemFailure(op, exc, True) for op in pending])
            changed += result.changed
            stale += result.skipped_stale
            unchanged += result.unchanged
            retriable = [f for f in result.failures if f.retriable]
            permanent += [f for f in result.failures if not f.retriable]
            if not retriable:
                self.healthy = True
                return ApplyResult(changed, stale, unchanged, permanent)
            self.healthy = False
            self._check_stop()
            delay = next(delays, None)
            if delay is None:
                return ApplyResult(changed, stale, unchanged, permanent + retriable)
            delay = max(delay, max(retry_after_s(f.error) for f in retriable))
            self.retries += 1
            log.warning(
                "store: %d operation(s) failed (%s); retrying in %.1fs",
                len(retriable),
                retriable[0].error,
                delay,
            )
            self.sleep(delay)
            pending = [f.op for f in retriable]

    def _call(self, what: str, call: Callable[[], T]) -> T:
        delays = self.policy.delays()
        while True:
            try:
                result = call()
                self.healthy = True
                return result
            except (RetriableError, ConnectionError, TimeoutError, OSError) as exc:
                self.healthy = False
                self._check_stop()
                delay = next(delays, None)
                if delay is None:
                    raise
                self.retries += 1
                log.warning("store %s failed (%s); retrying in %.1fs", what, exc, delay)
                self.sleep(delay)

    def find_keys(self, collection: str, equals: Mapping[str, str], partition: str | None = None) -> list[ItemKey]:
        return self._call("lookup", lambda: self.store.find_keys(collection, equals, partition))

    def read_items(self, keys: list[ItemKey]) -> dict[ItemKey, Document]:
        read: Callable[[list[ItemKey]], dict[ItemKey, Document]] = self.store.read_items  # type: ignore[attr-defined]
        return self._call("point reads", lambda: read(keys))

    def ensure_schema(self) -> None:
        self._call("schema", self.store.ensure_schema)

    def live_items(self, collection: str) -> Iterator[tuple[ItemKey, Document]]:
        return self.store.live_items(collection)

    def ping(self) -> bool:
        return self.store.ping()

    def drop(self) -> None:
        self._call("drop", self.store.drop)

    def close(self) -> None:
        self.store.close()

    def __getattr__(self, name: str) -> Any:
        # read-side extras of a store (graph ``query``, search ``search``) pass through
        return getattr(self.store, name)
