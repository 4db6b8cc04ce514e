"""The retry wrapper (pure logic, a scripted store): bounded calls, only the failed items retried,
the server's retry-after honoured, a stop ends the waiting."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest

from projectors.projections.model import ApplyResult, ItemFailure, ItemKey, Operation, Put
from projectors.runtime.retry import RetryingStore, RetryPolicy, Stopped, retry_after_s


class Throttled(Exception):
    def __init__(self, retry_after_ms: int) -> None:
        super().__init__("429 too many requests")
        self.headers = {"x-ms-retry-after-ms": str(retry_after_ms)}


class ScriptedStore:
    """Fails the items named in ``failing`` (retriable) the first ``times`` calls they appear in."""

    def __init__(self, failing: set[str], times: int = 1, error: Exception | None = None) -> None:
        self.failing, self.times, self.error = failing, times, error or TimeoutError("slow")
        self.calls: list[list[str]] = []
        self.seen: dict[str, int] = {}

    def apply(self, ops: Sequence[Operation]) -> ApplyResult:
        self.calls.append([op.key.id for op in ops])
        failures = []
        for op in ops:
            self.seen[op.key.id] = self.seen.get(op.key.id, 0) + 1
            if op.key.id in self.failing and self.seen[op.key.id] <= self.times:
                failures.append(ItemFailure(op, self.error, True))
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
