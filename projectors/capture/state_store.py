"""Capture's state in the broker: Debezium's offsets file and the acknowledged position, one record
per capture (key ``<topic prefix>/<slot name>``) on a compacted topic of one partition.

The state directory stays Debezium's working copy (its ``FileOffsetBackingStore``); the broker
holds the copy that survives the machine. Contracts:

- the position is published (one record, flushed, acknowledged) after every acknowledged batch
  and *before* Debezium may mark the batch's records, so before it can commit offsets or confirm
  a position to the slot: the broker's position is never behind the slot's ``confirmed_flush_lsn``
  and the recreated-slot check keeps working on a restored state;
- the offsets travel with it as the last complete file Debezium wrote: they may be older than the
  position, and an older offset only makes capture publish again what it already published
  (at-least-once, absorbed by the version guard);
- at start the newer of the local state and the broker's (by position) wins and both sides are
  made equal: an empty state directory is restored, a state directory without a broker record
  (a stack from before this store) is published;
- the topic is read from its beginning up to a marker record this process produced, never up to
  the high watermark (the local broker reports it short after batched produce): every state
  acknowledged before the marker is before it in the partition.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from projectors.capture.debezium_offsets import UnreadableOffsets, parse_offsets
from projectors.capture.preflight import CapturePosition, admin_client, format_lsn, require_broker
from projectors.errors import ConfigurationError, RetriableError
from projectors.settings import Settings

log = logging.getLogger(__name__)

PARTITION = 0  # every record of the state topic, markers included, goes to one partition
OFFSETS_FILE = "offsets.dat"


@dataclass(frozen=True)
class CaptureState:
    """A position capture had published and the broker acknowledged, with Debezium's offsets file
    (its bytes, ``b""`` when Debezium had committed none yet)."""

    position: CapturePosition | None
    offsets: bytes = b""
    written_at: float | None = field(default=None, compare=False)  # when published (epoch seconds)

    @property
    def lsn(self) -> int:
        return self.position.lsn if self.position else -1

    def encode(self) -> bytes:
        pos = self.position
        return json.dumps(
            {
                "slot": pos.slot if pos else None,
                "lsn": pos.lsn if pos else None,
                "lsn_text": format_lsn(pos.lsn) if pos else None,
                "streaming": pos.streaming if pos else False,
                "offsets": base64.b64encode(self.offsets).decode(),
                "written_at": time.time(),
            }
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> CaptureState:
        data = json.loads(raw)
        position = None
        if data.get("slot") is not None and data.get("lsn") is not None:
            position = CapturePosition(str(data["slot"]), int(data["lsn"]), bool(data.get("streaming")))
        written = data.get("written_at")
        return cls(position, base64.b64decode(data.get("offsets") or ""), None if written is None else float(written))


def complete_offsets(data: bytes) -> bool:
    """Whether ``data`` is a whole offsets file (Debezium rewrites it in place: a read can catch it
    half written): it parses, and ends with the stream's end-of-block byte."""
    if not data or not data.endswith(b"\x78"):
        return False
    try:
        parse_offsets(data)
    except UnreadableOffsets:
        return False
    return True


def local_state(state_dir: Path) -> CaptureState | None:
    """The state in ``state_dir``; None when it holds neither a position nor offsets."""
    position = CapturePosition.load(state_dir)
    try:
        offsets = (state_dir / OFFSETS_FILE).read_bytes()
    except FileNotFoundError:
        offsets = b""
    if not complete_offsets(offsets):
        offsets = b""
    if position is None and not offsets:
        return None
    return CaptureState(position, offsets)


def write_local(state_dir: Path, state: CaptureState) -> None:
    """Make ``state_dir`` hold ``state`` (offsets replaced only when the state carries some)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    if state.offsets:
        target = state_dir / OFFSETS_FILE
        tmp = target.with_suffix(".restoring")
        tmp.write_bytes(state.offsets)
        os.replace(tmp, target)
    if state.position is not None:
        state.position.save(state_dir)


def state_key(settings: Settings) -> str:
    return f"{settings.capture.topic_prefix}/{settings.capture.slot_name}"


class BrokerState:
    """Capture's record on the state topic: publish (flushed, acknowledged), read back, forget."""

    def __init__(self, settings: Settings, timeout_s: float = 30.0) -> None:
        self.settings = settings
        self.topic = settings.capture.state_topic
        self.key = state_key(settings).encode()
        self.timeout_s = timeout_s
        self._producer: Producer | None = None
        self._errors: list[str] = []
        self._lock = threading.Lock()

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                {
                    **self.settings.kafka.client_config(),
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 0,  # one record per request: the state is flushed on its own
                    "message.timeout.ms": int(self.timeout_s * 1000),
                }
            )
        return self._producer

    def ensure_topic(self) -> None:
        """Create the compacted topic of one partition when missing."""
        existing = require_broker(self.settings)
        if self.topic in existing:
            return
        topic = NewTopic(
            self.topic,
            num_partitions=1,
            replication_factor=self.settings.kafka.replication_factor,
            config={"cleanup.policy": "compact"},
        )
        admin = admin_client(self.settings)  # kept until the futures resolve
        for name, future in admin.create_topics([topic], operation_timeout=10).items():
            try:
                future.result(10)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise ConfigurationError(
                        f"cannot create capture's state topic {name} (PROJECTORS_CAPTURE_STATE_TOPIC): {exc}"
                    ) from exc

    def _delivered(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._errors.append(err.str())

    def _send(self, key: bytes, value: bytes | None) -> None:
        with self._lock:
            self._errors.clear()
            self.producer.produce(self.topic, value=value, key=key, partition=PARTITION, on_delivery=self._delivered)
            remaining = self.producer.flush(self.timeout_s)
            if remaining or self._errors:
                detail = "; ".join(self._errors[:3]) or "not acknowledged in time"
                raise RetriableError(f"capture's state was not stored on topic {self.topic}: {detail}")

    def publish(self, state: CaptureState) -> None:
        self._send(self.key, state.encode())

    def forget(self) -> None:
        """A tombstone: the next read finds no state (compaction removes the record later)."""
        self._send(self.key, None)

    def read(self) -> CaptureState | None:
        """The newest state on the topic, read from its beginning to a marker produced now."""
        nonce = uuid.uuid4().hex
        marker = self.key + b"#marker"
        self._send(marker, nonce.encode())
        consumer = Consumer(
            {
                **self.settings.kafka.client_config(),
                "group.id": f"projectors-capture-state-{nonce[:8]}",  # never joined: assignment only
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        latest: bytes | None = None
        try:
            consumer.assign([TopicPartition(self.topic, PARTITION, OFFSET_BEGINNING)])
            deadline = time.monotonic() + self.timeout_s
            while time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                if msg.key() == self.key:
                    latest = msg.value()
                elif msg.key() == marker and msg.value() == nonce.encode():
                    return None if latest is None else CaptureState.decode(latest)
        finally:
            consumer.close()
        raise RetriableError(
            f"capture's state topic {self.topic} was not read back to the marker within {self.timeout_s:.0f}s"
        )

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.timeout_s)


def synchronize(settings: Settings, broker: BrokerState) -> str:
    """Make the state directory and the broker hold the newer of their two states; returns what
    was done (for the log)."""
    state_dir = settings.capture_state_dir
    local = local_state(state_dir)
    remote = broker.read()
    if remote is None and local is None:
        return "no capture state yet, here or on the broker"
    if remote is None or (local is not None and local.lsn >= remote.lsn):
        assert local is not None
        if remote != local:
            broker.publish(local)
            return f"state in {state_dir} (position {describe(local)}) published to topic {broker.topic}"
        return f"state in {state_dir} and on topic {broker.topic} agree"
    write_local(state_dir, remote)
    return f"state restored from topic {broker.topic} (position {describe(remote)}) into {state_dir}"


def describe(state: CaptureState) -> str:
    pos = state.position
    if pos is None:
        return "none, offsets only"
    return f"{format_lsn(pos.lsn)}{', streaming' if pos.streaming else ''}"


class StateMirror:
    """What the running capture keeps on the broker: its latest acknowledged position with the
    last complete offsets file Debezium wrote. Thread-safe (the engine's batch thread publishes
    positions, capture's main loop publishes newer offsets)."""

    def __init__(self, broker: BrokerState, state_dir: Path, position: CapturePosition | None) -> None:
        self.broker = broker
        self.state_dir = state_dir
        self.position = position
        self.offsets = b""
        self._lock = threading.Lock()
        self._read_offsets()

    def _read_offsets(self) -> bool:
        try:
            data = (self.state_dir / OFFSETS_FILE).read_bytes()
        except FileNotFoundError:
            return False
        if data != self.offsets and complete_offsets(data):
            self.offsets = data
            return True
        return False

    def acknowledged(self, position: CapturePosition) -> None:
        """Publish ``position`` (raises :class:`RetriableError` when the broker does not take it)."""
        with self._lock:
            self.position = position
            self._read_offsets()
            self.broker.publish(CaptureState(position, self.offsets))

    def offsets_committed(self) -> None:
        """Publish Debezium's offsets if they changed since the last record."""
        with self._lock:
            if self.position is not None and self._read_offsets():
                self.broker.publish(CaptureState(self.position, self.offsets))
