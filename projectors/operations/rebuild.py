"""`projectors rebuild <projection>`: a fresh store next to the live one, then an atomic swap.

1. **Build.** A new generation of the store (``stores/generations.py``: ``userFeed-g2``, graph
   ``social-g2``, ``search-g2.sqlite3``, Meilisearch ``g1-posts``) is created empty and filled from
   the state of the source (``operations/load.py``: the projection's spec read in one PostgreSQL
   snapshot, written with the store's bulk path), after taking the topics' end offsets. With
   ``--from-topics`` it is filled from the beginning of the topics instead (the cost of the history,
   not of the state). The live workers keep the live store current meanwhile; read services keep
   reading it.
2. **Catch up**: an in-process consumer (its own assignment, no consumer group) drives the same
   :class:`BatchProjector` as the workers from the offsets taken before the snapshot (or the
   beginning) until it is idle or has passed the live group's committed offsets. Events older than
   the snapshot are replayed harmlessly: each re-reads the source with a newer ticket.
3. **Verify** the new generation against the spec computed from PostgreSQL, catching up between
   attempts, until it is clean. One that stays unclean is abandoned: the live store is untouched.
4. **Swap.** The projection's workers are paused for a few seconds through the control topic
   (``operations/pause.py``, wherever they run; nothing may write the old generation once the new
   one has caught up with it); the new generation catches up with the live
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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, TopicPartition

from projectors.errors import ConfigurationError, RebuildAbandoned, RetriableError, unanswered
from projectors.model import ItemKey, ProjectionStore
from projectors.operations import offsets
from projectors.operations.dlq import dead_lettered
from projectors.operations.load import LoadReport, load_from_state
from projectors.operations.pause import DEFAULT_PAUSE_TIMEOUT_S, members, paused
from projectors.operations.report import Progress, Reporter, Silent
from projectors.operations.verify import Drift, verify_projection
from projectors.projections import descriptor
from projectors.projections import projection as get_projection
from projectors.runtime.batch import BatchProjector
from projectors.runtime.dead_letters import DeadLetterWriter, RawRecord
from projectors.runtime.retry import open_store
from projectors.settings import Settings
from projectors.stores.factory import generations

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
    loaded: LoadReport | None
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
            "loadedFromState": None if self.loaded is None else self.loaded.as_dict(),
            "swapPauseSeconds": round(self.swap_pause_s, 2),
            "verified": self.verified.as_dict(),
            "stillWrong": self.still_wrong,
            "droppedGeneration": self.dropped,
        }


class Catchup:
    """The projection's topics, from ``start`` (default: the beginning), into ``store``."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        store: ProjectionStore,
        generation: int,
        start: list[TopicPartition] | None = None,
    ) -> None:
        self.settings = settings
        letters = DeadLetterWriter(settings, name)
        letters.note = {"rebuildGeneration": generation}
        # an event a worker already dead-lettered fails here again: its letter is there already
        letters.known = dead_lettered(settings, name)
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
                "group.id": f"{descriptor(name).group}-rebuild",  # never joined nor committed: assignment only
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
            }
        )
        if start is None:
            start = offsets.earliest(settings, descriptor(name).topics(settings))
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
    return offsets.committed(settings, descriptor(name).group)


def rebuild(
    settings: Settings,
    name: str,
    force: bool = False,
    verify_wait_s: float = 120.0,
    timeout_s: float = 3600.0,
    drop_grace_s: float = DROP_GRACE_S,
    report: Reporter | None = None,
    from_topics: bool = False,
    pause_timeout_s: float = DEFAULT_PAUSE_TIMEOUT_S,
) -> RebuildReport:
    group = descriptor(name).group  # an unknown name stops here
    report = report or Silent()
    out = report.say
    deadline = time.monotonic() + timeout_s
    try:
        pointer = generations(settings, name)
        old, new = pointer.current(), pointer.next()
    except Exception as exc:
        if not unanswered(exc):
            raise
        raise RetriableError(f"the {name} store did not answer; nothing was changed ({exc})") from exc
    try:
        present = members(settings, group)
    except BaseException:
        pointer.close()
        raise
    if present and not force:
        pointer.close()
        raise ConfigurationError(
            f"{len(present)} worker(s) of {name} are in its consumer group ({'; '.join(present)}): the swap "
            "pauses them for a few seconds through the control topic; use --force to let rebuild pause and "
            "resume them, or stop them first"
        )
    target = open_store(settings, name, new)
    target.drop()  # what an abandoned rebuild may have left
    target.ensure_schema()
    started = time.monotonic()
    loaded: LoadReport | None = None
    if from_topics:
        out(f"rebuilding {name}: live generation {old}, building generation {new} from the beginning of the topics")
        catchup = Catchup(settings, name, target, new)
    else:
        out(f"rebuilding {name}: live generation {old}, building generation {new} from the state of the source")
        start = offsets.ends(settings, descriptor(name).topics(settings))  # before the snapshot
        try:
            loaded = load_from_state(
                get_projection(name, settings),
                target,
                lambda: psycopg.connect(settings.pg.conninfo(), autocommit=True),
            )
        except BaseException:
            target.close()
            pointer.close()
            raise
        out(f"loaded generation {new} from the source: {loaded.items} items in {loaded.seconds:.1f}s "
            f"({loaded.items_per_s:.0f} items/s); catching up from the topics' offsets taken before the snapshot")
        if loaded.failures:
            out(f"the store refused {len(loaded.failures)} items (e.g. {loaded.failures[0].op.key}: "
                f"{loaded.failures[0].error}); verify will name what is missing")
        catchup = Catchup(settings, name, target, new, [TopicPartition(t, p, o) for (t, p), o in sorted(start.items())])
    try:
        # 1-2. build and catch up while the live workers run
        begin = dict(catchup.positions)
        ends = offsets.ends(settings, descriptor(name).topics(settings))
        total = sum(max(0, ends[k] - begin.get(k, 0)) for k in ends)

        def tick() -> None:
            elapsed = max(0.001, time.monotonic() - started)
            report.progress(Progress(catchup.events, max(total, catchup.events), catchup.events / elapsed))

        catchup.run(lambda: live_offsets(settings, name), idle_s=2.0, deadline=deadline, tick=tick)
        elapsed = max(0.001, time.monotonic() - started)
        report.progress(Progress(catchup.events, max(total, catchup.events), catchup.events / elapsed), final=True)
        build_s = time.monotonic() - started
        out(f"built generation {new}: {catchup.events} events replayed, {build_s:.1f}s in all "
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
            waited = drift.budget_wait_s
            paced = f", {waited:.0f}s of it pacing to the read budget" if waited >= 0.5 else ""
            out(f"verify generation {new}: {drift.checked} checked, {drift.missing} missing, {drift.extra} extra, "
                f"{drift.wrong} wrong; {len(suspects)} still wrong after catching up; read {drift.items_read} store "
                f"item(s){paced}")
            if not suspects:
                break
            if time.monotonic() > verify_deadline:
                raise RebuildAbandoned(
                    f"generation {new} of {name} still differs from the source after {verify_wait_s:.0f}s "
                    f"({len(suspects)} items stay wrong, e.g. {sorted(suspects)[:3]}): the live generation "
                    f"{old} is unchanged; generation {new} is kept for inspection and dropped by the next rebuild"
                )
            catchup.run(lambda: live_offsets(settings, name), idle_s=1.0, deadline=deadline)

        # 4. swap, with the workers paused (their group empty)
        paused_at = time.monotonic()
        with paused(settings, name, pause_timeout_s, out, "rebuild"):
            live = live_offsets(settings, name)
            catchup.run(lambda: live, idle_s=2.0, deadline=deadline)
            dropped = pointer.swap_in(new)
            out(f"swapped: generation {new} of {name} is live")
            offsets.commit(
                settings, group, [TopicPartition(t, p, o) for (t, p), o in sorted(catchup.positions.items())]
            )
        pause_s = time.monotonic() - paused_at
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
    return RebuildReport(name, old, new, catchup.events, build_s, loaded, pause_s, drift, len(suspects), dropped)
