"""A batch with an event the projection cannot handle (an error no retry fixes): that event is
isolated by bisection and dead-lettered with the error, every other event of the batch is applied
(pure logic: a scripted projection and store; the real stack runs the same path in
tests/pipeline)."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import pytest
from psycopg import errors as pg_errors

from projectors.events.models import ChangeEvent
from projectors.model import ApplyResult, Document, ItemKey, Operation, ProjectionStore, Put
from projectors.projections.base import Projection, Touch
from projectors.runtime.batch import BatchProjector
from projectors.runtime.dead_letters import RawRecord
from projectors.source import PostgresSource


class Picky(Projection):
    """One item per user row; a user whose handle is "boom" makes the whole plan fail."""

    name = "picky"
    tables = ("users",)
    collections = ("U",)

    def touched(self, event: ChangeEvent) -> list[Touch]:
        return [ItemKey("U", row.handle) for row in event.rows()]  # type: ignore[attr-defined]

    def plan(self, touches: Collection[Touch], source: PostgresSource, held: ProjectionStore) -> list[Operation]:
        if any(isinstance(t, ItemKey) and t.id == "boom" for t in touches):
            raise ValueError("the spec read failed on 'boom'")
        return [Put(t, 1, {"id": t.id}) for t in touches if isinstance(t, ItemKey)]

    def spec_for(self, keys: Collection[ItemKey], source: PostgresSource) -> dict[ItemKey, Document]:
        raise NotImplementedError

    def spec_all(self, source: PostgresSource) -> Iterator[tuple[ItemKey, Document]]:
        raise NotImplementedError


class Store:
    def __init__(self) -> None:
        self.items: set[str] = set()

    def apply(self, ops: Sequence[Operation]) -> ApplyResult:
        self.items |= {op.key.id for op in ops}
        return ApplyResult(changed=len(ops))


class Letters:
    def __init__(self) -> None:
        self.sent: list[tuple[RawRecord, str]] = []

    def send(self, record: RawRecord, reason: str) -> None:
        self.sent.append((record, reason))

    def flush(self) -> None:
        pass


class Connection:
    closed = False

    def close(self) -> None:
        pass


def user(offset: int, handle: str) -> RawRecord:
    value = {"op": "c", "before": None, "after": {"id": f"00000000-0000-4000-8000-{offset:012d}", "handle": handle},
             "source": {"schema": "public", "table": "users", "lsn": 100 + offset, "txId": 1}}
    return RawRecord("social.public.users", 0, offset, b"{}", json.dumps(value).encode())


def test_one_failing_event_is_dead_lettered_and_the_rest_applied() -> None:
    store, letters = Store(), Letters()
    projector = BatchProjector(Picky(), store, lambda: Connection(), letters)  # type: ignore[arg-type, return-value]
    handles = [f"u{i}" for i in range(13)]
    handles[9] = "boom"
    projector.process([user(i, h) for i, h in enumerate(handles)])
    assert store.items == {h for h in handles if h != "boom"}
    assert [(r.offset, reason) for r, reason in letters.sent] == [
        (9, "projecting the event failed: ValueError: the spec read failed on 'boom'")
    ]
    assert projector.stats.events == 13 and projector.stats.dead_letters == 1


def test_a_batch_without_a_failing_event_is_planned_once() -> None:
    store, letters = Store(), Letters()
    calls: list[int] = []
    picky = Picky()
    plan = picky.plan

    def counted(touches: Collection[Touch], source: Any, held: Any) -> list[Operation]:
        calls.append(len(touches))
        return plan(touches, source, held)

    picky.plan = counted  # type: ignore[method-assign]
    BatchProjector(picky, store, lambda: Connection(), letters).process(  # type: ignore[arg-type, return-value]
        [user(i, f"u{i}") for i in range(8)]
    )
    assert calls == [8] and not letters.sent and len(store.items) == 8


def test_a_configuration_error_stops_the_batch_and_dead_letters_nothing() -> None:
    """A source role without the privilege fails every event the same way: the batch raises (the
    worker exits with EX_CONFIG, nothing acknowledged) instead of bisecting the whole stream into the
    dead letters."""
    store, letters = Store(), Letters()
    picky = Picky()

    def denied(touches: Collection[Touch], source: Any, held: Any) -> list[Operation]:
        raise pg_errors.InsufficientPrivilege("permission denied for table users")

    picky.plan = denied  # type: ignore[method-assign]
    projector = BatchProjector(picky, store, lambda: Connection(), letters)  # type: ignore[arg-type, return-value]
    with pytest.raises(pg_errors.InsufficientPrivilege):
        projector.process([user(i, f"u{i}") for i in range(8)])
    assert not letters.sent and not store.items and projector.stats.events == 0


def test_the_source_of_a_batch_must_see_its_changes_transactions() -> None:
    """The plan's source carries the transactions of the batch's streamed changes (its reads wait
    until a snapshot sees them: tests/runtime/test_source_visibility.py); snapshot reads none."""
    store, letters = Store(), Letters()
    seen: list[list[int]] = []
    picky = Picky()
    plan = picky.plan

    def recording(touches: Collection[Touch], source: Any, held: Any) -> list[Operation]:
        seen.append(list(source.must_see))
        return plan(touches, source, held)

    picky.plan = recording  # type: ignore[method-assign]

    def change(offset: int, op: str, tx: int) -> RawRecord:
        record = user(offset, f"u{offset}")
        value = json.loads(record.value or b"")
        value["op"], value["source"]["txId"] = op, tx
        return record._replace(value=json.dumps(value).encode())

    projector = BatchProjector(picky, store, lambda: Connection(), letters)  # type: ignore[arg-type, return-value]
    projector.process([change(0, "c", 501), change(1, "u", 502), change(2, "c", 501), change(3, "r", 77)])
    assert seen == [[501, 502]]
