"""`projectors status`: where each projection is, per partition, and how healthy its store is.

A store of the local stack that lost its data (``stack/integrity.py``) shows as ``LOST``, one being
restored as ``RESTORING``: never ``up`` with lag 0.

Lag = end offset - committed offset (the local broker reports end offsets short after batched
produce: lag there is a lower bound). Events/s (over the last minute: ``recent_rate``), last applied
LSN and its age come from the workers' published stats; store health from a ping of the store;
``paused`` from the control topic.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from projectors.capture.preflight import require_broker
from projectors.operations.checkpoint import read_checkpoint
from projectors.operations.deployment import Deployment, Elsewhere
from projectors.operations.offsets import committed, ends, partitions
from projectors.projections import DESCRIPTORS, descriptor
from projectors.runtime.control import ControlState, read_states
from projectors.runtime.dead_letters import dead_letter_topic
from projectors.runtime.stats import RATE_WINDOW_S, read_stats, recent_rate
from projectors.settings import Settings
from projectors.stores.factory import current_generation, open_raw_store


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
    events_per_s: float = 0.0  # over the last rate_window_s, summed over the running workers
    rate_window_s: float = RATE_WINDOW_S
    last_lsn: int = 0
    last_applied_age_s: float | None = None
    store_up: bool = False
    generation: int | None = None  # the live store generation (rebuild); None when unreadable
    # local stack: LOST (the store lost what it held: a restart found no marker) or RESTORING
    store_state: str = ""
    dead_letters: int = 0
    verified: dict[str, Any] | None = None  # the checkpoint of the last clean verify (checkpoint.py)
    # freshness: seconds since the oldest change the group has not applied was published (0: none
    # waits); read from the records themselves, not from the broker's high watermark
    behind_s: float = 0.0
    # the control topic's last command for the projection (runtime/control.py): state, by, at, request
    control: dict[str, str] = field(default_factory=lambda: ControlState().as_dict())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def projection_status(
    settings: Settings, name: str, consumer: Consumer, deployment: Deployment | None = None
) -> ProjectionStatus:
    d = descriptor(name)
    status = ProjectionStatus(name, d.group)
    done = committed(settings, status.group)
    topics = d.topics(settings)
    for tp in partitions(settings, topics):
        low, high = consumer.get_watermark_offsets(tp, timeout=10)
        offset = done.get((tp.topic, tp.partition))
        position = offset if offset is not None and offset >= 0 else low
        high = max(high, position)  # the local broker can report an end below what was consumed
        lag = high - position
        status.partitions.append(PartitionStatus(tp.topic, tp.partition, offset, high, lag))
        status.lag += lag
    status.behind_s = behind(consumer, [TopicPartition(p.topic, p.partition, p.end - p.lag) for p in status.partitions])
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
            samples = [(float(t), int(n)) for t, n in stats.get("recentEvents") or [(started, 0)]]
            status.events_per_s += recent_rate(samples, int(stats["events"]), now)
        applied = float(stats["lastAppliedAt"] or 0)
        if applied:
            age = now - applied
            previous = status.last_applied_age_s
            status.last_applied_age_s = age if previous is None else min(age, previous)
    found = read_checkpoint(settings, name)
    status.verified = None if found is None else found.as_dict()
    try:
        status.generation = current_generation(settings, name)
        store = open_raw_store(settings, name, status.generation, create=False)  # DOWN when missing
        try:
            status.store_up = store.ping()
        finally:
            store.close()
    except Exception:  # the store (and so its generation pointer) does not answer
        status.store_up = False
    try:
        status.store_state = (deployment or Elsewhere()).store_state(name) or ""
    except Exception:  # the store does not answer: DOWN (or LOST if it answered the ping)
        status.store_state = "LOST" if status.store_up else ""
    status.store_up = status.store_up and not status.store_state
    return status


def seconds_behind(settings: Settings, name: str, consumer: Consumer) -> float:
    """How far ``name``'s consumer group is behind its topics, in seconds (see :func:`behind`): no
    store is read. ``consumer`` is a plain consumer used to read one record per partition."""
    d = descriptor(name)
    done = committed(settings, d.group)
    positions = []
    for tp in partitions(settings, d.topics(settings)):
        low, _high = consumer.get_watermark_offsets(tp, timeout=5)
        offset = done.get((tp.topic, tp.partition))
        positions.append(TopicPartition(tp.topic, tp.partition, offset if offset is not None and offset >= 0 else low))
    return behind(consumer, positions)


def behind(consumer: Consumer, positions: list[TopicPartition], wait_s: float = 0.5) -> float:
    """Seconds since the first record at or after each position (what the group applies next) was
    published, the largest over the partitions; 0 when no partition has one. The records are read,
    so a high watermark that stops short (the local broker's, after batched produce) does not hide
    them."""
    if not positions:
        return 0.0
    consumer.assign(positions)
    oldest: dict[tuple[str, int], float] = {}
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline and len(oldest) < len(positions):
            for msg in consumer.consume(num_messages=len(positions) * 10, timeout=0.1):
                topic, partition = msg.topic(), msg.partition()
                if msg.error() is None and topic is not None and partition is not None:
                    _kind, stamp_ms = msg.timestamp()
                    oldest.setdefault((topic, partition), stamp_ms / 1000)
    finally:
        consumer.unassign()
    now = time.time()
    return max((max(0.0, now - stamp) for stamp in oldest.values()), default=0.0)


def gather(
    settings: Settings, names: list[str] | None = None, deployment: Deployment | None = None
) -> list[ProjectionStatus]:
    require_broker(settings)
    consumer = Consumer(
        {**settings.kafka.client_config(), "group.id": "projectors-status", "enable.auto.commit": False}
    )
    try:
        rows = [projection_status(settings, name, consumer, deployment) for name in names or list(DESCRIPTORS)]
        states = read_states(settings)
        for row in rows:
            row.control = states.get(row.projection, ControlState()).as_dict()
        return rows
    finally:
        consumer.close()


def render(rows: list[ProjectionStatus]) -> list[str]:
    rate = f"ev/s {RATE_WINDOW_S:.0f}s"  # events/s over the last minute, not since the workers started
    lines = [
        f"{'projection':<10} {'store':<5} {'gen':>3} {'lag':>7} {'behind':>7} {'events':>8} {rate:>8} "
        f"{'last LSN':>12} {'age':>8} {'DLQ':>5}"
    ]
    for r in rows:
        age = "-" if r.last_applied_age_s is None else f"{r.last_applied_age_s:.0f}s"
        gen = "-" if r.generation is None else str(r.generation)
        lines.append(
            f"{r.projection:<10} {'up' if r.store_up else r.store_state or 'DOWN':<5} {gen:>3} "
            f"{r.lag:>7} {r.behind_s:>6.0f}s {r.events:>8} {r.events_per_s:>8.1f} "
            f"{r.last_lsn:>12} {age:>8} {r.dead_letters:>5}"
        )
        if r.verified is None:
            lines.append("    last clean verify: none (the next verify is a full one)")
        else:
            v = r.verified
            stale = "" if v["generation"] == r.generation else " (another generation: the next verify is full)"
            lines.append(f"    last clean verify: {v['at']}, {v['ageS']:.0f}s ago, generation {v['generation']}{stale}")
        if r.control["state"] == "paused":
            lines.append(f"    paused by {r.control['by']} at {r.control['at']} (`projectors resume {r.projection}`)")
        for p in r.partitions:
            committed_text = "-" if p.committed is None else str(p.committed)
            lines.append(f"    {p.topic}[{p.partition}] committed {committed_text:>6} end {p.end:>6} lag {p.lag:>6}")
    return lines
