"""The checkpoint of a projection's last clean verify, kept in Kafka: no storage of its own.

After a clean verify, the end offsets of the projection's topics taken at the *start* of that verify
(before the store or the spec was read) are written, with the time the verify started, the store
generation and the kind of store it checked, as one record keyed by the projection to the topic
``projectors.verified`` (one partition, compacted where the broker compacts: the last record of
each projection is its checkpoint). Commit metadata on a consumer group would say the same, but the
local broker (Tansu) drops it. The next verify reads the events from those offsets to
the ends it takes at its own start, names what they touched (``Projection.touched``), expands that
to item keys as a worker does (``Projection.targets``, in one source snapshot) and compares only
those keys (spec by ``spec_for``, store by point reads).

A checkpoint is not used (the verify runs in full) when there is none, when the live store
generation or the kind of store differ from the checkpoint's (a rebuild swapped in a new store),
or when events since the checkpoint are gone from a topic (retention) or a topic was recreated.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from projectors.capture.preflight import admin_client
from projectors.errors import PoisonEventError, RetriableError
from projectors.events.decode import decode
from projectors.events.models import ChangeEvent
from projectors.operations import offsets
from projectors.projections import descriptor
from projectors.projections.base import Projection
from projectors.settings import Settings

log = logging.getLogger(__name__)

Position = tuple[str, int]
READ_IDLE_S = 10.0  # no record for this long, with partitions still short of their end: offset gaps
CHECKPOINT_TOPIC = "projectors.verified"


def checkpoint_group(projection: str) -> str:
    """The group id an incremental verify's consumer uses (assignment only, never committed)."""
    return f"{descriptor(projection).group}-verified"


@dataclass(frozen=True)
class Checkpoint:
    """Where the last clean verify of a projection started: offsets, time, store generation."""

    projection: str
    positions: dict[Position, int]
    at: float  # unix time the verify started
    generation: int
    store: str  # the kind of store it checked (its class)

    def age_s(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": CHECKPOINT_TOPIC,
            "at": datetime.fromtimestamp(self.at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "ageS": round(self.age_s(), 1),
            "generation": self.generation,
            "store": self.store,
            "offsets": {f"{t}[{p}]": o for (t, p), o in sorted(self.positions.items())},
        }


def read_checkpoint(settings: Settings, projection: str) -> Checkpoint | None:
    """The projection's last recorded checkpoint, or None when there is none."""
    return read_checkpoints(settings).get(projection)


def read_checkpoints(settings: Settings) -> dict[str, Checkpoint]:
    """Every projection's last recorded checkpoint (the last record of its key in the topic)."""
    end = offsets.ends(settings, [CHECKPOINT_TOPIC], idle_s=0.5)
    out: dict[str, Checkpoint] = {}
    for _position, value in _records(settings, "projectors-verified-read", {}, end):
        if value is None:
            continue
        try:
            data = json.loads(value)
            found = Checkpoint(
                str(data["projection"]),
                {(str(t), int(p)): int(o) for t, p, o in data["offsets"]},
                float(data["at"]), int(data["generation"]), str(data["store"]),
            )
        except (ValueError, KeyError, TypeError):
            continue  # not a checkpoint
        out[found.projection] = found
    return out


def record_checkpoint(
    settings: Settings, projection: str, start: Mapping[Position, int], at: float, generation: int, store: str
) -> Checkpoint:
    """Record ``start`` (the ends taken when a clean verify began) as the projection's checkpoint."""
    ensure_topic(settings)
    value = json.dumps(
        {
            "projection": projection,
            "offsets": [[t, p, o] for (t, p), o in sorted(start.items())],
            "at": at, "generation": generation, "store": store,
        },
        separators=(",", ":"),
    )
    producer = Producer({**settings.kafka.client_config(), "acks": "all"})
    failed: list[str] = []
    producer.produce(
        CHECKPOINT_TOPIC, key=projection.encode(), value=value.encode(),
        on_delivery=lambda err, _msg: failed.append(str(err)) if err is not None else None,
    )
    if producer.flush(30) or failed:
        raise RetriableError(f"the checkpoint of {projection} was not written: {failed or 'timed out'}")
    return Checkpoint(projection, dict(start), at, generation, store)


def ensure_topic(settings: Settings) -> None:
    admin = admin_client(settings)
    if CHECKPOINT_TOPIC in admin.list_topics(timeout=15).topics:
        return
    topic = NewTopic(
        CHECKPOINT_TOPIC, num_partitions=1, replication_factor=settings.kafka.replication_factor,
        config={"cleanup.policy": "compact"},
    )
    for future in admin.create_topics([topic], operation_timeout=15).values():
        try:
            future.result(15)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def unusable(
    checkpoint: Checkpoint | None,
    generation: int,
    store: str,
    lows: Mapping[Position, int],
    end: Mapping[Position, int],
) -> str | None:
    """Why ``checkpoint`` cannot stand for a verify of the store (None: it can). ``lows``/``end``:
    each partition's first offset and end now."""
    if checkpoint is None:
        return "no checkpoint of a clean verify"
    if checkpoint.generation != generation:
        return f"the checkpoint is of store generation {checkpoint.generation}, the live one is {generation}"
    if checkpoint.store != store:
        return f"the checkpoint is of a {checkpoint.store}, the store is a {store}"
    for position, stop in sorted(end.items()):
        begin = checkpoint.positions.get(position, 0)  # a partition created since: all of it is new
        if begin < lows.get(position, 0):
            return f"events since the checkpoint are gone from {position[0]}[{position[1]}] (retention)"
        if begin > stop:
            return f"{position[0]}[{position[1]}] ends before the checkpoint (topic recreated)"
    return None


@dataclass
class Touched:
    """What the events between two sets of offsets touched (touch -> newest LSN), as a worker sums it."""

    touches: set[Any] = field(default_factory=set)
    records: int = 0  # records read
    undecodable: int = 0  # records that are not events (the workers dead-letter them)


def _records(
    settings: Settings, group: str, start: Mapping[Position, int], end: Mapping[Position, int]
) -> Iterator[tuple[tuple[str, int, int], bytes | None]]:
    """(topic, partition, offset) and value of each record from ``start`` (default 0) up to
    ``end``, read with an assigned consumer (no group joined, nothing committed)."""
    for position, _key, value in _raw(settings, group, start, end):
        yield position, value


def _raw(
    settings: Settings, group: str, start: Mapping[Position, int], end: Mapping[Position, int]
) -> Iterator[tuple[tuple[str, int, int], bytes | None, bytes | None]]:
    wanted = [TopicPartition(t, p, start.get((t, p), 0)) for (t, p), stop in sorted(end.items())
              if start.get((t, p), 0) < stop]
    if not wanted:
        return
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": group,  # assignment only
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    try:
        consumer.assign(wanted)
        short = {(tp.topic, tp.partition) for tp in wanted}
        last_news = time.monotonic()
        while short:
            messages = consumer.consume(num_messages=1000, timeout=1.0)
            if not messages and time.monotonic() - last_news > READ_IDLE_S:
                log.info("no record up to the end of %s (offset gaps)", sorted(short))
                return
            for m in messages:
                error = m.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RetriableError(f"reading {m.topic()}: {error}")
                    continue
                last_news = time.monotonic()
                topic, partition, offset = str(m.topic()), int(m.partition() or 0), int(m.offset() or 0)
                stop = end[(topic, partition)]
                if offset + 1 >= stop:
                    short.discard((topic, partition))
                if offset < stop:
                    yield (topic, partition, offset), m.key(), m.value()
    finally:
        consumer.close()


def events_between(
    settings: Settings, projection: str, start: Mapping[Position, int], end: Mapping[Position, int]
) -> Iterator[ChangeEvent | None]:
    """The decoded events of each partition from ``start`` (default 0) up to ``end``. None for a
    record that is not one (the workers dead-letter those)."""
    for (topic, partition, offset), key, value in _raw(settings, checkpoint_group(projection), start, end):
        try:
            yield decode(topic, partition, offset, key, value)
        except PoisonEventError:
            yield None


def touched_between(
    settings: Settings, projection: Projection, start: Mapping[Position, int], end: Mapping[Position, int]
) -> Touched:
    """``projection.touched`` of every event from ``start`` up to ``end``."""
    out = Touched()
    for event in events_between(settings, projection.name, start, end):
        out.records += 1
        if event is None:
            out.undecodable += 1
            continue
        for touch in projection.touched(event):
            out.touches.add(touch)
    return out


def lows_and_ends(settings: Settings, projection: str) -> tuple[dict[Position, int], dict[Position, int]]:
    """Each partition's first offset and its end, now."""
    topics = descriptor(projection).topics(settings)
    end = offsets.ends(settings, topics)
    lows = {(tp.topic, tp.partition): tp.offset for tp in offsets.earliest(settings, topics)}
    return lows, end
