"""`projectors dlq list | show <id> | redrive [--all | <id>...]`: the dead letters of each projection.

A dead letter's id is ``<projection>:<partition>:<offset>`` in its dead-letter topic. Redrive runs the
original record (or a corrected value given by the operator) through the projection once, exactly as
a worker would; if it fails again it returns to the dead letters as a new letter, marked with the id
it was redriven from, and is never retried by itself: nothing loops. Redriven ids are remembered
(``<dead-letter topic>.redriven``) so ``--all`` does not redrive a letter twice.

One origin (topic, partition, offset) can be dead-lettered more than once: a redrive that fails
again, a rebuild's catch-up replaying an event a worker already dead-lettered, a worker's batch
delivered again after a crash between flushing its letters and committing. `list`, `show` and
`redrive` treat the letters of one origin and projection as one dead letter: the newest letter's id,
reason and value, the number of times it was dead-lettered (``times``) and every letter id
(``ids``). It is redriven when its newest letter is; redriving it marks every one of its ids.

The topics are read once, all of them with one consumer: from the beginning to the end offsets taken
at the start, and on until a short poll brings nothing more (``capture/topics.py``: :func:`drain`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from confluent_kafka import Producer

from projectors.capture.topics import TopicRecord, read_to_end
from projectors.errors import ConfigurationError
from projectors.projections import DESCRIPTORS
from projectors.projections import projection as get_projection
from projectors.runtime.batch import BatchProjector
from projectors.runtime.dead_letters import DeadLetterWriter, RawRecord, dead_letter_topic
from projectors.runtime.retry import open_store
from projectors.settings import Settings


@dataclass
class DeadLetter:
    id: str  # the newest letter of this origin
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
    times: int = 1  # how many letters this origin has (each time it was dead-lettered)
    ids: list[str] = field(default_factory=list)  # every letter of this origin, oldest first

    def summary(self) -> str:
        o = self.origin
        flag = " (redriven)" if self.redriven else ""
        times = f" (dead-lettered {self.times} times)" if self.times > 1 else ""
        return f"{self.id:<22} {o.get('topic')}:{o.get('partition')}:{o.get('offset')}  {self.reason[:90]}{times}{flag}"


def redriven_topic(settings: Settings, projection: str) -> str:
    return f"{dead_letter_topic(settings, projection)}.redriven"


def origin_key(letter: DeadLetter) -> tuple[Any, ...]:
    """What makes two letters the same dead letter: the projection and the origin record. A letter
    for an operation a store refused has no origin record: its key is the refused item's key."""
    o = letter.origin
    topic, offset = o.get("topic", "(operation)"), o.get("offset", -1)
    if topic == "(operation)" or not isinstance(offset, int) or offset < 0:
        return (letter.projection, "(operation)", letter.key)
    return (letter.projection, topic, o.get("partition"), offset)


def parse(projection: str, record: TopicRecord) -> DeadLetter:
    v = record.value if isinstance(record.value, dict) else {}
    return DeadLetter(
        f"{projection}:{record.partition}:{record.offset}",
        projection,
        str(v.get("reason", "?")),
        dict(v.get("origin", {})),
        v.get("key"),
        v.get("value"),
        str(v.get("failedAt", "")),
        truncated=bool(v.get("valueTruncated", False)),
        value_bytes=v.get("valueBytes"),
        value_sha256=v.get("valueSha256"),
    )


def collapse(found: Iterable[DeadLetter], redriven: set[str]) -> list[DeadLetter]:
    """One dead letter per origin and projection, ordered by the id of its first letter: the newest
    letter's fields, ``times`` and every id (oldest first); redriven when the newest letter's id is
    in ``redriven``."""

    def order(letter: DeadLetter) -> tuple[str, int, int]:
        name, partition, offset = letter.id.rsplit(":", 2)
        return (name, int(partition), int(offset))

    groups: dict[tuple[Any, ...], list[DeadLetter]] = {}
    for letter in sorted(found, key=order):
        groups.setdefault(origin_key(letter), []).append(letter)
    out = []
    for same in groups.values():
        same.sort(key=lambda letter: (letter.failed_at, order(letter)))
        newest, ids = same[-1], [letter.id for letter in same]
        out.append(
            DeadLetter(**{**newest.__dict__, "times": len(same), "ids": ids, "redriven": newest.id in redriven})
        )
    return out


def letters(settings: Settings, projection: str | None = None, timeout_s: float = 30.0) -> list[DeadLetter]:
    """The dead letters of ``projection`` (default: every projection), one per origin."""
    names = [projection] if projection else list(DESCRIPTORS)
    topics = {dead_letter_topic(settings, name): name for name in names}
    marks = {redriven_topic(settings, name) for name in names}
    found: list[DeadLetter] = []
    done: set[str] = set()
    for record in read_to_end(settings, [*topics, *marks], timeout_s=timeout_s):
        if record.topic in marks:
            done.add(str(record.key))
        else:
            found.append(parse(topics[record.topic], record))
    return collapse(found, done)


def dead_lettered(settings: Settings, projection: str) -> set[tuple[str, int, int]]:
    """The origins (topic, partition, offset) ``projection`` has dead letters for."""
    out = set()
    for letter in letters(settings, projection):
        o = letter.origin
        if origin_key(letter)[1] != "(operation)":
            out.add((str(o["topic"]), int(o["partition"]), int(o["offset"])))
    return out


def choose(settings: Settings, letter_ids: list[str]) -> list[DeadLetter]:
    """The dead letters holding ``letter_ids`` (any letter of an origin names it), each once, read
    in one pass."""
    names = []
    for letter_id in letter_ids:
        projection = letter_id.split(":", 1)[0]
        if projection not in DESCRIPTORS:
            raise ConfigurationError(f"dead letter ids look like <projection>:<partition>:<offset>, not {letter_id!r}")
        names.append(projection)
    found = letters(settings, names[0]) if len(set(names)) == 1 else letters(settings)
    by_id = {letter_id: letter for letter in found for letter_id in letter.ids}
    chosen: list[DeadLetter] = []
    for letter_id in letter_ids:
        if letter_id not in by_id:
            raise ConfigurationError(f"no dead letter {letter_id}")
        if by_id[letter_id] not in chosen:
            chosen.append(by_id[letter_id])
    return chosen


def to_redrive(
    settings: Settings, letter_ids: list[str], every: bool, projection: str | None, value: bytes | None
) -> list[DeadLetter]:
    """Which dead letters a redrive takes: every one not redriven yet (``every``, of ``projection``
    or all), or the named ones (two ids of one origin: redriven once). A corrected ``value``
    replaces one letter's event, so it needs exactly one."""
    if every:
        chosen = [x for x in letters(settings, projection) if not x.redriven]
    elif letter_ids:
        chosen = choose(settings, letter_ids)
    else:
        raise ConfigurationError("dlq redrive needs --all or dead letter ids")
    if value is not None and len(chosen) != 1:
        raise ConfigurationError("--value-file corrects one dead letter: give exactly one id")
    return chosen


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
                for letter_id in letter.ids or [letter.id]:  # every letter of this origin
                    marks.produce(redriven_topic(settings, name), key=letter_id.encode(),
                                  value=outcome[letter.id].encode())
        finally:
            projector.close()
            store.close()
    marks.flush(30)
    return outcome


def as_json(letter: DeadLetter) -> str:
    return json.dumps(letter.__dict__, indent=2)
