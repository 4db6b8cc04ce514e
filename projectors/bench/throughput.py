"""Throughput: each projection's worker against the bare consumers on the same topics, the same
worker on a null store, and its store client alone."""

from __future__ import annotations

import time
import uuid

import psycopg

from projectors.bench.baselines import bare_consume, bare_faust
from projectors.bench.config import BenchConfig, Say
from projectors.bench.report import RawStoreRun, Results, ThroughputRun
from projectors.bench.worker_runs import bench_worker, run_worker_until
from projectors.model import Put
from projectors.projections import descriptor
from projectors.projections import projection as get_projection
from projectors.runtime.retry import open_store
from projectors.settings import Settings
from projectors.source import PostgresSource

RAW_STORE_MAX_OPS = 500_000  # documents held in memory for the store-alone run
# a feed batch of 1,000 posts is ~100,000 items: on the Cosmos REST server (~150 items/s) one such
# batch alone would take 11 minutes, so the store-alone run writes at most this many per batch
RAW_STORE_MAX_BATCH = 5_000


def raw_store_rate(settings: Settings, projection: str, batch: int, limit: int, limit_s: float) -> RawStoreRun:
    """The store client alone: up to ``limit`` of the projection's documents, read from its spec in
    PostgreSQL (what its worker writes, whatever the worker got through), put into an empty
    generation in batches of the worker's size (same guard reads and writes, no projection logic)."""
    ops: list[Put] = []
    with psycopg.connect(settings.pg.conninfo()) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        for key, doc in get_projection(projection, settings).spec_all(PostgresSource(conn)):
            ops.append(Put(key, 1, doc))
            if len(ops) >= limit:
                break
    # through the retry wrapper, as a worker writes: right after the real-store worker was stopped
    # mid-batch, the local Cosmos server (one Node thread) can be busy for minutes with what it sent
    return timed_apply(settings, projection, ops, batch, limit_s)


def timed_apply(settings: Settings, projection: str, ops: list[Put], batch: int, limit_s: float) -> RawStoreRun:
    """``ops`` applied in batches of ``batch`` (through the retry wrapper, as a worker writes) into
    an emptied generation of the projection's store, emptied again after: how fast the store
    client alone writes, stopped after ``limit_s``."""
    target = open_store(settings, projection, 90)
    setup = time.perf_counter()
    target.drop()
    target.ensure_schema()
    setup_s = time.perf_counter() - setup
    written, started = 0, time.perf_counter()
    try:
        for i in range(0, len(ops), max(1, batch)):
            target.apply(ops[i : i + batch])
            written += len(ops[i : i + batch])
            if time.perf_counter() - started > limit_s:
                break
        seconds = max(0.001, time.perf_counter() - started)
    finally:
        target.drop()
        target.close()
    return RawStoreRun(operations=written, seconds=seconds, ops_per_s=written / seconds, batch=batch, setup_s=setup_s)


def throughput(settings: Settings, config: BenchConfig, results: Results, say: Say) -> None:
    for name in config.projections:
        topics = descriptor(name).topics(settings)
        expected = bare_consume(settings, topics, 10**12, idle_s=2.0).events
        say(f"== throughput: {name} ({expected} events in {', '.join(topics)})")
        bare = bare_consume(settings, topics, expected)
        say(f"  bare confluent-kafka consumer: {bare.per_s:,.0f} events/s")
        faust_rate = bare_faust(settings, topics, expected, timeout_s=600)
        say(f"  bare faust agent (counts only): {faust_rate.per_s:,.0f} events/s, "
            f"CPU {faust_rate.cpu_us_per_event:.0f} µs/event")
        null = run_worker_until(settings, bench_worker(settings, name, f"bench-null-{uuid.uuid4().hex[:6]}", True),
                                expected, config.run_limit_s)
        say(f"  worker, null store: {null.events_per_s:,.0f} events/s, CPU {null.cpu_us_per_event:.0f} µs/event"
            f" ({null.own_cpu_us_per_event:.0f} in the projector's code, the rest faust and aiokafka;"
            f" the process busy {null.cpu_share:.0%} of a core)")
        real = run_worker_until(settings, bench_worker(settings, name, f"bench-real-{uuid.uuid4().hex[:6]}", False),
                                expected, config.run_limit_s)
        say(f"  worker, real store: {real.events_per_s:,.0f} events/s, {real.ops_per_s:,.0f} store ops/s"
            f"{'' if real.complete else f' (stopped after {config.run_limit_s:.0f}s)'}")
        # the batch shape the worker wrote (the null-store run's when the real one finished no batch)
        shaped = real if real.batches else null
        batch = min(RAW_STORE_MAX_BATCH, max(1, round(shaped.operations / max(1, shaped.batches))))
        raw = raw_store_rate(settings, name, batch, min(RAW_STORE_MAX_OPS, max(3 * batch, real.operations)),
                             config.run_limit_s)
        say(f"  store client alone: {raw.ops_per_s:,.0f} ops/s in batches of {batch}"
            f" (dropping and creating its generation took {raw.setup_s:.0f}s)")
        results.throughput[name] = ThroughputRun(
            topic_events=expected,
            bare_consume_per_s=bare.per_s,
            bare_faust_per_s=faust_rate.per_s,
            bare_faust_events=faust_rate.events,
            bare_faust_cpu_us_per_event=faust_rate.cpu_us_per_event,
            null_store=null,
            real_store=real,
            raw_store=raw,
            ratio_null_vs_faust=null.events_per_s / faust_rate.per_s if faust_rate.per_s else None,
            ratio_ops_vs_raw_store=real.ops_per_s / raw.ops_per_s if raw.ops_per_s else None,
        )
