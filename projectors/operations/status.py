"""`projectors status`: where each projection is, per partition, and how healthy its store is.

Lag = end offset - committed offset (the local broker reports end offsets short after batched
produce: lag there is a lower bound). Events/s, last applied LSN and its age come from
the workers' published stats; store health from a ping of the store.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from projectors.capture.connector import table_topic
from projectors.capture.preflight import require_broker
from projectors.operations.offsets import committed, ends, partitions
from projectors.projections import PROJECTIONS
from projectors.runtime.dead_letters import dead_letter_topic
from projectors.runtime.stores import current_generation, open_raw_store
from projectors.runtime.worker import group_id, read_stats
from projectors.settings import Settings


@dataclass
class PartitionStatus:
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int


@dataclass
class ProjectionStatus:
    projection: str
    group: str
    partitions: list[PartitionStatus] = field(default_factory=list)
    lag: int = 0
    workers: int = 0
    events: int = 0
    events_per_s: float = 0.0
    last_lsn: int = 0
    last_applied_age_s: float | None = None
    store_up: bool = False
    generation: int | None = None  # the live store generation (rebuild); None when unreadable
    dead_letters: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def projection_status(settings: Settings, name: str, consumer: Consumer) -> ProjectionStatus:
    projection = PROJECTIONS[name]
    status = ProjectionStatus(name, group_id(name))
    done = committed(settings, status.group)
    topics = [table_topic(settings.capture.topic_prefix, t) for t in projection.tables]
    for tp in partitions(settings, topics):
        low, high = consumer.get_watermark_offsets(tp, timeout=10)
        offset = done.get((tp.topic, tp.partition))
        position = offset if offset is not None and offset >= 0 else low
        high = max(high, position)  # the local broker can report an end below what was consumed
        lag = high - position
        status.partitions.append(PartitionStatus(tp.topic, tp.partition, offset, high, lag))
        status.lag += lag
    # the letters there: each partition's true end (the local broker's high watermark stops short
    # after batched produce) less its start
    dlq = dead_letter_topic(settings, name)
    if partitions(settings, [dlq]):
        for (topic, partition), end in ends(settings, [dlq], idle_s=0.5).items():
            low, _high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            status.dead_letters += max(0, end - low)
    now = time.time()
    for stats in read_stats(settings, name):
        status.events += int(stats["events"])
        status.last_lsn = max(status.last_lsn, int(stats["lastLsn"]))
        started = float(stats.get("startedAt", 0) or 0)
        if started and stats.get("alive", True):
            status.workers += 1
            status.events_per_s += int(stats["events"]) / max(1.0, now - started)
        applied = float(stats["lastAppliedAt"] or 0)
        if applied:
            age = now - applied
            previous = status.last_applied_age_s
            status.last_applied_age_s = age if previous is None else min(age, previous)
    try:
        status.generation = current_generation(settings, name)
        store = open_raw_store(settings, name, status.generation)
        try:
            status.store_up = store.ping()
        finally:
            store.close()
    except Exception:  # the store (and so its generation pointer) does not answer
        status.store_up = False
    return status


def gather(settings: Settings, names: list[str] | None = None) -> list[ProjectionStatus]:
    require_broker(settings)
    consumer = Consumer(
        {**settings.kafka.client_config(), "group.id": "projectors-status", "enable.auto.commit": False}
    )
    try:
        return [projection_status(settings, name, consumer) for name in names or list(PROJECTIONS)]
    finally:
        consumer.close()


def render(rows: list[ProjectionStatus]) -> list[str]:
    lines = [
        f"{'projection':<10} {'store':<5} {'gen':>3} {'lag':>7} {'events':>8} {'ev/s':>7} "
        f"{'last LSN':>12} {'age':>8} {'DLQ':>5}"
    ]
    for r in rows:
        age = "-" if r.last_applied_age_s is None else f"{r.last_applied_age_s:.0f}s"
        gen = "-" if r.generation is None else str(r.generation)
        lines.append(
            f"{r.projection:<10} {'up' if r.store_up else 'DOWN':<5} {gen:>3} "
            f"{r.lag:>7} {r.events:>8} {r.events_per_s:>7.1f} "
            f"{r.last_lsn:>12} {age:>8} {r.dead_letters:>5}"
        )
        for p in r.partitions:
            committed_text = "-" if p.committed is None else str(p.committed)
            lines.append(f"    {p.topic}[{p.partition}] committed {committed_text:>6} end {p.end:>6} lag {p.lag:>6}")
    return lines
