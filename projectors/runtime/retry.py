"""Retry as a wrapper with the store's own interface (STYLE.md: retry is a wrapper, not sprinkled).

``RetryingStore.apply`` re-applies the operations a store reported as failed *and retriable* (the
store is down, a timeout, throttling) with exponential backoff and jitter, until they succeed or the
policy's attempts run out; permanent failures are returned at once, for the dead letters. The batch
is not acknowledged meanwhile, so a store outage loses nothing and skips nothing.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from projectors.errors import ConfigurationError, RetriableError
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


class RetryingStore:
    def __init__(
        self, store: ProjectionStore, policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.store = store
        self.policy = policy
        self.sleep = sleep
        self.retries = 0
        self.healthy = True

    def apply(self, ops: Sequence[Operation]) -> ApplyResult:
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
            delay = next(delays, None)
            if delay is None:
                return ApplyResult(changed, stale, unchanged, permanent + retriable)
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
                delay = next(delays, None)
                if delay is None:
                    raise
                self.retries += 1
                log.warning("store %s failed (%s); retrying in %.1fs", what, exc, delay)
                self.sleep(delay)

    def find_keys(self, collection: str, equals: Mapping[str, str], partition: str | None = None) -> list[ItemKey]:
        return self._call("lookup", lambda: self.store.find_keys(collection, equals, partition))

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
