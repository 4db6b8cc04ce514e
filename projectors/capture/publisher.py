"""Publishing Debezium's records to Kafka as Kafka Connect does: the producer, and an oversize
change shrunk to fit (its long column values replaced by Debezium's placeholder)."""

from __future__ import annotations

import json
import logging
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from projectors.capture.commit_points import is_streamed, source_offset_lsn
from projectors.capture.preflight import CapturePosition
from projectors.capture.state_store import StateMirror
from projectors.errors import RetriableError
from projectors.events.models import UNAVAILABLE
from projectors.settings import Settings

log = logging.getLogger(__name__)


def kafka_connect_producer(settings: Settings) -> Producer:
    """A producer that partitions and acknowledges like Kafka Connect's (murmur2 on the key bytes,
    acks=all, idempotent, so retries never duplicate or reorder within a partition)."""
    return Producer(
        {
            **settings.kafka.client_config(),
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 0,  # each Debezium batch is flushed at once anyway
            "compression.type": "none",
            "message.timeout.ms": 30_000,
            "message.max.bytes": settings.capture.max_message_bytes,
        }
    )


LONG_VALUE = 4096  # a column value longer than this (as JSON) is dropped from an oversize event
SHRUNK = "projectorsShrunk"


def shrunk(value: bytes, limit: int) -> bytes:
    """An envelope that fits in ``limit`` bytes: each long column value of ``before``/``after``
    replaced by Debezium's unavailable-value placeholder (a list by a list holding it), marked
    ``projectorsShrunk``. Keys, ids, the op and the source (LSN) stay: what an event is for here is
    saying which row changed; its data is read from PostgreSQL."""
    envelope = json.loads(value)
    for side in ("before", "after"):
        row = envelope.get(side)
        if not isinstance(row, dict):
            continue
        for column, v in list(row.items()):
            if len(json.dumps(v)) > LONG_VALUE:
                row[column] = [UNAVAILABLE] if isinstance(v, list) else UNAVAILABLE
    envelope[SHRUNK] = len(value)
    out = json.dumps(envelope).encode()
    if len(out) > limit:  # many long columns? keep only the short ones
        for side in ("before", "after"):
            row = envelope.get(side)
            if isinstance(row, dict):
                envelope[side] = {c: v for c, v in row.items() if len(json.dumps(v)) <= 64}
        out = json.dumps(envelope).encode()
    return out


class KafkaPublisher:
    """The Debezium change handler: publish a batch, wait for the broker, record the position."""

    def __init__(
        self,
        settings: Settings,
        producer: Producer,
        flush_timeout_s: float = 30.0,
        mirror: StateMirror | None = None,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.mirror = mirror  # the broker's copy of the position, published before marking
        self.flush_timeout_s = flush_timeout_s
        self.published = 0
        position = CapturePosition.load(settings.capture_state_dir)
        self.lsn = position.lsn if position else 0
        self.streaming = position.streaming if position else False
        self._errors: list[str] = []

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err.str()}")

    def handleJsonBatch(self, records: list[Any]) -> None:
        self._errors.clear()
        batch_lsn = self.lsn
        streaming = self.streaming
        for record in records:
            key = record.key()
            value = record.value()
            self._produce(
                str(record.destination()),
                None if key is None else str(key).encode(),
                None if value is None else str(value).encode(),
            )
            batch_lsn = max(batch_lsn, source_offset_lsn(record))
            streaming = streaming or is_streamed(record)
        remaining = self.producer.flush(self.flush_timeout_s)
        if remaining or self._errors:
            detail = "; ".join(self._errors[:3]) or f"{remaining} records not acknowledged"
            raise RetriableError(f"the broker did not acknowledge the batch ({detail}); offsets not committed")
        self.published += len(records)
        if batch_lsn > self.lsn or streaming != self.streaming:
            self.lsn, self.streaming = max(batch_lsn, self.lsn), streaming
            position = CapturePosition(self.settings.capture.slot_name, self.lsn, streaming)
            position.save(self.settings.capture_state_dir)
            if self.mirror is not None:
                self.mirror.acknowledged(position)

    def _produce(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        room = self.settings.capture.max_message_bytes - len(key or b"") - 512  # record overhead
        if value is not None and len(value) > room:
            log.warning("%s: a change of %d bytes is larger than PROJECTORS_CAPTURE_MAX_MESSAGE_BYTES: "
                        "published without its long column values", topic, len(value))
            value = shrunk(value, room)
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, on_delivery=self._delivered)
                return
            except BufferError:
                self.producer.poll(0.1)
