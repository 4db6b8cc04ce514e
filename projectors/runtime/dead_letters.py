"""The dead-letter topic: events that cannot be projected, with their reason and origin.

One topic per projection, ``<PROJECTORS_WORKER_DEAD_LETTER_PREFIX>.<projection>``. A record's key is
the original key; its value is JSON: ``reason``, ``projection``, ``origin`` (topic, partition,
offset), the original ``key`` and ``value`` as text (a value over 64 KiB is left out: ``valueTruncated``
is true and the value is read from its origin offset when redriven), ``valueBytes``, ``valueSha256``
and ``failedAt``. Records are flushed before
the batch that produced them is committed, so a dead letter is never lost.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, NamedTuple

from confluent_kafka import KafkaException, Message, Producer

from projectors.errors import DeadLetterFailed, RetriableError
from projectors.settings import Settings


def dead_letter_topic(settings: Settings, projection: str) -> str:
    return f"{settings.worker.dead_letter_prefix}.{projection}"


class RawRecord(NamedTuple):
    """One consumed Kafka record, as it came (bytes), with where it came from. A named tuple: a
    worker makes one per event, and a batch crosses to its projector process as plain tuples."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_s: float | None = None  # when the record was published (the broker's timestamp)


# A letter stays far below the broker's message limit (1 MB by default) whatever the event's size:
# a longer value is left out (``valueTruncated``) and read from its origin offset when redriven.
VALUE_LIMIT = 64 * 1024
KEY_LIMIT = 4 * 1024
REASON_LIMIT = 4 * 1024


def dead_letter_value(projection: str, record: RawRecord, reason: str) -> dict[str, Any]:
    value = record.value
    kept = value is not None and len(value) <= VALUE_LIMIT
    return {
        "reason": reason[:REASON_LIMIT],
        "projection": projection,
        "origin": {"topic": record.topic, "partition": record.partition, "offset": record.offset},
        "key": None if record.key is None else record.key[:KEY_LIMIT].decode("utf-8", "replace"),
        "value": value.decode("utf-8", "replace") if kept and value is not None else None,
        "valueBytes": None if value is None else len(value),
        "valueSha256": None if value is None else hashlib.sha256(value).hexdigest(),
        "valueTruncated": value is not None and not kept,
        "failedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }


class DeadLetterWriter:
    """Sends dead letters; :meth:`flush` returns once the broker has every one of them.

    A letter whose delivery failed (the broker was gone longer than ``delivery_timeout_ms``) is
    produced again by the failing flush, so the caller's retry of ``flush`` delivers it: the batch
    that dead-lettered it is acknowledged only after that."""

    def __init__(self, settings: Settings, projection: str, delivery_timeout_ms: int = 300_000) -> None:
        self.projection = projection
        self.topic = dead_letter_topic(settings, projection)
        self.producer = Producer(
            {
                **settings.kafka.client_config(),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": delivery_timeout_ms,
            }
        )
        self.sent = 0
        self.flush_timeout_s = 30.0
        self.redrive_of: str | None = None  # set by `projectors dlq redrive`: recorded in new letters
        self.note: dict[str, Any] = {}  # more fields for every letter (a rebuild names its generation)
        # origins (topic, partition, offset) already dead-lettered: not written again (a rebuild's
        # catch-up replays events a worker dead-lettered), counted in ``skipped``
        self.known: set[tuple[str, int, int]] = set()
        self.skipped = 0
        self._errors: list[str] = []
        self._undelivered: list[Message] = []

    def send(self, record: RawRecord, reason: str) -> None:
        if (record.topic, record.partition, record.offset) in self.known:
            self.skipped += 1
            return
        value = dead_letter_value(self.projection, record, reason)
        if self.redrive_of:
            value["redriveOf"] = self.redrive_of
        value.update(self.note)
        payload = json.dumps(value).encode()
        origin = f"{record.topic}:{record.partition}:{record.offset}"
        headers: dict[str, str | bytes | None] = {"reason": reason[:500], "origin": origin}
        key = None if record.key is None else record.key[:KEY_LIMIT]
        for _ in range(100):
            try:
                self.producer.produce(self.topic, key=key, value=payload, headers=headers, on_delivery=self._delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain it, then produce
                self.producer.poll(0.1)
            except KafkaException as exc:  # refused before sending (e.g. the letter is too large)
                raise DeadLetterFailed(f"dead letter for {origin} refused by the producer: {exc}") from exc
        else:
            raise DeadLetterFailed(f"dead letter for {origin}: the producer queue stayed full")
        self.sent += 1

    def _delivered(self, err: Any, msg: Message) -> None:
        if err is not None:
            self._errors.append(str(err))
            self._undelivered.append(msg)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until the broker has every dead letter; raise (retriable) if it has not. Letters
        that failed are produced again first, for the next flush."""
        remaining = self.producer.flush(self.flush_timeout_s if timeout_s is None else timeout_s)
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            failed, self._undelivered = self._undelivered, []
            for msg in failed:
                self.producer.produce(
                    msg.topic() or self.topic,
                    key=msg.key(),
                    value=msg.value(),
                    headers=msg.headers(),
                    on_delivery=self._delivered,
                )
            raise RetriableError(
                f"dead letters not acknowledged: {remaining} pending, {len(failed)} failed {errors[:3]}"
            )
