"""Consumer-group offsets, through the Kafka protocol: where each projection is, and resetting it.

A reset commits the new offsets for the group without joining it (a "simple" commit), then reads them
back: the local broker (Tansu) acknowledged AdminClient.alter_consumer_group_offsets for a group that
had members without applying it, so the read-back is what proves a reset happened.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from projectors.errors import RetriableError
from projectors.settings import Settings


def _admin(settings: Settings) -> AdminClient:
    config = settings.kafka.client_config()
    config["log_level"] = 5  # not librdkafka's info line on every close ("Purging ... background queue")
    return AdminClient(config)


def _consumer(settings: Settings, group: str) -> Consumer:
    return Consumer(
        {**settings.kafka.client_config(), "group.id": group, "enable.auto.commit": False, "session.timeout.ms": 6000}
    )


def partitions(settings: Settings, topics: Iterable[str]) -> list[TopicPartition]:
    admin = _admin(settings)
    meta = admin.list_topics(timeout=15)
    out = []
    for topic in topics:
        if topic in meta.topics:
            out += [TopicPartition(topic, p) for p in sorted(meta.topics[topic].partitions)]
    return out


def committed(settings: Settings, group: str) -> dict[tuple[str, int], int]:
    admin = _admin(settings)
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(30)
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or []}


def earliest(settings: Settings, topics: Iterable[str]) -> list[TopicPartition]:
    consumer = _consumer(settings, "projectors-offsets")
    try:
        out = []
        for tp in partitions(settings, topics):
            low, _high = consumer.get_watermark_offsets(tp, timeout=15)
            out.append(TopicPartition(tp.topic, tp.partition, low))
        return out
    finally:
        consumer.close()


def ends(settings: Settings, topics: Iterable[str], idle_s: float = 1.0) -> dict[tuple[str, int], int]:
    """Each partition's end: the offset after its last record, now.

    The broker's high watermark is read, then the records from just before it: the local broker
    (Tansu) reports the base offset of the last record *batch* + 1, so the rest of that
    batch lies past its watermark. On Apache Kafka this reads one record per partition and changes
    nothing. Costs ``idle_s`` once, not per partition (at most ``5 * idle_s`` while writes go on)."""
    consumer = _consumer(settings, "projectors-offsets")
    try:
        out = {}
        for tp in partitions(settings, topics):
            _low, high = consumer.get_watermark_offsets(tp, timeout=15)
            out[(tp.topic, tp.partition)] = high
        tail = [TopicPartition(t, p, high - 1) for (t, p), high in out.items() if high > 0]
        if tail:
            consumer.assign(tail)
            started = time.monotonic()
            last_news: float | None = None  # the record before each watermark always comes first
            while time.monotonic() - started < 5 * idle_s and (
                last_news is None or time.monotonic() - last_news < idle_s
            ):
                for msg in consumer.consume(1000, timeout=0.2):
                    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                    if msg.error() is None and topic is not None and partition is not None and offset is not None:
                        out[(topic, partition)] = max(out[(topic, partition)], offset + 1)
                        last_news = time.monotonic()
        return out
    finally:
        consumer.close()


def at_time(settings: Settings, topics: Iterable[str], timestamp_ms: int) -> list[TopicPartition]:
    """The first offset at or after ``timestamp_ms`` in each partition (its end when there is none)."""
    consumer = _consumer(settings, "projectors-offsets")
    try:
        wanted = [TopicPartition(tp.topic, tp.partition, timestamp_ms) for tp in partitions(settings, topics)]
        found = consumer.offsets_for_times(wanted, timeout=15)
        out = []
        for tp in found:
            offset = tp.offset
            if offset < 0:
                _low, offset = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=15)
            out.append(TopicPartition(tp.topic, tp.partition, offset))
        return out
    finally:
        consumer.close()


def reset_to_earliest(
    settings: Settings, group: str, topics: Iterable[str], timeout_s: float = 90.0
) -> dict[tuple[str, int], int]:
    """Commit each partition's earliest offset for ``group`` (its workers must be stopped)."""
    return commit(settings, group, earliest(settings, topics), timeout_s)


def commit(
    settings: Settings, group: str, targets: list[TopicPartition], timeout_s: float = 90.0
) -> dict[tuple[str, int], int]:
    """Commit ``targets`` for ``group`` (its workers must be stopped), and check they were applied.

    A group whose last member has just left can still count it as a member for a session timeout:
    the commit is then refused (unknown member, rebalance in progress), so the group is deleted
    (it holds nothing but these offsets) and the commit retried."""
    deadline = time.monotonic() + timeout_s
    consumer = _consumer(settings, group)
    try:
        while targets:
            try:
                consumer.commit(offsets=targets, asynchronous=False)
                break
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise RetriableError(f"cannot reset the offsets of group {group}: {exc}") from exc
                admin = _admin(settings)
                for future in admin.delete_consumer_groups([group], request_timeout=15).values():
                    with contextlib.suppress(KafkaException):  # not empty yet: retry
                        future.result()
                time.sleep(2.0)
    finally:
        consumer.close()
    wanted = {(tp.topic, tp.partition): tp.offset for tp in targets}
    now = committed(settings, group)
    wrong = {k: (v, now.get(k)) for k, v in wanted.items() if now.get(k) != v}
    if wrong:
        raise RetriableError(f"offsets of group {group} not reset (wanted, found): {wrong}")
    return wanted
