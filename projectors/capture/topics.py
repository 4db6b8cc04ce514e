"""Reading the capture topics back: what arrived, per topic and operation."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from projectors.capture.connector import table_topic
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


def summarize_topics(settings: Settings, max_events: int, timeout_s: float, out: Callable[[str], None]) -> Counter[str]:
    topics = [table_topic(settings.capture.topic_prefix, t) for t in settings.capture.table_list]
    counts: Counter[str] = Counter()
    shown: set[tuple[str, str]] = set()
    for record in read_from_start(settings, topics, idle_s=5.0, timeout_s=timeout_s):
        op = "tombstone" if record.value is None else record.value.get("op", "?")
        counts[f"{record.topic} {op}"] += 1
        if len(shown) < max_events and record.value is not None and (record.topic, op) not in shown:
            shown.add((record.topic, op))
            out(f"-- {record.topic}[{record.partition}]@{record.offset} key={json.dumps(record.key)}")
            value = dict(record.value)
            source = value.get("source", {})
            value["source"] = {k: source.get(k) for k in ("table", "lsn", "txId", "snapshot")}
            out("   " + json.dumps(value)[:400])
    out("events per topic and operation (c=create u=update d=delete r=snapshot read):")
    for name, n in sorted(counts.items()):
        out(f"   {name:<40} {n}")
    return counts
