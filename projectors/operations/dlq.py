"""`projectors dlq list | show <id> | redrive [--all | <id>...]`: the dead letters of each projection.

A dead letter's id is ``<projection>:<partition>:<offset>`` in its dead-letter topic. Redrive runs the
original record (or a corrected value given by the operator) through the projection once, exactly as
a worker would; if it fails again it returns to the dead letters as a new letter, marked with the id
it was redriven from, and is never retried by itself: nothing loops. Redriven ids are remembered
(``<dead-letter topic>.redriven``) so ``--all`` does not redrive a letter twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import Producer

from projectors.capture.topics import read_from_start
from projectors.errors import ConfigurationError
from projectors.projections import PROJECTIONS
from projectors.projections import projection as get_projection
from projectors.runtime.batch import BatchProjector
from projectors.runtime.dead_letters import DeadLetterWriter, RawRecord, dead_letter_topic
from projectors.runtime.stores import open_store
from projectors.settings import Settings


@dataclass
class DeadLetter:
    id: str
    projection: str
    reason: str
    origin: dict[str, Any]
    key: str | None
    value: str | None
    failed_at: str
    redriven: bool = False
    truncated: bool = False  # the value was too large to keep in the letter: read from its origin
    value_bytes: int | None = None
    value_sha256: str | None = None

    def summary(self) -> str:
        o = self.origin
        flag = " (redriven)" if self.redriven else ""
        return f"{self.id:<22} {o.get('topic')}:{o.get('partition')}:{o.get('offset')}  {self.reason[:90]}{flag}"


def redriven_topic(settings: Settings, projection: str) -> str:
    return f"{dead_letter_topic(settings, projection)}.redriven"


def letters(settings: Settings, projection: str | None = None, timeout_s: float = 10.0) -> Iterator[DeadLetter]:
    names = [projection] if projection else list(PROJECTIONS)
    for name in names:
        done = {
            str(r.key) for r in read_from_start(settings, [redriven_topic(settings, name)], idle_s=1.0, timeout_s=3.0)
        }
        for r in read_from_start(settings, [dead_letter_topic(settings, name)], idle_s=1.5, timeout_s=timeout_s):
            v = r.value if isinstance(r.value, dict) else {}
            letter_id = f"{name}:{r.partition}:{r.offset}"
            yield DeadLetter(
                letter_id,
                name,
                str(v.get("reason", "?")),
                dict(v.get("origin", {})),
                v.get("key"),
                v.get("value"),
                str(v.get("failedAt", "")),
                letter_id in done,
                bool(v.get("valueTruncated", False)),
                v.get("valueBytes"),
                v.get("valueSha256"),
            )


def find(settings: Settings, letter_id: str) -> DeadLetter:
    projection = letter_id.split(":", 1)[0]
    if projection not in PROJECTIONS:
        raise ConfigurationError(f"dead letter ids look like <projection>:<partition>:<offset>, not {letter_id!r}")
    for letter in letters(settings, projection):
        if letter.id == letter_id:
            return letter
    raise ConfigurationError(f"no dead letter {letter_id}")


def original_value(settings: Settings, origin: dict[str, Any], timeout_s: float = 30.0) -> bytes | None:
    """The value of the record at the letter's origin (still there until the topic's retention)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**settings.kafka.client_config(), "group.id": "projectors-dlq-reader",
                         "enable.auto.commit": False, "auto.offset.reset": "error"})
    try:
        consumer.assign([TopicPartition(origin["topic"], int(origin["partition"]), int(origin["offset"]))])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            at = msg.offset() or 0
            if at == int(origin["offset"]):
                value: bytes | None = msg.value()
                return value
            if at > int(origin["offset"]):
                break
    finally:
        consumer.close()
    raise ConfigurationError(f"the original of this letter is no longer at {origin['topic']}:{origin['partition']}:"
                             f"{origin['offset']} (past the topic's retention?): redrive it with --value-file")


def redrive(settings: Settings, chosen: list[DeadLetter], value_override: bytes | None = None) -> dict[str, str]:
    """Run each letter through its projection once. Returns id -> "applied" | "dead-lettered again"
    | a reason it cannot be redriven."""
    outcome: dict[str, str] = {}
    marks = Producer({**settings.kafka.client_config(), "enable.idempotence": True})
    by_projection: dict[str, list[DeadLetter]] = {}
    for letter in chosen:
        by_projection.setdefault(letter.projection, []).append(letter)
    for name, group in by_projection.items():
        writer = DeadLetterWriter(settings, name)
        store = open_store(settings, name)
        projector = BatchProjector(
            get_projection(name, settings),
            store,
            lambda: psycopg.connect(settings.pg.conninfo(), autocommit=True),
            writer,
        )
        try:
            for letter in group:
                origin = letter.origin
                if origin.get("topic", "(operation)") == "(operation)" or origin.get("offset", -1) < 0:
                    outcome[letter.id] = "a store refused an operation: run `projectors verify --repair` instead"
                    continue
                if value_override is not None:
                    value: bytes | None = value_override
                elif letter.truncated:
                    value = original_value(settings, origin)
                else:
                    value = (letter.value or "").encode() or None
                record = RawRecord(
                    f"{origin['topic']}", int(origin["partition"]), int(origin["offset"]),
                    letter.key.encode() if letter.key is not None else None, value,
                )
                writer.redrive_of = letter.id
                before = projector.stats.dead_letters
                projector.process([record])
                again = projector.stats.dead_letters > before
                outcome[letter.id] = "dead-lettered again" if again else "applied"
                marks.produce(redriven_topic(settings, name), key=letter.id.encode(), value=outcome[letter.id].encode())
        finally:
            projector.close()
            store.close()
    marks.flush(30)
    return outcome


def as_json(letter: DeadLetter) -> str:
    return json.dumps(letter.__dict__, indent=2)
