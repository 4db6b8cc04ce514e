"""Reading the capture topics back: what arrived, per topic and operation."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from projectors.errors import RetriableError
from projectors.model import table_topic
from projectors.projections import capture_tables
from projectors.settings import Settings


@dataclass(frozen=True)
class TopicRecord:
    topic: str
    partition: int
    offset: int
    key: Any
    value: Any  # None for a tombstone


def _json_or_text(raw: bytes | None) -> Any:
    """A record's key or value as JSON, or as text when it is not JSON (a dead letter's key is
    whatever the bad record had)."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def read_from_start(
    settings: Settings,
    topics: list[str],
    idle_s: float = 3.0,
    timeout_s: float = 60.0,
    until: Callable[[list[TopicRecord]], bool] | None = None,
) -> Iterator[TopicRecord]:
    """Yield every record of ``topics`` from the beginning (assigned partitions, no group), until
    ``until(seen)`` holds, or nothing new came for ``idle_s`` after the first record, or ``timeout_s``.
    Never relies on the broker's high watermark (short on the local broker after batched produce)."""
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": f"projectors-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    try:
        meta = consumer.list_topics(timeout=10)
        assignment = [
            TopicPartition(t, p, OFFSET_BEGINNING)
            for t in topics
            if t in meta.topics
            for p in meta.topics[t].partitions
        ]
        consumer.assign(assignment)
        seen: list[TopicRecord] = []
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                if until is None and seen and time.monotonic() - last_new > idle_s:
                    return
                if until is not None and until(seen):
                    return
                continue
            if msg.error():
                continue
            raw_key, raw_value = msg.key(), msg.value()
            record = TopicRecord(
                msg.topic() or "",
                msg.partition() or 0,
                msg.offset() or 0,
                _json_or_text(raw_key),
                _json_or_text(raw_value),
            )
            seen.append(record)
            last_new = time.monotonic()
            yield record
    finally:
        consumer.close()


Position = tuple[str, int]


class _Consuming(Protocol):
    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]: ...


def drain(
    consumer: _Consuming,
    starts: dict[Position, int],
    ends: dict[Position, int],
    quiet_s: float,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[TopicRecord]:
    """Yield the records ``consumer`` (assigned at ``starts``) returns until every partition reached
    its end offset in ``ends`` *and* then a poll of ``quiet_s`` returned nothing. The local broker
    (Tansu) reports an end offset short of the true end after batched produce (the last batch's
    base offset + 1): the records past it come with that batch or in the polls that follow, so the
    quiet poll is what proves the end. At ``deadline``: done if every end was reached (what comes
    later was written after the ends were taken), else :class:`RetriableError` naming the partitions."""
    positions = dict(starts)
    while True:
        behind = {tp: end for tp, end in ends.items() if positions.get(tp, 0) < end}
        batch = consumer.consume(num_messages=1000, timeout=min(quiet_s, 0.2) if behind else quiet_s)
        records = [m for m in batch if m.error() is None]
        if not records and not behind:
            return
        for msg in records:
            topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            positions[(topic, partition)] = max(positions.get((topic, partition), 0), offset + 1)
            yield TopicRecord(topic, partition, offset, _json_or_text(msg.key()), _json_or_text(msg.value()))
        if clock() > deadline:
            behind = {tp: end for tp, end in ends.items() if positions.get(tp, 0) < end}
            if not behind:
                return
            missing = ", ".join(
                f"{t}[{p}] at {positions.get((t, p), 0)} of {e}" for (t, p), e in sorted(behind.items())
            )
            raise RetriableError(f"the broker did not return every record in time: {missing}")


def read_to_end(
    settings: Settings, topics: list[str], quiet_s: float = 0.5, timeout_s: float = 30.0
) -> Iterator[TopicRecord]:
    """Yield every record of ``topics`` (those that exist) from the beginning to their end offsets
    taken now, then to the true end (:func:`drain`). One consumer with an assignment: no consumer
    group joined, nothing committed, no wait for records that are not there."""
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": f"projectors-reader-{uuid.uuid4().hex[:8]}",  # never joined: assignment only
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",  # a start the topic's retention removed meanwhile
            # a read to the end: the records are there; only the last fetch waits (for none)
            "fetch.wait.max.ms": max(settings.worker.fetch_max_wait_ms, settings.worker.fetch_idle_wait_ms),
        }
    )
    try:
        deadline = time.monotonic() + timeout_s
        meta = consumer.list_topics(timeout=10)
        starts: dict[Position, int] = {}
        ends: dict[Position, int] = {}
        for topic in topics:
            for partition in sorted(meta.topics[topic].partitions) if topic in meta.topics else []:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                starts[(topic, partition)], ends[(topic, partition)] = low, high
        if not starts:
            return
        consumer.assign([TopicPartition(t, p, low) for (t, p), low in starts.items()])
        yield from drain(consumer, starts, ends, quiet_s, deadline)
    finally:
        consumer.close()


def summarize_topics(settings: Settings, max_events: int, timeout_s: float, out: Callable[[str], None]) -> Counter[str]:
    topics = [table_topic(settings.capture.topic_prefix, t) for t in capture_tables(settings.capture)]
    counts: Counter[str] = Counter()
    shown: set[tuple[str, str]] = set()
    for record in read_from_start(settings, topics, idle_s=5.0, timeout_s=timeout_s):
        op = "tombstone" if record.value is None else record.value.get("op", "?")
        counts[f"{record.topic} {op}"] += 1
        if len(shown) < max_events and record.value is not None and (record.topic, op) not in shown:
            if not shown:
                out("the first event of each topic and operation:")
            shown.add((record.topic, op))
            out("   " + describe_event(record))
    out("events per topic and operation (c=create u=update d=delete r=snapshot read):")
    for name, n in sorted(counts.items()):
        out(f"   {name:<40} {n}")
    return counts


OPERATIONS = {"c": "create", "u": "update", "d": "delete", "r": "read", "t": "truncate", "m": "message"}


def describe_event(record: TopicRecord) -> str:
    """One line for a change event: operation, table, key, LSN, and where it sits on the topic."""
    value = record.value if isinstance(record.value, dict) else {}
    source = value.get("source") or {}
    op = value.get("op", "?")
    table = source.get("table") or record.topic.rsplit(".", 1)[-1]
    if isinstance(record.key, dict):
        key = " ".join(f"{k}={v}" for k, v in record.key.items())
    else:
        key = json.dumps(record.key)
    lsn = source.get("lsn")
    return (
        f"{OPERATIONS.get(op, op):<6} {table:<9} {key}  lsn={lsn if lsn is not None else '-'}  "
        f"({record.topic}[{record.partition}]@{record.offset})"
    )
