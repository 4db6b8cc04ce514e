"""The retry wrapper (pure logic, a scripted store): bounded calls, only the failed items retried,
the server's retry-after honoured, a stop ends the waiting."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest

from projectors.errors import ConfigurationError, Severity
from projectors.model import ApplyResult, ItemFailure, ItemKey, Operation, Put
from projectors.runtime.retry import Retry, RetryingStore, RetryPolicy, Stopped, retry_after_s


class Throttled(Exception):
    def __init__(self, retry_after_ms: int) -> None:
        super().__init__("429 too many requests")
        self.headers = {"x-ms-retry-after-ms": str(retry_after_ms)}


class ScriptedStore:
    """Fails the items named in ``failing`` (retriable) the first ``times`` calls they appear in."""

    def __init__(
        self, failing: set[str], times: int = 1, error: Exception | None = None,
        severity: Severity = Severity.RETRIABLE,
    ) -> None:
        self.failing, self.times, self.error, self.severity = failing, times, error or TimeoutError("slow"), severity
        self.calls: list[list[str]] = []
        self.seen: dict[str, int] = {}

    def apply(self, ops: Sequence[Operation]) -> ApplyResult:
        self.calls.append([op.key.id for op in ops])
        failures = []
        for op in ops:
            self.seen[op.key.id] = self.seen.get(op.key.id, 0) + 1
            if op.key.id in self.failing and self.seen[op.key.id] <= self.times:
                failures.append(ItemFailure(op, self.error, self.severity))
        return ApplyResult(changed=len(ops) - len(failures), failures=failures)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


def puts(n: int) -> list[Operation]:
    return [Put(ItemKey("c", f"i{i}", "p"), 1, {"id": f"i{i}"}) for i in range(n)]


def test_calls_are_bounded_and_only_failed_items_are_retried() -> None:
    store = ScriptedStore({"i3", "i7"})
    sleeps: list[float] = []
    retrying = RetryingStore(store, RetryPolicy(initial_s=0.01), sleep=sleeps.append, max_ops_per_call=4)  # type: ignore[arg-type]
    result = retrying.apply(puts(10))
    assert result.changed == 10 and not result.failures
    # chunks of at most 4; each chunk's failed item retried alone, what succeeded is not sent again
    assert store.calls == [["i0", "i1", "i2", "i3"], ["i3"], ["i4", "i5", "i6", "i7"], ["i7"], ["i8", "i9"]]
    assert len(sleeps) == 2 and retrying.retries == 2


def test_a_throttling_servers_retry_after_is_honoured() -> None:
    store = ScriptedStore({"i0"}, error=Throttled(1500))
    sleeps: list[float] = []
    RetryingStore(store, RetryPolicy(initial_s=0.01), sleep=sleeps.append).apply(puts(2))  # type: ignore[arg-type]
    assert sleeps and sleeps[0] >= 1.5
    assert retry_after_s(Throttled(250)) == 0.25 and retry_after_s(TimeoutError()) == 0.0


def test_attempts_run_out_with_the_failures_reported() -> None:
    store = ScriptedStore({"i1"}, times=100)
    result = RetryingStore(store, RetryPolicy(initial_s=0.0, max_attempts=3), sleep=lambda _s: None).apply(puts(3))  # type: ignore[arg-type]
    assert result.changed == 2 and [f.op.key.id for f in result.failures] == ["i1"]
    assert len(store.calls) == 3


def test_stop_ends_the_waiting_at_once() -> None:
    store = ScriptedStore({"i0"}, times=10**9)
    retrying = RetryingStore(store, RetryPolicy(initial_s=30.0, max_s=30.0))  # type: ignore[arg-type]
    threading.Timer(0.3, retrying.stop).start()
    with pytest.raises(Stopped):
        retrying.apply(puts(1))  # without the stop it would wait 30 s between attempts, forever
    assert len(store.calls) <= 2


def test_a_configuration_failure_stops_the_batch_at_once() -> None:
    """A store that refuses the credentials (Cosmos 401/403, a refused FalkorDB login) raises a
    ConfigurationError: no retry, and nothing returned for the dead letters."""
    store = ScriptedStore({"i1"}, error=PermissionError("403 forbidden"), severity=Severity.CONFIGURATION)
    sleeps: list[float] = []
    with pytest.raises(ConfigurationError, match="i1"):
        RetryingStore(store, RetryPolicy(), sleep=sleeps.append).apply(puts(3))  # type: ignore[arg-type]
    assert not sleeps and len(store.calls) == 1


def test_refused_items_are_returned_without_a_retry() -> None:
    store = ScriptedStore({"i2"}, error=ValueError("413 too large"), severity=Severity.REFUSED)
    sleeps: list[float] = []
    result = RetryingStore(store, RetryPolicy(), sleep=sleeps.append).apply(puts(3))  # type: ignore[arg-type]
    assert result.changed == 2 and [f.op.key.id for f in result.failures] == ["i2"] and not sleeps


class Raising(ScriptedStore):
    def __init__(self, errors: list[Exception]) -> None:
        super().__init__(set())
        self.errors = errors

    def apply(self, ops: Sequence[Operation]) -> ApplyResult:
        self.calls.append([op.key.id for op in ops])
        if self.errors:
            raise self.errors.pop(0)
        return ApplyResult(changed=len(ops))


def test_a_write_that_raises_is_retried_only_when_retriable() -> None:
    store = Raising([ConnectionResetError(), TimeoutError()])
    result = RetryingStore(store, RetryPolicy(initial_s=0.0), sleep=lambda _s: None).apply(puts(2))  # type: ignore[arg-type]
    assert result.changed == 2 and len(store.calls) == 3
    bug = Raising([KeyError("_etag")])
    with pytest.raises(KeyError):  # the batch isolates the event that causes it
        RetryingStore(bug, RetryPolicy(initial_s=0.0), sleep=lambda _s: None).apply(puts(2))  # type: ignore[arg-type]
    assert len(bug.calls) == 1


def test_one_retry_loop_for_calls() -> None:
    """Retriable errors are retried until the attempts run out (then the last one is raised);
    anything else is raised at once; the classification can be the caller's."""
    failures = [TimeoutError("1"), TimeoutError("2"), TimeoutError("3")]
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "done"

    retry = Retry(RetryPolicy(initial_s=0.0, max_attempts=3), sleep=lambda _s: None)
    with pytest.raises(TimeoutError, match="3"):
        retry.call("flaky", flaky)
    assert len(calls) == 3 and retry.retries == 2
    assert Retry(RetryPolicy(initial_s=0.0), sleep=lambda _s: None).call("flaky", flaky) == "done"
    with pytest.raises(ValueError):
        Retry(RetryPolicy(initial_s=0.0), sleep=lambda _s: None).call("bad", lambda: int("x"))
    patient = Retry(RetryPolicy(initial_s=0.0), sleep=lambda _s: None, classify=lambda _e: Severity.RETRIABLE)
    odd = [ValueError("not yet")]

    def not_yet() -> str:
        if odd:
            raise odd.pop()
        return "ok"

    assert patient.call("odd", not_yet) == "ok" and patient.retries == 1
