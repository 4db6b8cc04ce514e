"""Scaling one projection: a worker whose projector runs in a thread of its process (sharing one
GIL with faust's event loop), one whose projector runs in a child process (the default), and two
such workers sharing the projection's partitions in one consumer group; each on a null store and on
the real store, against the bare faust agent on the same topics in the same run."""

from __future__ import annotations

import os
import uuid

from projectors.bench.baselines import bare_consume, bare_faust
from projectors.bench.config import BenchConfig, Say
from projectors.bench.report import Results, ScaleRun, WorkerRun
from projectors.bench.worker_runs import bench_worker, run_workers_until
from projectors.projections import descriptor
from projectors.runtime.retry import open_store
from projectors.settings import Settings

# (label, worker processes, where each projects its batches: PROJECTORS_WORKER_PROJECT_IN)
SHAPES = (
    ("one worker, projector in a thread", 1, "thread"),
    ("one worker, projector in a child process", 1, "process"),
    ("two workers", 2, "process"),
)


def projecting_in(settings: Settings, where: str) -> Settings:
    return settings.model_copy(update={"worker": settings.worker.model_copy(update={"project_in": where})})


def empty_store(settings: Settings, name: str) -> None:
    """The live generation emptied: every real-store run writes the same items from nothing."""
    store = open_store(settings, name)
    try:
        store.drop()
        store.ensure_schema()
    finally:
        store.close()


def scale(settings: Settings, config: BenchConfig, results: Results, say: Say) -> None:
    for name in (n for n in config.scale_projections if n in config.projections):
        topics = descriptor(name).topics(settings)
        expected = bare_consume(settings, topics, 10**12, idle_s=2.0).events
        say(f"== scale: {name} ({expected} events in {len(topics)} topics of "
            f"{settings.kafka.topic_partitions} partitions; {os.cpu_count()} CPUs)")
        faust_rate = bare_faust(settings, topics, expected, timeout_s=600)
        say(f"  bare faust agent: {faust_rate.per_s:,.0f} events/s")
        runs: dict[str, dict[str, list[WorkerRun]]] = {"null": {}, "real": {}}
        for round_ in range(config.scale_rounds):
            # interleaved, in the reverse order every other round (a shared machine drifts)
            order = SHAPES if round_ % 2 == 0 else tuple(reversed(SHAPES))
            for store in ("null", "real"):
                for label, processes, where in order:
                    if store == "real":
                        empty_store(settings, name)
                    group = f"bench-scale-{uuid.uuid4().hex[:6]}"
                    shaped = projecting_in(settings, where)
                    parts = [bench_worker(shaped, name, group, store == "null", index=i + 1) for i in range(processes)]
                    run = run_workers_until(settings, parts, expected, config.run_limit_s)
                    runs[store].setdefault(label, []).append(run)
                    say(f"  {store} store, {label}: {run.events_per_s:,.0f} events/s"
                        f" (busy {run.cpu_share:.1f} cores{'' if run.complete else ', partial'})")
        results.scale[name] = ScaleRun(
            topic_events=expected,
            partitions=settings.kafka.topic_partitions,
            cpus=os.cpu_count() or 0,
            bare_faust_per_s=faust_rate.per_s,
            runs=runs,
        )
