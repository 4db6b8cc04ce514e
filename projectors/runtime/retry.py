"""Retry as a wrapper: one loop (:class:`Retry`) for every call that may be retried, and the
retrying store with the store's own interface.

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from projectors.errors import ConfigurationError, RetriableError, Severity, response_headers, severity
from projectors.model import (
    ApplyResult,
    BulkLoad,
    CachedItems,
    ChangeFeed,
    CountsRequests,
    Document,
    ItemFailure,
    ItemKey,
    Operation,
    ProjectionStore,
    RangeDigester,
    RangeDigests,
    RequestSnapshot,
)
from projectors.settings import Settings
from projectors.stores.factory import current_generation, open_raw_store

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


def retry_after_s(error: BaseException) -> float:
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


class Retry:
    """The one retry loop: store writes, store reads, source reads, dead-letter flushes and the
    generation read at start all wait here. Only what :func:`~projectors.errors.severity` (or the
    store's own classification) calls ``RETRIABLE`` is tried again, with exponential backoff and
    jitter, never sooner than a throttling server asked, until the policy's attempts run out (then
    the last error is raised). Anything else is raised at once. ``stop()`` ends every wait at once
    with :class:`Stopped`."""

    def __init__(
        self,
        policy: RetryPolicy,
        sleep: Callable[[float], Any] | None = None,
        classify: Callable[[BaseException], Severity] = severity,
        stopping: threading.Event | None = None,
    ) -> None:
        self.policy = policy
        self.stopping = stopping or threading.Event()  # shared by the loops one stop ends
        self.sleep = sleep or self.stopping.wait
        self.classify = classify
        self.retries = 0

    def stop(self) -> None:
        self.stopping.set()

    def call(self, what: str, call: Callable[[], T], on_retry: Callable[[BaseException], None] | None = None) -> T:
        delays = self.policy.delays()
        while True:
            try:
                return call()
            except Exception as exc:
                if self.classify(exc) is not Severity.RETRIABLE or not self.wait(what, [exc], delays):
                    raise
                if on_retry is not None:
                    on_retry(exc)

    def wait(self, what: str, errors: Sequence[BaseException], delays: Iterator[float]) -> bool:
        """Sleep before the next attempt after ``errors``; False when the attempts ran out."""
        self._check_stop(errors[0])
        delay = next(delays, None)
        if delay is None:
            return False
        delay = max(delay, *(retry_after_s(e) for e in errors))
        self.retries += 1
        log.warning("%s: %d failure(s) (%s); retrying in %.1fs", what, len(errors), errors[0], delay)
        self.sleep(delay)
        self._check_stop(errors[0])
        return True

    def _check_stop(self, cause: BaseException) -> None:
        if self.stopping.is_set():
            raise Stopped("stopping: the batch is left for the next worker") from cause


MAX_OPS_PER_CALL = 2_000


class RetryingStore:
    def __init__(
        self,
        store: ProjectionStore,
        policy: RetryPolicy,
        sleep: Callable[[float], Any] | None = None,
        max_ops_per_call: int = MAX_OPS_PER_CALL,
    ) -> None:
        self.store = store
        self.retry = Retry(policy, sleep)
        self.max_ops_per_call = max_ops_per_call
        self.healthy = True

    @property
    def retries(self) -> int:
        return self.retry.retries

    def stop(self) -> None:
        """No more waiting: a retry loop in progress gives up (raises :class:`Stopped`)."""
        self.retry.stop()

    def apply(self, ops: Sequence[Operation]) -> ApplyResult:
        return self._apply(ops, self.store.apply)

    def load(self, ops: Sequence[Operation]) -> ApplyResult:
        """New items into an empty store (a rebuild's first fill): the store's bulk path where it
        has one (``load``), else ``apply``; retried the same way."""
        return self._apply(ops, self.store.load if isinstance(self.store, BulkLoad) else self.store.apply)

    def _apply(self, ops: Sequence[Operation], write: Callable[[Sequence[Operation]], ApplyResult]) -> ApplyResult:
        changed = stale = unchanged = 0
        permanent: list[ItemFailure] = []
        step = self.max_ops_per_call
        for start in range(0, len(ops), step):
            result = self._apply_chunk(ops[start : start + step], write)
            changed += result.changed
            stale += result.skipped_stale
            unchanged += result.unchanged
            permanent += result.failures
        return ApplyResult(changed, stale, unchanged, permanent)

    def _apply_chunk(
        self, ops: Sequence[Operation], write: Callable[[Sequence[Operation]], ApplyResult]
    ) -> ApplyResult:
        """Only the items that failed retriably are sent again; a configuration failure stops the
        batch (:class:`ConfigurationError`); refused items are returned. A write that raises rather
        than report per item is retried as a whole when retriable, else raised: the batch isolates
        the event that caused it."""
        changed = stale = unchanged = 0
        permanent: list[ItemFailure] = []
        pending: Sequence[Operation] = ops
        delays = self.retry.policy.delays()
        while True:
            try:
                result = write(pending)
            except Exception as exc:
                if severity(exc) is not Severity.RETRIABLE:
                    raise
                result = ApplyResult(failures=[ItemFailure(op, exc, Severity.RETRIABLE) for op in pending])
            changed += result.changed
            stale += result.skipped_stale
            unchanged += result.unchanged
            for failure in result.failures:
                if failure.severity is Severity.CONFIGURATION:
                    raise ConfigurationError(f"the store refused {failure.op.key}: {failure.error}") from failure.error
            retriable = [f for f in result.failures if f.retriable]
            permanent += [f for f in result.failures if not f.retriable]
            if not retriable:
                self.healthy = True
                return ApplyResult(changed, stale, unchanged, permanent)
            self.healthy = False
            if not self.retry.wait("store", [f.error for f in retriable], delays):
                return ApplyResult(changed, stale, unchanged, permanent + retriable)
            pending = [f.op for f in retriable]

    def _call(self, what: str, call: Callable[[], T]) -> T:
        def unhealthy(_exc: BaseException) -> None:
            self.healthy = False

        result = self.retry.call(f"store {what}", call, on_retry=unhealthy)
        self.healthy = True
        return result

    def find_keys(self, collection: str, equals: Mapping[str, str], partition: str | None = None) -> list[ItemKey]:
        return self._call("lookup", lambda: self.store.find_keys(collection, equals, partition))

    def read_items(self, keys: Sequence[ItemKey]) -> Mapping[ItemKey, Document]:
        return self._call("point reads", lambda: self.store.read_items(keys))

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

    @property
    def digests(self) -> RangeDigester | None:
        """The wrapped store's range digests (None where it has none): verify and a rebuild's check
        compare by range through the wrapper too."""
        return self.store.digests if isinstance(self.store, RangeDigests) else None

    def changed_since(self, collection: str, since: float) -> list[ItemKey]:
        """The wrapped store's change feed (an empty list for a store that keeps none)."""
        return self.store.changed_since(collection, since) if isinstance(self.store, ChangeFeed) else []

    def held_keys(self, keys: Sequence[ItemKey]) -> set[ItemKey]:
        """Which of ``keys`` a cache holds now (``CachedItems``; none for any other store)."""
        store = self.store
        return self._call("held keys", lambda: store.held_keys(keys)) if isinstance(store, CachedItems) else set()

    def requested(self, wait_s: float) -> list[ItemKey]:
        """The keys readers asked a cache for (``CachedItems``); not retried: they ask again."""
        return self.store.requested(wait_s) if isinstance(self.store, CachedItems) else []

    @property
    def requests(self) -> RequestSnapshot:
        """The wrapped store's request counts (none for a store that does not count them)."""
        return self.store.requests if isinstance(self.store, CountsRequests) else NO_REQUESTS


def unwrapped(store: Any) -> Any:
    """The store adapter inside a retry wrapper (the bench changes a store behind the projector)."""
    return store.store if isinstance(store, RetryingStore) else store


class _NoRequests:
    def snapshot(self) -> Mapping[str, float]:
        return {}


NO_REQUESTS = _NoRequests()


def open_store(settings: Settings, projection: str, generation: int | None = None) -> ProjectionStore:
    """``projection``'s store (``stores/factory.py``) wrapped in the retry policy: retriable failures
    are retried until they succeed. The live generation is read with the same patience (the store
    may be down when a worker starts)."""
    policy = RetryPolicy(
        initial_s=settings.worker.retry_initial_s, max_s=settings.worker.retry_max_s, multiplier=2.0, max_attempts=None
    )
    if generation is None:
        # any client's failure but a configuration error: the store may still be starting
        patient = Retry(policy, classify=lambda e: Severity.CONFIGURATION if severity(e) is Severity.CONFIGURATION
                        else Severity.RETRIABLE)
        generation = patient.call(
            f"{projection}: reading the live generation", lambda: current_generation(settings, projection)
        )
    return cast(ProjectionStore, RetryingStore(open_raw_store(settings, projection, generation), policy))
