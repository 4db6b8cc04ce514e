"""`projectors replay <projection> --from earliest | <ISO time> | <topic:partition:offset,...>`.

Moves the projection's consumer group back and lets its workers reprocess, showing progress. The
workers must not be in the group while the offsets move (their commits would overwrite the reset):
replay refuses while the group has members, and ``--force`` pauses them through the control topic
(``operations/pause.py``: wherever they run), waits until the group is empty, resets, and resumes
them. Replaying is always safe: the stores keep the newest read.
"""

from __future__ import annotations

import time
from datetime import datetime

from confluent_kafka import TopicPartition

from projectors.errors import ConfigurationError
from projectors.operations import offsets
from projectors.operations.pause import DEFAULT_PAUSE_TIMEOUT_S, members, paused
from projectors.operations.report import Progress, Reporter, Silent
from projectors.projections import descriptor
from projectors.settings import Settings


def targets(settings: Settings, projection: str, start: str) -> list[TopicPartition]:
    topics = descriptor(projection).topics(settings)
    if start == "earliest":
        return offsets.earliest(settings, topics)
    if ":" in start and not start[:4].isdigit():
        out = []
        for item in start.split(","):
            try:
                topic, partition, offset = item.rsplit(":", 2)
                out.append(TopicPartition(topic, int(partition), int(offset)))
            except ValueError:
                raise ConfigurationError(f"--from: {item!r} is not topic:partition:offset") from None
            if topic not in topics:
                raise ConfigurationError(f"--from: {topic} is not a topic of {projection} ({', '.join(topics)})")
        return out
    try:
        moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(
            f"--from {start!r}: use earliest, an ISO time (2026-11-22T10:00:00Z) or topic:partition:offset,..."
        ) from None
    if moment.tzinfo is None:
        raise ConfigurationError(f"--from {start!r}: give a time zone (Z or +hh:mm)")
    return offsets.at_time(settings, topics, int(moment.timestamp() * 1000))


def replay(
    settings: Settings,
    projection: str,
    start: str,
    force: bool = False,
    wait_s: float = 600.0,
    report: Reporter | None = None,
    pause_timeout_s: float = DEFAULT_PAUSE_TIMEOUT_S,
) -> Progress:
    group = descriptor(projection).group
    out = (report or Silent()).say
    present = members(settings, group)
    if present and not force:
        raise ConfigurationError(
            f"{len(present)} worker(s) of {projection} are in its consumer group ({'; '.join(present)}): "
            "stop them first, or use --force to pause them through the control topic, reset and resume them"
        )
    chosen = targets(settings, projection, start)
    with paused(settings, projection, pause_timeout_s, out, "replay") as before:
        offsets.commit(settings, group, chosen)
        out(f"group {group} reset: " + ", ".join(f"{t.topic}[{t.partition}]@{t.offset}" for t in chosen))
    if before.paused:
        out(f"{projection} stays paused: `projectors resume {projection}` to reprocess")
    elif not present:
        out(f"start the workers of {projection} (`projectors worker {projection}`) to reprocess")
    return follow(settings, projection, chosen, wait_s if present and not before.paused else 0.0, report or Silent())


def follow(
    settings: Settings, projection: str, start: list[TopicPartition], wait_s: float, report: Reporter
) -> Progress:
    """The group's progress from ``start`` to the end offsets taken now, until done or ``wait_s``."""
    group = descriptor(projection).group
    begin = {(t.topic, t.partition): t.offset for t in start}
    end = offsets.ends(settings, descriptor(projection).topics(settings))
    total = sum(max(0, end[k] - begin.get(k, end[k])) for k in end)
    started = time.monotonic()
    deadline = started + wait_s
    while True:
        now = offsets.committed(settings, group)
        done = sum(max(0, min(now.get(k, begin.get(k, 0)), end[k]) - begin.get(k, end[k])) for k in end)
        elapsed = max(0.001, time.monotonic() - started)
        progress = Progress(done, total, done / elapsed)
        final = done >= total or time.monotonic() >= deadline
        report.progress(progress, final)
        if final:
            return progress
        time.sleep(1.0)
