"""The control plane: pause and resume a projection's workers through the broker.

One compacted topic, ``<topic prefix>.projectors-control`` (one partition), holds one record per
projection: key = the projection's name, value = ``{"state": "paused" | "running", "by": ..., "at":
..., "request": ...}``. Operators write it (``operations/pause.py``); every worker of the projection
follows it (``runtime/supervisor.py``), wherever it runs: the same command works on the local
stack, in compose and in Kubernetes, with no pid file and no orchestrator API.

The topic is read from its beginning, never up to the broker's high watermark (the local broker
reports it short after batched produce): a reader first writes a marker record of its own and reads
until it sees that marker, so every record written before it has been read.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from projectors.errors import ConfigurationError, RetriableError
from projectors.settings import Settings

log = logging.getLogger(__name__)
PAUSED, RUNNING = "paused", "running"
MARKER_KEY = b"\x00marker"  # one key for every marker: compaction keeps only the newest
ACK_PREFIX = "\x00ack:"  # + a worker's client id: the last pause request that worker has obeyed


GONE = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}


def control_topic(settings: Settings) -> str:
    return f"{settings.capture.topic_prefix}.projectors-control"


@dataclass(frozen=True)
class ControlState:
    """The last command for one projection (``running`` when there was none)."""

    state: str = RUNNING
    by: str = ""
    at: str = ""
    request: str = ""

    @property
    def paused(self) -> bool:
        return self.state == PAUSED

    def as_dict(self) -> dict[str, str]:
        return {"state": self.state, "by": self.by, "at": self.at, "request": self.request}


def who() -> str:
    with contextlib.suppress(Exception):
        return f"{getpass.getuser()}@{socket.gethostname()}"
    return socket.gethostname()


def ensure_control_topic(settings: Settings, timeout: float = 10.0) -> str:
    """Create the control topic (compacted, one partition) when it is missing."""
    topic = control_topic(settings)
    admin = AdminClient({**settings.kafka.client_config(), "log_level": 5})
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise RetriableError(f"the broker at {settings.kafka.bootstrap_servers} did not answer ({exc})") from exc
    if topic in existing:
        return topic
    new = NewTopic(topic, num_partitions=1, replication_factor=settings.kafka.replication_factor,
                   config={"cleanup.policy": "compact"})
    for name, future in admin.create_topics([new], operation_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise ConfigurationError(f"cannot create the control topic {name}: {exc}") from exc
    return topic


def _produce(settings: Settings, key: bytes, value: dict[str, Any]) -> None:
    """One record, alone in its batch (flushed at once)."""
    producer = Producer({**settings.kafka.client_config(), "enable.idempotence": True, "linger.ms": 0})
    errors: list[str] = []

    def delivered(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    producer.produce(control_topic(settings), key=key, value=json.dumps(value).encode(), on_delivery=delivered)
    left = producer.flush(30)
    if left or errors:
        raise RetriableError(f"the control topic {control_topic(settings)} refused a record: {errors or 'timeout'}")


def acknowledge(settings: Settings, client_id: str, state: ControlState) -> None:
    """Say that the worker ``client_id`` obeyed the pause ``state``: its consumer is closed. On a
    broker whose group description keeps members that left (Tansu), this is what tells the
    operator's wait that such a member is gone."""
    _produce(settings, f"{ACK_PREFIX}{client_id}".encode(), {"request": state.request, "state": state.state})


def publish(settings: Settings, projection: str, state: str, by: str | None = None) -> ControlState:
    """Write ``state`` for ``projection``; returns the record written."""
    ensure_control_topic(settings)
    record = ControlState(state, by or who(), datetime.now(UTC).isoformat(timespec="seconds"), uuid.uuid4().hex)
    _produce(settings, projection.encode(), record.as_dict())
    return record


class ControlReader:
    """Follows the control topic from its beginning (an assignment, no consumer group)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        topic = ensure_control_topic(settings)
        self.consumer = Consumer({
            **settings.kafka.client_config(),
            "group.id": "projectors-control-reader",  # never joined nor committed: assignment only
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # a control topic created again (a broker that lost it) starts below this reader's
            # position: read it from its beginning, never from its end
            "auto.offset.reset": "earliest",
        })
        self.topic = topic
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self.states: dict[str, ControlState] = {}
        self.acks: dict[str, str] = {}  # client id -> the last pause request it obeyed

    def poll(self, timeout_s: float) -> list[str]:
        """Read what arrived within ``timeout_s``; the projections whose state it changed, and the
        markers seen (``marker:<id>``)."""
        seen: list[str] = []
        for msg in self.consumer.consume(100, timeout=timeout_s):
            error = msg.error()
            if error is not None:
                if error.code() in GONE:  # the topic is gone (the broker lost it): from its beginning again
                    self.consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
                continue
            key, value = msg.key() or b"", msg.value()
            try:
                data = json.loads(value) if value else {}
            except ValueError:
                log.warning("control topic: a record that is not JSON at offset %s, ignored", msg.offset())
                continue
            if key == MARKER_KEY:
                seen.append(f"marker:{data.get('marker', '')}")
            elif key.startswith(ACK_PREFIX.encode()):
                self.acks[key.decode(errors="replace").removeprefix(ACK_PREFIX)] = str(data.get("request", ""))
                seen.append("ack")
            elif data.get("state") in (PAUSED, RUNNING):
                name = key.decode(errors="replace")
                self.states[name] = ControlState(str(data["state"]), str(data.get("by", "")),
                                                 str(data.get("at", "")), str(data.get("request", "")))
                seen.append(name)
        return seen

    def rewind_if_recreated(self) -> bool:
        """Read the topic from its beginning again when it ends below this reader's position: the
        broker lost it and it was created again (a broker that answers a fetch past the end with
        nothing, instead of an out-of-range error, would otherwise keep this reader waiting there)."""
        tp = TopicPartition(self.topic, 0)
        _low, high = self.consumer.get_watermark_offsets(tp, timeout=5)
        (position,) = self.consumer.position([tp])
        if position.offset > high >= 0:
            log.warning("control topic %s ends at %s, below this reader's position %s: reading it again",
                        self.topic, high, position.offset)
            self.consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
            return True
        return False

    def catch_up(self, timeout_s: float = 30.0) -> dict[str, ControlState]:
        """Everything written before now: write a marker, read until it comes back."""
        marker = uuid.uuid4().hex
        _produce(self.settings, MARKER_KEY, {"marker": marker})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if f"marker:{marker}" in self.poll(0.5):
                return dict(self.states)
        raise RetriableError(f"the control topic {control_topic(self.settings)} was not read within {timeout_s:.0f}s")

    def close(self) -> None:
        self.consumer.close()


def read_states(settings: Settings, timeout_s: float = 30.0) -> dict[str, ControlState]:
    """Every projection's last command, read to the end of the control topic."""
    reader = ControlReader(settings)
    try:
        return reader.catch_up(timeout_s)
    finally:
        reader.close()


class ControlWatcher:
    """A thread following one projection's state: ``on_change(state)`` on every command after the
    first read, which :meth:`start` waits for."""

    def __init__(self, settings: Settings, projection: str, on_change: Callable[[ControlState], None]) -> None:
        self.settings, self.projection, self.on_change = settings, projection, on_change
        self.reader = ControlReader(settings)
        self.state = ControlState()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="control", daemon=True)

    def start(self, timeout_s: float = 30.0) -> ControlState:
        self.state = self.reader.catch_up(timeout_s).get(self.projection, ControlState())
        self._thread.start()
        return self.state

    def _run(self) -> None:
        checked = time.monotonic()
        while not self._stop.is_set():
            try:
                if time.monotonic() - checked > 5.0:
                    checked = time.monotonic()
                    self.reader.rewind_if_recreated()
                changed = self.reader.poll(0.5)
            except Exception:  # the broker away for a while: keep the last state, try again
                log.warning("control topic: read failed", exc_info=True)
                time.sleep(1.0)
                continue
            if self.projection in changed:
                self.state = self.reader.states[self.projection]
                self.on_change(self.state)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.reader.close()
