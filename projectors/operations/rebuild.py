"""`projectors rebuild <projection>`: a fresh store next to the live one, then an atomic swap.

1. **Build.** A new generation of the store (``stores/generations.py``: ``userFeed-g2``, graph
   ``social-g2``, ``search-g2.sqlite3``, Meilisearch ``g1-posts``) is created empty and filled from the
   beginning of the projection's topics by an in-process consumer (its own assignment, no consumer
   group) driving the same :class:`BatchProjector` as the workers. The live workers keep the live
   store current meanwhile; read services keep reading it.
2. **Catch up** until the consumer is idle or has passed the live group's committed offsets.
3. **Verify** the new generation against the spec computed from PostgreSQL, catching up between
   attempts, until it is clean. One that stays unclean is abandoned: the live store is untouched.
4. **Swap.** The projection's workers are paused for a few seconds (nothing may write the old
   generation once the new one has caught up with it); the new generation catches up with the live
   group's committed offsets; the live generation pointer is rewritten in one atomic write
   (Meilisearch: one ``swap-indexes`` task); the live group is moved to where the rebuild got; the
   workers restart on the new generation. Read clients follow the pointer, so they see the old
   store or the new one, whole, never a half-built one.
5. **Drop** the old generation after ``drop_grace_s`` (longer than read clients keep the pointer).

Order matters in 4: the pointer moves before the offsets. Failing between the two leaves the group
behind the new store, which only replays events into it (safe); the reverse would skip events.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, TopicPartition

from projectors.errors import ConfigurationError, RebuildAbandoned
from projectors.operations import offsets
from projectors.operations.replay import Progress, local_workers, topics_of
from projectors.operations.verify import Drift, verify_projection
from projectors.projections import PROJECTIONS
from projectors.projections import projection as get_projection
from projectors.projections.model import ItemKey, ProjectionStore
from projectors.runtime.batch import BatchProjector
from projectors.runtime.dead_letters import DeadLetterWriter, RawRecord
from projectors.runtime.stores import generations, open_store
from projectors.runtime.worker import group_id
from projectors.settings import Settings

log = logging.getLogger(__name__)
DROP_GRACE_S = 5.0

Position = tuple[str, int]


@dataclass
class RebuildReport:
    projection: str
    old_generation: int
    new_generation: int
    events: int
    build_s: float
    swap_pause_s: float
    verified: Drift
    still_wrong: int
    dropped: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "projection": self.projection,
            "oldGeneration": self.old_generation,
            "newGeneration": self.new_generation,
            "events": self.events,
            "buildSeconds": round(self.build_s, 2),
            "swapPauseSeconds": round(self.swap_pause_s, 2),
            "verified": self.verified.as_dict(),
            "stillWrong": self.still_wrong,
            "droppedGeneration": self.dropped,
        }


class Catchup:
    """The projection's topics, from the beginning, into ``store``."""

    def __init__(self, settings: Settings, name: str, store: ProjectionStore, generation: int) -> None:
        self.settings = settings
        letters = DeadLetterWriter(settings, name)
        letters.note = {"rebuildGeneration": generation}
        self.projector = BatchProjector(
            get_projection(name, settings),
            store,
            lambda: psycopg.connect(settings.pg.conninfo(), autocommit=True),
            letters,
            retry_initial_s=settings.worker.retry_initial_s,
            retry_max_s=settings.worker.retry_max_s,
        )
        self.consumer = Consumer(
            {
                **settings.kafka.client_config(),
                "group.id": f"{group_id(name)}-rebuild",  # never joined nor committed: assignment only
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
            }
        )
        start = offsets.earliest(settings, topics_of(settings, name))
        self.positions: dict[Position, int] = {(tp.topic, tp.partition): tp.offset for tp in start}
        self.consumer.assign(start)
        self.events = 0

    def step(self, timeout_s: float = 1.0) -> int:
        messages = self.consumer.consume(num_messages=self.settings.worker.batch_size, timeout=timeout_s)
        records = []
        for m in messages:
            error = m.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("rebuild consumer: %s", error)
                continue
            records.append(RawRecord(str(m.topic()), int(m.partition() or 0), int(m.offset() or 0), m.key(), m.value()))
        if records:
            self.projector.process(records)
            for r in records:
                key = (r.topic, r.partition)
                self.positions[key] = max(self.positions.get(key, 0), r.offset + 1)
            self.events += len(records)
        return len(records)

    def passed(self, targets: dict[Position, int]) -> bool:
        return all(self.positions.get(k, 0) >= v for k, v in targets.items() if v >= 0)

    def run(
        self,
        goal: Callable[[], dict[Position, int]],
        idle_s: float,
        deadline: float,
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        """Consume until past ``goal()`` (re-read every few seconds) or idle for ``idle_s``.

        Never waits for the broker's end offsets: the local broker reports them short after batched produce."""
        target, target_at = goal(), time.monotonic()
        idle_since: float | None = None
        while True:
            now = time.monotonic()
            if self.step():
                idle_since = None
            elif idle_since is None:
                idle_since = now
            if now - target_at > 5.0:
                target, target_at = goal(), now
            tick()
            if self.passed(target) or (idle_since is not None and now - idle_since >= idle_s):
                return
            if now > deadline:
                raise RebuildAbandoned("the rebuild did not catch up with the live workers in time")

    def close(self) -> None:
        self.consumer.close()
        self.projector.close()


def live_offsets(settings: Settings, name: str) -> dict[Position, int]:
    return offsets.committed(settings, group_id(name))


def rebuild(
    settings: Settings,
    name: str,
    force: bool = False,
    verify_wait_s: float = 120.0,
    timeout_s: float = 3600.0,
    drop_grace_s: float = DROP_GRACE_S,
    out: Callable[[str], None] = print,
) -> RebuildReport:
    if name not in PROJECTIONS:
        raise ConfigurationError(f"unknown projection {name!r} (known: {', '.join(PROJECTIONS)})")
    running = [w for w in local_workers(settings, name) if w.pid() is not None]
    if running and not force:
        raise ConfigurationError(
            f"{len(running)} worker(s) of {name} are running ({', '.join(w.name for w in running)}): the swap "
            "pauses them for a few seconds; use --force to let rebuild pause and restart them, or stop them first"
        )
    deadline = time.monotonic() + timeout_s
    pointer = generations(settings, name)
    old, new = pointer.current(), pointer.next()
    target = open_store(settings, name, new)
    target.drop()  # what an abandoned rebuild may have left
    target.ensure_schema()
    out(f"rebuilding {name}: live generation {old}, building generation {new} from the beginning of the topics")
    catchup = Catchup(settings, name, target, new)
    started = time.monotonic()
    try:
        # 1-2. build and catch up while the live workers run
        begin = dict(catchup.positions)
        ends = offsets.ends(settings, topics_of(settings, name))
        total = sum(max(0, ends[k] - begin.get(k, 0)) for k in ends)
        shown = [0.0]

        def tick() -> None:
            if time.monotonic() - shown[0] >= (1.0 if sys.stdout.isatty() else 5.0):
                shown[0] = time.monotonic()
                elapsed = max(0.001, shown[0] - started)
                bar = Progress(catchup.events, max(total, catchup.events), catchup.events / elapsed).bar()
                if sys.stdout.isatty():
                    sys.stdout.write("\r" + bar)
                    sys.stdout.flush()
                else:
                    out(bar)

        catchup.run(lambda: live_offsets(settings, name), idle_s=2.0, deadline=deadline, tick=tick)
        if sys.stdout.isatty():
            sys.stdout.write("\n")
        build_s = time.monotonic() - started
        out(f"built generation {new}: {catchup.events} events in {build_s:.1f}s "
            f"({catchup.events / max(build_s, 0.001):.0f} events/s)")

        # 3. verify, catching up between attempts. While the source is written, the new generation is
        # always a few events behind it: an item counts as drifted only if it is still wrong after the
        # rebuild caught up with the writes that were in flight when it was first found wrong.
        verify_deadline = time.monotonic() + verify_wait_s
        suspects: set[ItemKey] | None = None
        while True:
            found: set[ItemKey] = set()
            drift = verify_projection(settings, name, target, collect=found)
            suspects = found if suspects is None else suspects & found
            out(f"verify generation {new}: {drift.checked} checked, {drift.missing} missing, {drift.extra} extra, "
                f"{drift.wrong} wrong; {len(suspects)} still wrong after catching up")
            if not suspects:
                break
            if time.monotonic() > verify_deadline:
                raise RebuildAbandoned(
                    f"generation {new} of {name} still differs from the source after {verify_wait_s:.0f}s "
                    f"({len(suspects)} items stay wrong, e.g. {sorted(suspects)[:3]}): the live generation "
                    f"{old} is unchanged; generation {new} is kept for inspection and dropped by the next rebuild"
                )
            catchup.run(lambda: live_offsets(settings, name), idle_s=1.0, deadline=deadline)

        # 4. swap, with the workers paused
        paused = time.monotonic()
        for worker in running:
            out(f"pausing {worker.name}")
            worker.stop()
        try:
            live = live_offsets(settings, name)
            catchup.run(lambda: live, idle_s=2.0, deadline=deadline)
            dropped = pointer.swap_in(new)
            out(f"swapped: generation {new} of {name} is live")
            offsets.commit(
                settings, group_id(name), [TopicPartition(t, p, o) for (t, p), o in sorted(catchup.positions.items())]
            )
        finally:
            for worker in running:
                worker.start(settings.stack.start_timeout_s)
                out(f"restarted {worker.name}")
        pause_s = time.monotonic() - paused
    finally:
        catchup.close()
        target.close()
        pointer.close()

    # 5. drop the old generation once no reader can still be using it
    time.sleep(drop_grace_s)
    old_store = open_store(settings, name, dropped)
    try:
        old_store.drop()
    finally:
        old_store.close()
    out(f"dropped the old data of {name} (generation {dropped})")
    return RebuildReport(name, old, new, catchup.events, build_s, pause_s, drift, len(suspects), dropped)
