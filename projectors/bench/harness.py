"""`projectors bench`: how fast, how far behind, how it breaks, on a private local stack.

Every figure is measured in one run on this machine, with its baseline taken in the same run:

- **throughput**: each projection's worker (faust agent, BatchProjector, its store) reading the
  topics from the beginning in a group of its own, against a bare confluent-kafka consumer and a bare
  faust agent that only counts, on the same topics; the same worker on a null store; each store
  client alone writing the projection's documents in batches of the size the worker wrote;
- **profile**: where the worker's time went (faust poll + commit, decode + validate, touched,
  plan (source reads), store apply, dead-letter flush), from the worker's own stage timers;
- **rebuild**: events/s and seconds of a rebuild's build phase (``operations/rebuild.py``);
- **lag**: PostgreSQL COMMIT -> visible in the graph and the search index, p50/p95/p99, under
  steady source writes;
- **fan-out**: feed writes per post against its author's follower count, and the time until every
  feed has it;
- **memory**: peak RSS of each worker;
- **fault drills**: SIGKILL a worker mid-batch, the graph store stopped, capture restarted, poison
  events among good ones, under load; each ends with ``verify`` at zero drift and every poison event
  in the dead letters.

Output: ``results.json``, ``results.md`` and ``results.png`` in the output folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Producer

from projectors.bench.baselines import bare_consume, bare_faust
from projectors.bench.load import Population, bulk, celebrity_post, seed, steady
from projectors.operations import offsets
from projectors.operations.rebuild import Catchup
from projectors.operations.replay import topics_of
from projectors.operations.verify import verify_until_clean
from projectors.projections import PROJECTIONS
from projectors.projections import projection as get_projection
from projectors.projections.model import Put
from projectors.runtime.batch import STAGES as BATCH_STAGES
from projectors.runtime.dead_letters import dead_letter_topic
from projectors.runtime.source import PostgresSource
from projectors.runtime.stores import open_raw_store, open_store
from projectors.runtime.worker import group_id, read_stats
from projectors.settings import Settings, load_settings
from projectors.stack import local
from projectors.stack.processes import PART_CLASSES, Worker

Say = Callable[[str], None]


PHASES = ("throughput", "rebuild", "lag", "fanout", "drills")


@dataclass(frozen=True)
class BenchConfig:
    users: int = 20_000
    celebrities: int = 2
    celebrity_followers: int = 10_000
    events: int = 200_000  # change events written after the seed, for throughput
    rebuild_events: int = 1_000_000  # topics are topped up to this many events for the rebuild
    rebuild_projections: tuple[str, ...] = ("graph", "search")
    run_limit_s: float = 180.0  # a throughput run stops here (the Cosmos REST server is slow)
    lag_rates: tuple[int, ...] = (200, 1000)
    lag_seconds: float = 30.0
    fanout_followers: tuple[int, ...] = (10, 100, 1000, 10_000)
    graph_stop_s: float = 30.0
    poison_events: int = 1000
    drill_rate: float = 10.0  # the feed on the Cosmos REST server (~200 items/s) must keep up
    verify_wait_s: float = 900.0
    seed_value: int = 11
    phases: tuple[str, ...] = PHASES  # which parts run (the load always does)
    projections: tuple[str, ...] = ("feed", "counters", "graph", "search")  # whose throughput is measured


TINY = BenchConfig(
    users=150, celebrities=1, celebrity_followers=60, events=800, rebuild_events=0, run_limit_s=20.0,
    lag_rates=(50,), lag_seconds=3.0, fanout_followers=(5, 50), graph_stop_s=3.0, poison_events=20,
    drill_rate=5.0, verify_wait_s=300.0,
)


@dataclass
class Results:
    config: dict[str, Any]
    conditions: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, dict[str, Any]] = field(default_factory=dict)
    rebuild: dict[str, dict[str, Any]] = field(default_factory=dict)
    lag: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    lag_batches: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    fanout: list[dict[str, Any]] = field(default_factory=list)
    drills: list[dict[str, Any]] = field(default_factory=list)


# -- the private stack -------------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_settings(root: Path) -> Settings:
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    return load_settings({
        "PROJECTORS_STACK_DIR": str(root),
        "PROJECTORS_PG_PORT": str(free_port()),
        "PROJECTORS_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "PROJECTORS_FALKORDB_PORT": str(free_port()),
        "PROJECTORS_COSMOS_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "PROJECTORS_KAFKA_TOPIC_PARTITIONS": "3",
        "PROJECTORS_CAPTURE_HEARTBEAT_INTERVAL_MS": "1000",
        "PROJECTORS_WORKER_BATCH_SIZE": "1000",
        "PROJECTORS_WORKER_BATCH_WITHIN_S": "0.2",
        "PROJECTORS_WORKER_RETRY_MAX_S": "2",
    })


class BenchWorker(Worker):
    """``projectors.bench.worker``: the real worker in a group of its own, real or null store."""

    group = ""
    null_store = False

    def command(self) -> list[str]:
        flags = ["--null-store"] if self.null_store else []
        return [sys.executable, "-m", "projectors.bench.worker", self.projection, "--group", self.group, *flags]


def bench_worker(settings: Settings, projection: str, group: str, null_store: bool) -> Worker:
    cls = type("BenchWorker_" + projection, (BenchWorker,), {
        "name": f"bench-{projection}-{'null' if null_store else 'store'}", "projection": projection,
        "group": group, "null_store": null_store,
    })
    worker: Worker = cls(settings)
    return worker


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds the process used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# -- phases ------------------------------------------------------------------------------------------
def count_events(settings: Settings, topics: list[str], at_least: int, say: Say) -> int:
    """Messages in ``topics``, once capture has published at least ``at_least`` and then stopped
    adding (counted by reading: the local broker's end offsets are short)."""
    previous = -1
    while True:
        now = bare_consume(settings, topics, 10**12, idle_s=3.0).events
        say(f"  topics hold {now} events (at least {at_least} expected)")
        if now >= at_least and now == previous:
            return now
        previous = now
        time.sleep(2.0)


def run_worker_until(settings: Settings, part: Worker, expected: int, limit_s: float) -> dict[str, Any]:
    """Start ``part``, follow its published stats until ``expected`` events or ``limit_s`` after the
    first batch. Events/s count from the end of the first batch seen to the end of the last one, by
    the worker's own batch clock (``lastAppliedAt``), as the bare faust agent times itself: faust
    start, group join, the polling of the stats file and the worker's stop are all left out."""
    part.start(60)
    pid = part.pid()
    assert pid is not None
    first: dict[str, Any] | None = None
    deadline = time.monotonic() + limit_s + 120
    stats: dict[str, Any] = {}
    cpu = {"process_at_first": 0.0, "process": 0.0}
    try:
        while time.monotonic() < deadline:
            mine = [s for s in read_stats(settings, part.projection) if int(s["pid"]) == pid]
            stats = mine[0] if mine else {}
            events = int(stats.get("events", 0))
            if events and first is None:
                first = dict(stats)
                deadline = time.monotonic() + limit_s
                cpu["process_at_first"] = process_cpu_s(pid)
            if events >= expected:
                break
            time.sleep(0.25)
        rss = peak_rss_mb(pid)
        cpu["process"] = process_cpu_s(pid)
    finally:
        part.stop()
    return worker_rate(first, stats, cpu["process"] - cpu["process_at_first"], expected, rss)


def worker_rate(
    first: dict[str, Any] | None, last: dict[str, Any], process_cpu_s: float, expected: int, rss_mb: float
) -> dict[str, Any]:
    """A worker run's figures from two samples of its published stats: the first with a batch done,
    and the last (``first`` None: not one batch finished in time, e.g. a feed batch of 10,000s of
    Cosmos writes). Counts, stage times and CPU are taken between the two samples, time by the
    worker's clock."""
    first = first or {"events": 0, "operations": 0, "cpuSeconds": 0.0, "lastAppliedAt": 0.0}
    done = int(last.get("events", 0))
    counted = done - int(first["events"])
    elapsed = float(last.get("lastAppliedAt", 0.0)) - float(first["lastAppliedAt"])
    timed = counted > 0 and elapsed > 0
    ops = int(last.get("operations", 0)) - int(first["operations"])
    own_cpu = float(last.get("cpuSeconds", 0.0)) - float(first["cpuSeconds"])
    return {
        "events": done,
        "complete": done >= expected,
        "seconds": elapsed if timed else 0.0,
        "events_per_s": counted / elapsed if timed else 0.0,
        "operations": int(last.get("operations", 0)),
        "batches": int(last.get("batches", 0)),
        "ops_per_s": ops / elapsed if timed else 0.0,
        "stages_s": {k: float(v) - float(first.get("stageSeconds", {}).get(k, 0.0))
                     for k, v in last.get("stageSeconds", {}).items()},
        "peak_rss_mb": rss_mb,
        # CPU per event, from the first batch on: the whole process, and the thread running the
        # batches (decode, touched, plan, store client, stats); the rest is faust, aiokafka, the loop
        "cpu_us_per_event": max(0.0, process_cpu_s) / counted * 1e6 if timed else 0.0,
        "own_cpu_us_per_event": max(0.0, own_cpu) / counted * 1e6 if timed else 0.0,
        "cpu_share": max(0.0, process_cpu_s) / elapsed if timed else 0.0,
    }


RAW_STORE_MAX_OPS = 500_000  # documents held in memory for the store-alone run
# a feed batch of 1,000 posts is ~100,000 items: on the Cosmos REST server (~150 items/s) one such
# batch alone would take 11 minutes, so the store-alone run writes at most this many per batch
RAW_STORE_MAX_BATCH = 5_000


def raw_store_rate(settings: Settings, projection: str, batch: int, limit: int, limit_s: float) -> dict[str, Any]:
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
    return {"operations": written, "seconds": seconds, "ops_per_s": written / seconds, "batch": batch,
            "setup_s": setup_s}


def throughput(settings: Settings, config: BenchConfig, results: Results, say: Say) -> None:
    for name in config.projections:
        topics = topics_of(settings, name)
        expected = bare_consume(settings, topics, 10**12, idle_s=2.0).events
        say(f"== throughput: {name} ({expected} events in {', '.join(topics)})")
        bare = bare_consume(settings, topics, expected)
        say(f"  bare confluent-kafka consumer: {bare.per_s:,.0f} events/s")
        faust_rate = bare_faust(settings, topics, expected, timeout_s=600)
        say(f"  bare faust agent (counts only): {faust_rate.per_s:,.0f} events/s, "
            f"CPU {faust_rate.cpu_us_per_event:.0f} µs/event")
        null = run_worker_until(settings, bench_worker(settings, name, f"bench-null-{uuid.uuid4().hex[:6]}", True),
                                expected, config.run_limit_s)
        say(f"  worker, null store: {null['events_per_s']:,.0f} events/s, CPU {null['cpu_us_per_event']:.0f} µs/event"
            f" ({null['own_cpu_us_per_event']:.0f} in the projector's code, the rest faust and aiokafka;"
            f" the process busy {null['cpu_share']:.0%} of a core)")
        real = run_worker_until(settings, bench_worker(settings, name, f"bench-real-{uuid.uuid4().hex[:6]}", False),
                                expected, config.run_limit_s)
        say(f"  worker, real store: {real['events_per_s']:,.0f} events/s, {real['ops_per_s']:,.0f} store ops/s"
            f"{'' if real['complete'] else f' (stopped after {config.run_limit_s:.0f}s)'}")
        # the batch shape the worker wrote (the null-store run's when the real one finished no batch)
        shaped = real if real["batches"] else null
        batch = min(RAW_STORE_MAX_BATCH, max(1, round(shaped["operations"] / max(1, shaped["batches"]))))
        raw = raw_store_rate(settings, name, batch, min(RAW_STORE_MAX_OPS, max(3 * batch, real["operations"])),
                             config.run_limit_s)
        say(f"  store client alone: {raw['ops_per_s']:,.0f} ops/s in batches of {batch}"
            f" (dropping and creating its generation took {raw['setup_s']:.0f}s)")
        results.throughput[name] = {
            "topic_events": expected,
            "bare_consume_per_s": bare.per_s,
            "bare_faust_per_s": faust_rate.per_s,
            "bare_faust_events": faust_rate.events,
            "bare_faust_cpu_us_per_event": faust_rate.cpu_us_per_event,
            "null_store": null,
            "real_store": real,
            "raw_store": raw,
            "ratio_null_vs_faust": null["events_per_s"] / faust_rate.per_s if faust_rate.per_s else None,
            "ratio_ops_vs_raw_store": real["ops_per_s"] / raw["ops_per_s"] if raw["ops_per_s"] else None,
        }


def rebuild_times(settings: Settings, config: BenchConfig, results: Results, say: Say) -> None:
    for name in config.rebuild_projections:
        expected = bare_consume(settings, topics_of(settings, name), 10**12, idle_s=2.0).events
        store = open_store(settings, name, 80)
        store.drop()
        store.ensure_schema()
        catchup = Catchup(settings, name, store, 80)
        started = time.monotonic()
        idle_since: float | None = None
        try:
            while catchup.events < expected and time.monotonic() - started < config.run_limit_s * 5:
                if catchup.step():
                    idle_since = None
                elif (idle_since := idle_since or time.monotonic()) and time.monotonic() - idle_since > 5:
                    break
            seconds = time.monotonic() - started
        finally:
            catchup.close()
            store.drop()
            store.close()
        results.rebuild[name] = {"events": catchup.events, "seconds": seconds, "events_per_s": catchup.events / seconds}
        say(f"== rebuild {name}: {catchup.events} events in {seconds:.1f}s ({catchup.events / seconds:,.0f} events/s)")


@contextlib.contextmanager
def live_workers(settings: Settings, names: list[str]) -> Iterator[None]:
    """The stack's workers of ``names``, started at the current end of their topics."""
    for name in names:
        ends = offsets.ends(settings, topics_of(settings, name))
        from confluent_kafka import TopicPartition

        offsets.commit(settings, group_id(name), [TopicPartition(t, p, o) for (t, p), o in ends.items()])
    parts = [f"worker-{n}" for n in names]
    local.up(settings, parts, say=lambda _l: None)
    try:
        yield
    finally:
        local.down(settings, parts, say=lambda _l: None)


class Prober:
    """Polls the graph and the search index for posts committed in PostgreSQL; records commit ->
    visible for each (50 ms resolution)."""

    def __init__(self, settings: Settings) -> None:
        self.pending: dict[str, dict[str, float]] = {"graph": {}, "search": {}}
        self.latencies: dict[str, list[float]] = {"graph": [], "search": []}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.graph = open_raw_store(settings, "graph")
        self.search_path = settings.search_sqlite_path
        self.thread = threading.Thread(target=self.run, daemon=True)

    def committed(self, post_id: str, at: float) -> None:
        with self.lock:
            for waiting in self.pending.values():
                waiting[post_id] = at

    def seen(self, store: str, ids: list[str]) -> list[str]:
        if store == "graph":
            rows = self.graph.query("MATCH (p:Post) WHERE p.id IN $ids RETURN p.id AS id", {"ids": ids})  # type: ignore[attr-defined]
            return [r["id"] for r in rows]
        import sqlite3

        conn = sqlite3.connect(f"file:{self.search_path}?mode=ro", uri=True, timeout=5)
        try:
            marks = ",".join("?" for _ in ids)
            found = conn.execute(f"SELECT id FROM docs WHERE idx = 'posts' AND deleted = 0 AND id IN ({marks})", ids)
            return [r[0] for r in found]
        finally:
            conn.close()

    def run(self) -> None:
        while not self.stop.is_set():
            for store, waiting in self.pending.items():
                with self.lock:
                    ids = list(waiting)[:500]
                if not ids:
                    continue
                now = time.time()
                for post_id in self.seen(store, ids):
                    with self.lock:
                        at = waiting.pop(post_id, None)
                    if at is not None:
                        self.latencies[store].append(now - at)
            time.sleep(0.05)

    def __enter__(self) -> Prober:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        # wait for the last posts (one deleted before it was ever visible is never seen: 10 s at most)
        seen, since = -1, time.time()
        while any(self.pending.values()) and time.time() - since < 10.0:
            now = sum(map(len, self.latencies.values()))
            if now != seen:
                seen, since = now, time.time()
            time.sleep(0.2)
        self.stop.set()
        self.thread.join()
        self.graph.close()


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"n": len(ordered), "p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1]}


def warm_up(settings: Settings, population: Population, prober: Prober, timeout_s: float = 120.0) -> None:
    """Write until both stores show a post: the workers have joined their group and run."""
    deadline = time.monotonic() + timeout_s
    while not all(prober.latencies.values()):
        if time.monotonic() > deadline:
            raise RuntimeError("the graph and search workers did not start consuming in time")
        steady(settings.pg.conninfo(), population, 20, 1.0, random.Random(), on_post=prober.committed)
    # the warm-up's posts still in flight would be measured with the join delay in their latency
    while any(prober.pending.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    with prober.lock:
        for values in prober.latencies.values():
            values.clear()
        for waiting in prober.pending.values():
            waiting.clear()


def worker_totals(settings: Settings, name: str) -> dict[str, Any]:
    """The published totals of the running workers of ``name``, summed."""
    totals: dict[str, Any] = {"events": 0, "batches": 0, "stageSeconds": {}}
    for stats in read_stats(settings, name):
        if not stats["alive"]:
            continue
        totals["events"] += int(stats.get("events", 0))
        totals["batches"] += int(stats.get("batches", 0))
        for stage, seconds in stats.get("stageSeconds", {}).items():
            totals["stageSeconds"][stage] = totals["stageSeconds"].get(stage, 0.0) + float(seconds)
    return totals


def batch_profile(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the workers' batches were like between two :func:`worker_totals`: their count, size, and
    milliseconds per batch in each stage (where commit -> visible goes once an event is fetched)."""
    batches = after["batches"] - before["batches"]
    per = max(1, batches)
    return {
        "batches": batches,
        "events_per_batch": (after["events"] - before["events"]) / per,
        "stage_ms_per_batch": {
            stage: (seconds - before["stageSeconds"].get(stage, 0.0)) * 1000 / per
            for stage, seconds in after["stageSeconds"].items()
        },
    }


def lag(settings: Settings, config: BenchConfig, population: Population, results: Results, say: Say) -> None:
    stores = ("graph", "search")
    with live_workers(settings, list(stores)):
        for rate in config.lag_rates:
            with Prober(settings) as prober:
                warm_up(settings, population, prober)
                before = {name: worker_totals(settings, name) for name in stores}
                report = steady(settings.pg.conninfo(), population, rate, config.lag_seconds,
                                random.Random(config.seed_value + rate), on_post=prober.committed)
            results.lag_batches[str(rate)] = {
                name: batch_profile(before[name], worker_totals(settings, name)) for name in stores
            }
            results.lag[str(rate)] = {store: percentiles(v) for store, v in prober.latencies.items()}
            results.lag[str(rate)]["writer"] = {"achieved_per_s": report.achieved_rate, "target_per_s": rate}
            for store in stores:
                p = results.lag[str(rate)][store]
                b = results.lag_batches[str(rate)][store]
                say(f"== lag at {rate} writes/s ({report.achieved_rate:.0f} achieved), {store}: n {p['n']:.0f}, "
                    + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in p.items() if k != "n")
                    + f"; {b['batches']} batches of {b['events_per_batch']:.0f} events, ms per batch: "
                    + ", ".join(f"{k} {v:.1f}" for k, v in b["stage_ms_per_batch"].items()))


def fanout(settings: Settings, config: BenchConfig, population: Population, results: Results, say: Say) -> None:
    counts = population.follower_counts()
    feed = open_raw_store(settings, "feed")

    def reach(post_id: str, committed_at: float, timeout_s: float = 600.0) -> tuple[int, float]:
        """Feed items of the post once their count stops growing (10 s), and when it last grew."""
        last_count, last_change = 0, time.time()
        while time.time() - committed_at < timeout_s:
            # fanned out on write: one userFeed item per recipient; a celebrity's post: one feedPosts
            # item (merged into every follower's page on read) and the author's own item
            found = sum(len(feed.find_keys(c, {"postId": post_id})) for c in ("userFeed", "feedPosts"))
            if found != last_count:
                last_count, last_change = found, time.time()
            elif last_count and time.time() - last_change > 10.0:
                break
            time.sleep(0.25)
        return last_count, last_change - committed_at

    with live_workers(settings, ["feed"]), psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
        quiet = min(counts, key=lambda u: (abs(counts[u] - 3), str(u)))
        reach(*celebrity_post(conn, quiet), timeout_s=120)  # the worker has joined and runs
        for wanted in config.fanout_followers:
            author = min(counts, key=lambda u: (abs(counts[u] - wanted), str(u)))
            followers = conn.execute("SELECT count(*) FROM follows WHERE followee_id = %s", (author,)).fetchone()
            writes, seconds = reach(*celebrity_post(conn, author))
            row = {"followers": int(followers[0]) if followers else 0, "feed_writes": writes,
                   "seconds_to_every_feed": seconds}
            results.fanout.append(row)
            say(f"== fan-out: author with {row['followers']} followers -> {writes} feed items in {seconds:.1f}s")
    feed.close()


def drills(config: BenchConfig, results: Results, say: Say) -> None:
    """On a stack of their own with a small population, every projection live from the start (the
    big run's stores were filled by separate benchmark groups, so only a fresh stack can be verified
    whole in reasonable time against the Cosmos REST server)."""
    names = list(PROJECTIONS)
    settings = bench_settings(Path(tempfile.mkdtemp(prefix="projectors-drills-", dir="/tmp")))
    local.up(settings, local.ORDER, say=lambda _l: None)
    stop = threading.Event()
    try:
        with psycopg.connect(settings.pg.conninfo()) as conn:
            population = seed(conn, 300, 1, min(100, config.celebrity_followers), random.Random(config.seed_value))

        def load() -> None:
            while not stop.is_set():
                steady(settings.pg.conninfo(), population, config.drill_rate, 2.0, random.Random())

        writer = threading.Thread(target=load, daemon=True)
        writer.start()
        try:
            time.sleep(5.0)
            worker = PART_CLASSES["worker-graph"](settings)
            pid = worker.pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            worker.pid_file.unlink(missing_ok=True)
            worker.start(60)
            results.drills.append({"drill": "SIGKILL the graph worker mid-stream, restart it"})
            say("== drill: graph worker killed (SIGKILL) and restarted")
            falkor = PART_CLASSES["falkordb"](settings)
            falkor_pid = falkor.pid()
            assert falkor_pid is not None
            os.kill(falkor_pid, signal.SIGSTOP)
            time.sleep(config.graph_stop_s)
            os.kill(falkor_pid, signal.SIGCONT)
            results.drills.append({"drill": f"graph store stopped (SIGSTOP) for {config.graph_stop_s:.0f}s"})
            say(f"== drill: FalkorDB stopped for {config.graph_stop_s:.0f}s")
            capture = PART_CLASSES["capture"](settings)
            capture.stop()
            capture.start(120)
            results.drills.append({"drill": "capture restarted under load"})
            say("== drill: capture restarted under load")
            send_poison(settings, config.poison_events)
            results.drills.append({"drill": f"{config.poison_events} poison events among good ones"})
            say(f"== drill: {config.poison_events} poison events sent among the good ones")
            time.sleep(3.0)
        finally:
            stop.set()
            writer.join()
        started = time.monotonic()
        verdicts = verify_until_clean(settings, names, open_raw_store, wait_s=config.verify_wait_s)
        seconds = time.monotonic() - started
        letters = {n: count_letters(settings, n) for n in names}
    finally:
        local.down(settings, local.ORDER, say=lambda _l: None)
    drift = {v.projection: v.total for v in verdicts}
    for d in results.drills:
        d["drift_after"] = drift
        d["verify_seconds"] = seconds
    results.drills[-1]["dead_letters"] = letters
    results.drills[-1]["expected_dead_letters"] = dict.fromkeys(names, config.poison_events)
    say("== drills verified: drift " + ", ".join(f"{k} {v}" for k, v in drift.items())
        + f" after {seconds:.0f}s; dead letters " + ", ".join(f"{k} {v}" for k, v in letters.items()))


def send_poison(settings: Settings, count: int) -> None:
    producer = Producer(settings.kafka.client_config())
    topic = f"{settings.capture.topic_prefix}.public.posts"
    for i in range(count):
        producer.produce(topic, key=f"poison-{i}".encode(), value=b"{not json" if i % 2 else b'{"op": "x"}')
    producer.flush(30)


def count_letters(settings: Settings, name: str) -> int:
    topic = dead_letter_topic(settings, name)
    try:
        return bare_consume(settings, [topic], 10**12, idle_s=2.0, start_timeout_s=3.0).events
    except ValueError:  # no such topic yet
        return 0


# -- the whole run ----------------------------------------------------------------------------------
def run(config: BenchConfig, out_dir: Path, say: Say = print) -> Results:
    out_dir.mkdir(parents=True, exist_ok=True)
    results = Results(config=asdict(config))
    results.conditions = {
        "cpus": os.cpu_count(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": os.getloadavg(),
    }
    root = Path(tempfile.mkdtemp(prefix="projectors-bench-", dir="/tmp"))
    settings = bench_settings(root)
    say(f"== stack in {root}")
    local.up(settings, local.SERVERS, say=say)
    try:
        rng = random.Random(config.seed_value)
        with psycopg.connect(settings.pg.conninfo()) as conn:
            started = time.monotonic()
            population = seed(conn, config.users, config.celebrities, config.celebrity_followers, rng)
            seeded = time.monotonic() - started
            started = time.monotonic()
            counts = bulk(conn, population, config.events, rng)
            bulked = time.monotonic() - started
        rows = sum(population.seeded.values()) + sum(counts.values())
        results.load = {"seed_rows": dict(population.seeded), "seed_s": seeded, "bulk_rows": dict(counts),
                        "bulk_s": bulked, "rows": rows}
        say(f"== load: {rows} rows ({sum(population.seeded.values())} seeded in {seeded:.1f}s, "
            f"{sum(counts.values())} more in {bulked:.1f}s)")
        every_topic = sorted({t for n in PROJECTIONS for t in topics_of(settings, n)})
        results.load["topic_events"] = count_events(settings, every_topic, rows, say)
        if "throughput" in config.phases:
            throughput(settings, config, results, say)
        if "rebuild" in config.phases and config.rebuild_events > results.load["topic_events"]:
            with psycopg.connect(settings.pg.conninfo()) as conn:
                more = bulk(conn, population, config.rebuild_events - results.load["topic_events"], rng)
            results.load["rebuild_topic_events"] = count_events(
                settings, every_topic, results.load["topic_events"] + sum(more.values()), say)
        if "rebuild" in config.phases:
            rebuild_times(settings, config, results, say)
        if "lag" in config.phases:
            lag(settings, config, population, results, say)
        if "fanout" in config.phases:
            fanout(settings, config, population, results, say)
    finally:
        local.down(settings, local.ORDER, say=lambda _l: None)
    if "drills" in config.phases:
        drills(config, results, say)
    write_reports(results, out_dir)
    say(f"== wrote {out_dir / 'results.md'}, results.json, results.png")
    return results


def write_reports(results: Results, out_dir: Path) -> None:
    (out_dir / "results.json").write_text(json.dumps(asdict(results), indent=2, default=str))
    (out_dir / "results.md").write_text(markdown(results))
    chart(results, out_dir / "results.png")


def _f(value: Any, digits: int = 0) -> str:
    if not value:
        return "-"  # not measured, or too few events to time
    return f"{value:,.{digits}f}"


def markdown(r: Results) -> str:
    lines = [
        "# projectors bench", "",
        f"Run {r.conditions.get('started')} on {r.conditions.get('cpus')} CPUs (load average at start "
        f"{', '.join(f'{x:.1f}' for x in r.conditions.get('load_average', ()))}); "
        f"{r.load.get('topic_events', 0):,} events in the topics; local stack (PostgreSQL, Tansu, FalkorDB, "
        "Cosmos REST server, SQLite FTS5).", "",
        "## Throughput (events/s; ratios in the same run)", "",
        "| projection | topic events | bare consumer | bare faust | worker, null store | worker, real store | "
        "store ops/s (worker) | store client alone ops/s | null ÷ faust | worker ÷ store alone | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, t in r.throughput.items():
        real, null, raw = t["real_store"], t["null_store"], t["raw_store"]
        lines.append(
            f"| {name} | {t['topic_events']:,} | {_f(t['bare_consume_per_s'])} | {_f(t['bare_faust_per_s'])} | "
            f"{_f(null['events_per_s'])} | {_f(real['events_per_s'])}{'' if real['complete'] else ' (partial)'} | "
            f"{_f(real['ops_per_s'])} | {_f(raw['ops_per_s'])} | {_f(t['ratio_null_vs_faust'], 2)} | "
            f"{_f(t['ratio_ops_vs_raw_store'], 2)} | {_f(max(real['peak_rss_mb'], null['peak_rss_mb']))} |"
        )
    lines += ["", "## Where a worker's time goes (real store, share of wall time)", "",
              "| projection | " + " | ".join(STAGES) + " |", "|---|" + "---|" * len(STAGES)]
    for name, t in r.throughput.items():
        shares = stage_shares(t["real_store"])
        lines.append(f"| {name} | " + " | ".join(f"{shares.get(s, 0.0):.0%}" for s in STAGES) + " |")
    lines += ["", "## CPU per event (µs, from the first batch on)", "",
              "The stage timers are wall time in the batch thread, which runs while faust fetches the next "
              "batch; CPU time says who is busy. A worker is one Python process: faust, aiokafka and the "
              "batches share one core (the GIL).", "",
              "| projection | store | process busy (of a core) | whole process | projector's code | "
              "faust + aiokafka + loop | bare faust agent |",
              "|---|---|---|---|---|---|---|"]
    for name, t in r.throughput.items():
        for label in ("null_store", "real_store"):
            run = t[label]
            if not run.get("cpu_us_per_event"):
                continue
            rest = run["cpu_us_per_event"] - run["own_cpu_us_per_event"]
            lines.append(f"| {name} | {label.split('_')[0]} | {run['cpu_share']:.0%} | {run['cpu_us_per_event']:.0f} | "
                         f"{run['own_cpu_us_per_event']:.0f} | {rest:.0f} | "
                         f"{_f(t.get('bare_faust_cpu_us_per_event'))} |")
    lines += ["", "## Rebuild (build phase)", "", "| projection | events | seconds | events/s |", "|---|---|---|---|"]
    for name, b in r.rebuild.items():
        lines.append(f"| {name} | {b['events']:,} | {b['seconds']:.1f} | {_f(b['events_per_s'])} |")
    lines += ["", "## Lag: PostgreSQL COMMIT -> visible (ms)", "",
              "| writes/s (achieved) | store | n | p50 | p95 | p99 | max |", "|---|---|---|---|---|---|---|"]
    for rate, stores in r.lag.items():
        achieved = stores.get("writer", {}).get("achieved_per_s", 0)
        for store, p in stores.items():
            if store == "writer" or not p.get("n"):
                continue
            lines.append(f"| {rate} ({achieved:.0f}) | {store} | {p['n']:.0f} | {p['p50'] * 1000:.0f} | "
                         f"{p['p95'] * 1000:.0f} | {p['p99'] * 1000:.0f} | {p['max'] * 1000:.0f} |")
    if r.lag_batches:
        lines += ["", "The workers' batches during those runs (ms per batch, wall time in the batch thread):", "",
                  "| writes/s | worker | batches | events per batch | " + " | ".join(BATCH_STAGES) + " |",
                  "|---|---|---|---|" + "---|" * len(BATCH_STAGES)]
        for rate, workers in r.lag_batches.items():
            for name, b in workers.items():
                ms = b["stage_ms_per_batch"]
                lines.append(f"| {rate} | {name} | {b['batches']} | {b['events_per_batch']:.0f} | "
                             + " | ".join(f"{ms.get(stage, 0.0):.1f}" for stage in BATCH_STAGES) + " |")
    lines += ["", "## Fan-out (feed)", "", "| followers | feed writes | seconds until every feed has it |",
              "|---|---|---|"]
    for f in r.fanout:
        lines.append(f"| {f['followers']:,} | {f['feed_writes']:,} | {f['seconds_to_every_feed']:.1f} |")
    lines += ["", "## Fault drills (each under load, then `verify`)", ""]
    for d in r.drills:
        lines.append(f"- {d['drill']}: drift after {d.get('drift_after')}"
                     + (f"; dead letters {d['dead_letters']} (expected {d['expected_dead_letters']})"
                        if "dead_letters" in d else ""))
    return not_run_sections("\n".join(lines) + "\n", set(r.config.get("phases", PHASES)))


SECTION_PHASE = {"Throughput": "throughput", "Where a worker": "throughput", "CPU per event": "throughput",
                 "Rebuild": "rebuild", "Lag": "lag", "Fan-out": "fanout", "Fault drills": "drills"}


def not_run_sections(text: str, ran: set[str]) -> str:
    """Each section of a phase this run left out (``--phases``) says so instead of an empty table."""
    head, *sections = text.split("\n## ")
    out = [head]
    for section in sections:
        title = section.split("\n", 1)[0]
        phase = next((p for prefix, p in SECTION_PHASE.items() if title.startswith(prefix)), None)
        out.append(section if phase is None or phase in ran else f"{title}\n\nNot run (`--phases`).\n")
    return "\n## ".join(out)


STAGES = ("poll+commit (faust)", *BATCH_STAGES)


def stage_shares(run: dict[str, Any]) -> dict[str, float]:
    stages = dict(run["stages_s"])
    wall = max(0.001, float(run["seconds"]), sum(stages.values()))
    stages["poll+commit (faust)"] = max(0.0, wall - sum(stages.values()))
    return {k: v / wall for k, v in stages.items()}


def chart(r: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    names = list(r.throughput)
    series = [("bare consumer", "bare_consume_per_s"), ("bare faust", "bare_faust_per_s"),
              ("worker, null store", None), ("worker, real store", None)]
    width = 0.2
    for i, (label, key) in enumerate(series):
        values = []
        for n in names:
            t = r.throughput[n]
            if key:
                values.append(t[key])
            else:
                values.append(t["null_store" if "null" in label else "real_store"]["events_per_s"])
        left.bar([x + i * width for x in range(len(names))], values, width, label=label)
    left.set_xticks([x + 1.5 * width for x in range(len(names))], names)
    left.set_yscale("log")
    left.set_ylabel("events/s (log)")
    left.set_title("Throughput, same topics, same run")
    left.legend(fontsize=8)
    labels, p50, p99 = [], [], []
    for rate, stores in r.lag.items():
        for store, p in stores.items():
            if store != "writer" and p.get("n"):
                labels.append(f"{store}\n{rate}/s")
                p50.append(p["p50"] * 1000)
                p99.append(p["p99"] * 1000)
    xs = range(len(labels))
    right.bar([x - 0.2 for x in xs], p50, 0.4, label="p50")
    right.bar([x + 0.2 for x in xs], p99, 0.4, label="p99")
    right.set_xticks(list(xs), labels)
    right.set_ylabel("ms")
    right.set_title("COMMIT -> visible")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
