"""Bench: the redis worker's rate against Redis's own pipeline rate, in one run.

A social workload written to PostgreSQL is captured to the broker; the real ``redis`` worker (a
consumer group of its own, from the earliest offsets) applies every event of its topics to Redis,
timed by its own published batch clock (``bench/worker_runs.py``). Then the same kind of store
operations, the projection's spec read from PostgreSQL as ``Put`` operations, are applied straight
through the Redis store adapter (the version guard's pipelined Lua calls, one round trip per batch
per key group) in batches of the size the worker wrote, into an emptied prefix: the spec again at
a higher version each round (keys overwritten, as the worker overwrites them) until as many
operations as the worker applied. The figure is worker store ops/s ÷ store-alone ops/s (the
worker's events/s printed beside it). Two more figures from the same run say where that ratio is
bound: the worker's own store stage (its ops ÷ the seconds its batches spent applying them) ÷ the
store alone, and the consumer framework's ceiling: a bare faust agent that only counts the same
topics' events (``baselines.bare_faust``), at the worker's store operations per event, ÷ the store
alone. A worker cannot consume faster than the bare agent, so the ratio cannot exceed that ceiling.
Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass

from projectors.bench.baselines import Rate, bare_consume, bare_faust
from projectors.bench.config import Say
from projectors.bench.report import RawStoreRun, WorkerRun
from projectors.bench.throughput import timed_apply
from projectors.bench.worker_runs import bench_worker, run_worker_until
from projectors.capture.preflight import parse_lsn
from projectors.db.migrate import connect
from projectors.model import Put
from projectors.operations.caught_up import wait_for_capture
from projectors.projections import descriptor
from projectors.projections.redis_views import RedisProjection
from projectors.settings import Settings
from projectors.source import PostgresSource
from projectors.workload import SocialWorkload

PARTS = ["postgres", "broker", "redis", "capture"]  # the worker is started by the run itself


@dataclass(frozen=True)
class PipelineSize:
    users: int
    posts: int
    follows: int
    operations: int  # the social mix's operations after the seed
    limit_s: float  # a run (worker, store alone) stops here


PIPELINE = PipelineSize(users=300, posts=1_500, follows=3_000, operations=6_000, limit_s=180.0)
PIPELINE_TINY = PipelineSize(users=40, posts=100, follows=150, operations=2_000, limit_s=60.0)


@dataclass(frozen=True)
class PipelineRun:
    topic_events: int
    worker: WorkerRun
    store: RawStoreRun
    faust: Rate

    @property
    def apply_ratio(self) -> float:
        """The worker's store stage (ops ÷ its batches' apply seconds) ÷ the store alone."""
        applying = self.worker.stages_s.get("store apply", 0.0)
        ops = self.worker.ops_per_s * self.worker.seconds
        return ops / applying / self.store.ops_per_s if applying and self.store.ops_per_s else 0.0

    @property
    def ceiling(self) -> float:
        """The bare faust agent's events/s at the worker's store ops per event ÷ the store alone."""
        per_event = self.worker.ops_per_s / self.worker.events_per_s if self.worker.events_per_s else 0.0
        return self.faust.per_s * per_event / self.store.ops_per_s if self.store.ops_per_s else 0.0

    @property
    def ratio(self) -> float:
        """Worker store ops/s ÷ store-alone ops/s (0 when the store-alone run wrote nothing)."""
        return self.worker.ops_per_s / self.store.ops_per_s if self.store.ops_per_s else 0.0


def topic_load(settings: Settings, size: PipelineSize, timeout_s: float = 300.0) -> int:
    """Write the workload, wait until capture has published it; the events on the redis topics."""
    with connect(settings.pg) as conn:
        load = SocialWorkload(conn, rng=random.Random(35))
        load.seed(users=size.users, posts=size.posts, follows=size.follows)
        load.run(size.operations)
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
    state = wait_for_capture(settings, parse_lsn(str(row[0])), time.monotonic() + timeout_s, time.sleep)
    if state != "caught up":
        raise RuntimeError(f"capture did not publish the workload: {state}")
    return bare_consume(settings, descriptor("redis").topics(settings), 10**12, idle_s=2.0).events


def store_alone(settings: Settings, batch: int, operations: int, limit_s: float) -> RawStoreRun:
    """The store adapter alone: the spec's items put at version 1, 2, ... in batches of ``batch``
    until ``operations`` were applied (or ``limit_s``), into an emptied prefix, emptied after."""
    with connect(settings.pg) as conn:
        conn.autocommit = True
        source = PostgresSource(conn)
        with source.read():
            items = list(RedisProjection(settings.redis.retention_days).spec_all(source))
    if not items:
        return RawStoreRun(operations=0, seconds=0.0, ops_per_s=0.0, batch=batch, setup_s=0.0)
    ops = [Put(key, 1 + i // len(items), doc) for i, (key, doc) in
           ((i, items[i % len(items)]) for i in range(max(operations, len(items))))]
    return timed_apply(settings, "redis", ops, batch, limit_s)


def pipeline(settings: Settings, size: PipelineSize, say: Say) -> PipelineRun:
    """Worker and store alone on the running ``PARTS`` of a stack whose PostgreSQL is empty."""
    expected = topic_load(settings, size)
    say(f"redis worker against Redis's own pipeline rate ({expected:,} events on the redis topics)")
    worker = run_worker_until(
        settings, bench_worker(settings, "redis", f"bench-redis-{uuid.uuid4().hex[:6]}", False), expected, size.limit_s
    )
    batch = max(1, round(worker.operations / max(1, worker.batches)))
    staged = sum(worker.stages_s.values()) or 1.0
    say("  the worker's batch time by stage: " + ", ".join(
        f"{stage} {seconds / staged:.0%}" for stage, seconds in sorted(worker.stages_s.items(), key=lambda kv: -kv[1])
    ))
    say(f"  worker, real Redis: {worker.events_per_s:,.0f} events/s, {worker.ops_per_s:,.0f} store ops/s "
        f"({worker.operations:,} ops in {worker.batches} batches{'' if worker.complete else ', stopped early'})")
    store = store_alone(settings, batch, max(3 * batch, worker.operations), size.limit_s)
    faust = bare_faust(settings, descriptor("redis").topics(settings), expected, size.limit_s)
    run = PipelineRun(expected, worker, store, faust)
    say(f"  store adapter alone (pipelined version guard): {store.ops_per_s:,.0f} ops/s in batches of {batch} "
        f"({store.operations:,} ops: the spec's items again at a higher version each round)")
    say(f"  worker ÷ store: {run.ratio:.2f} (store ops/s)")
    say(f"  the worker's store stage ÷ store alone: {run.apply_ratio:.2f} (ops ÷ the batches' apply seconds)")
    say(f"  bare faust agent on the same topics: {faust.per_s:,.0f} events/s; at the worker's "
        f"{worker.ops_per_s / max(worker.events_per_s, 1e-9):.2f} ops per event ÷ store alone: "
        f"{run.ceiling:.2f} (the most any faust worker can reach)")
    return run
