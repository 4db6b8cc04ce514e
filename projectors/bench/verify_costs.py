"""Verify: what a full and an incremental verify cost at two store sizes, and a worker's throughput
beside full verifies."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from confluent_kafka import TopicPartition

from projectors.bench.baselines import bare_consume
from projectors.bench.config import BenchConfig, Say
from projectors.bench.feed_scenarios import requests_by_group, server_requests
from projectors.bench.private_stack import count_events, fresh_store
from projectors.bench.report import DigestVerify, Results, VerifyCheck, VerifyFigures, VerifySize, WorkerRun
from projectors.bench.worker_runs import bench_worker, run_worker_until
from projectors.model import ItemKey
from projectors.operations import offsets
from projectors.operations.checkpoint import Checkpoint
from projectors.operations.load import load_from_state
from projectors.operations.rebuild import Catchup
from projectors.operations.verify import (
    FEED_MARGIN_S,
    ReadPacer,
    store_kind,
    verify_incremental,
    verify_projection,
)
from projectors.projections import descriptor
from projectors.projections import projection as get_projection
from projectors.runtime.retry import unwrapped
from projectors.settings import Settings
from projectors.stores.factory import open_raw_store
from projectors.workload import Population, bulk


def verify_costs(
    settings: Settings, config: BenchConfig, population: Population, results: Results, say: Say,
    written: Callable[[], None] = lambda: None,
) -> None:
    """What a full and an incremental verify of counters (on the local Cosmos server) cost at two
    store sizes: seconds, store items read, store requests (counted by the server). Each size is a
    fresh generation loaded from the source's state after taking the topics' ends (the checkpoint),
    then a few events applied by a catch-up consumer; the incremental check reads those events.
    Then a worker's throughput alone and with full verifies of that store running alongside."""
    name = "counters"
    projection = get_projection(name, settings)
    topics = descriptor(name).topics(settings)
    connect = lambda: psycopg.connect(settings.pg.conninfo(), autocommit=True)  # noqa: E731
    rng = random.Random(config.seed_value + 1)
    sizes: list[VerifySize] = []
    for generation, grow in ((81, 0), (82, config.verify_grow_events)):
        if grow:
            with psycopg.connect(settings.pg.conninfo()) as conn:
                bulk(conn, population, grow, rng)
        count_events(settings, topics, 0, lambda _l: None)  # capture has published what was written
        start = offsets.ends(settings, topics)
        with fresh_store(settings, name, generation) as store:
            load_from_state(projection, store, connect)
            # the checkpoint a clean verify of the loaded store would record: the topics' ends taken
            # before the load, and a time after the load's writes (the change feed is read from
            # FEED_MARGIN_S before it)
            time.sleep(FEED_MARGIN_S + 1.5)
            at = time.time()
            with psycopg.connect(settings.pg.conninfo()) as conn:
                bulk(conn, population, config.verify_touch_events, rng)
            count_events(settings, topics, 0, lambda _l: None)
            end = offsets.ends(settings, topics)
            catchup = Catchup(settings, name, store, generation,
                              [TopicPartition(t, p, o) for (t, p), o in start.items()])
            idle_since = time.monotonic()
            try:
                while any(catchup.positions.get(k, 0) < v for k, v in end.items()):
                    if catchup.step(1.0):
                        idle_since = time.monotonic()
                    elif time.monotonic() - idle_since > 15:
                        break  # offset gaps: nothing more to read up to the ends
            finally:
                catchup.close()
            drifted = change_one_counter(settings, store)  # behind the projector's back: no event
            checks: dict[str, VerifyCheck] = {}
            held = 0
            for mode in ("full", "incremental"):
                before = server_requests(settings)
                began = time.perf_counter()
                if mode == "full":
                    drift = verify_projection(settings, name, store, pacer=ReadPacer())
                else:
                    since = Checkpoint(name, start, at, generation, store_kind(store))
                    drift = verify_incremental(settings, name, store, since, end, pacer=ReadPacer())
                seconds = time.perf_counter() - began
                served = requests_by_group(before, server_requests(settings))[name]
                checks[mode] = VerifyCheck(seconds=seconds, items_read=drift.items_read, requests=sum(served.values()),
                                           request_kinds=served, events_read=drift.events, keys_checked=drift.checked,
                                           drift=drift.total, store_changes=drift.store_changes,
                                           found=drifted in drift.keys)
                if mode == "full":
                    held = drift.held
            row = VerifySize(full=checks["full"], items=held, incremental=checks["incremental"])
            sizes.append(row)
            say(f"== verify {name}, {row.items:,} items, one changed in the store: full {row.full.seconds:.1f}s, "
                f"{row.full.items_read:,} items read, {row.full.requests:,} requests, found {row.full.found}; "
                f"incremental ({row.incremental.events_read} events, {row.incremental.store_changes} in the change "
                f"feed) {row.incremental.seconds:.1f}s, {row.incremental.items_read:,} items read, "
                f"{row.incremental.requests:,} requests, found {row.incremental.found}")
    results.verify = VerifyFigures(projection=name, sizes=sizes)
    written()  # each step's figures are kept as soon as it finishes
    results.verify.graph_digests = graph_digests(settings, say)
    written()
    # a worker's throughput alone, then with full verifies of the larger store running alongside
    expected = bare_consume(settings, topics, 10**12, idle_s=2.0).events
    alone = run_worker_until(settings, bench_worker(settings, name, f"bench-v-{uuid.uuid4().hex[:6]}", False),
                             expected, config.run_limit_s)

    # the verified generation is loaded first: the worker runs beside its reads, not beside its load
    target = open_raw_store(settings, name, 83)
    target.drop()
    target.ensure_schema()
    load_from_state(projection, target, connect)

    def verify_loop(items_per_s: float, stop: threading.Event, verifies: list[int]) -> None:
        while not stop.is_set():
            verify_projection(settings, name, target, pacer=ReadPacer(items_per_s))
            verifies[0] += 1

    beside: dict[float, tuple[WorkerRun, int]] = {}
    try:
        for budget in (0.0, config.verify_budget_items_s):
            stop = threading.Event()
            verifies = [0]
            loop = threading.Thread(target=verify_loop, args=(budget, stop, verifies), daemon=True)
            loop.start()
            try:
                run = run_worker_until(settings, bench_worker(settings, name, f"bench-v-{uuid.uuid4().hex[:6]}",
                                                              False), expected, config.run_limit_s)
            finally:
                stop.set()
                loop.join(600)
            beside[budget] = (run, verifies[0])
    finally:
        target.drop()
        target.close()
    results.verify.worker_alone = alone
    results.verify.worker_beside_verify, results.verify.verifies_alongside = beside[0.0]
    results.verify.worker_beside_budgeted_verify, results.verify.budgeted_verifies_alongside = (
        beside[config.verify_budget_items_s])
    results.verify.verify_budget_items_s = config.verify_budget_items_s
    say(f"== a {name} worker alone: {alone.events_per_s:,.0f} events/s; beside full verifies "
        f"({beside[0.0][1]} done): {beside[0.0][0].events_per_s:,.0f} events/s; beside verifies paced to "
        f"{config.verify_budget_items_s:,.0f} items/s ({beside[config.verify_budget_items_s][1]} done): "
        f"{beside[config.verify_budget_items_s][0].events_per_s:,.0f} events/s")


def change_one_counter(settings: Settings, store: Any) -> ItemKey:
    """Change one followers counter directly in the store (the count plus 7), as a write that is
    not the projector's would: the drift both checks must find. Its key."""
    with psycopg.connect(settings.pg.conninfo()) as conn:
        row = conn.execute("SELECT followee_id::text FROM follows ORDER BY followee_id DESC LIMIT 1").fetchone()
    assert row is not None, "the bench's population has follows"
    key = ItemKey("counters", f"{row[0]}:followers", row[0])
    container = unwrapped(store).container("counters")
    item = container.read_item(key.id, partition_key=key.partition)
    item["count"] += 7
    container.replace_item(key.id, item)
    return key


def graph_digests(settings: Settings, say: Say) -> DigestVerify:
    """The graph, a fresh generation loaded from the source's state: verified reading every item,
    then by range digests, then by digests again after one node was changed in the store."""
    name = "graph"
    connect = lambda: psycopg.connect(settings.pg.conninfo(), autocommit=True)  # noqa: E731
    with fresh_store(settings, name, 84) as store:
        load_from_state(get_projection(name, settings), store, connect)
        began = time.perf_counter()
        whole = verify_projection(settings, name, store, pacer=ReadPacer(), use_digests=False)
        whole_s = time.perf_counter() - began
        began = time.perf_counter()
        clean = verify_projection(settings, name, store, pacer=ReadPacer())
        clean_s = time.perf_counter() - began
        graph: Any = unwrapped(store)
        graph.transport.run("MATCH (u:User) WITH u LIMIT 1 SET u.handle = 'changed behind the projector'")
        began = time.perf_counter()
        drifted = verify_projection(settings, name, store, pacer=ReadPacer())
        drifted_s = time.perf_counter() - began
    figures = DigestVerify(
        items=whole.held, whole_s=whole_s, whole_items_read=whole.items_read, digests_s=clean_s,
        digests_read=clean.digests_read, digests_items_read=clean.items_read, drifted_s=drifted_s,
        drifted_items_read=drifted.items_read, drift_found=drifted.total,
    )
    say(f"== verify graph, {figures.items:,} items: every item {whole_s:.1f}s ({whole.items_read:,} read); "
        f"by digests {clean_s:.1f}s ({clean.digests_read} digests, {clean.items_read} items read); one node "
        f"changed: {drifted_s:.1f}s, {drifted.items_read} items read, drift {drifted.total}")
    return figures
