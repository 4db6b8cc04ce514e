"""``projectors bench-reads``: what each `ReadClient` call costs as the stores grow, on a private
local stack (figures printed and written to ``reads-results.json`` / ``reads-results.md``, never a
timed assertion).

The stack is seeded twice (``sizes``: users, with power-law followers and about three posts each),
each time waiting for the pipeline (capture, then every consumer group; no store read); after each
seed every call runs ``calls`` times for users of the *first* seed (the same pages, so the answer
does not grow, the store does): p50/p99 in ms and the Cosmos requests per call, counted by the local
Cosmos server itself. At the larger size the calls run once more while a writer changes the source
at ``write_rate`` operations/s (the workers writing meanwhile). The ratio large ÷ small of each
call's p50 is the figure that matters: a read whose cost follows the answer, not the store, stays
near 1. Each call is timed over the HTTP read API too (the stack's ``reader`` part, one kept-alive
connection, the same arguments): ``http_p50_ms`` and the ratio HTTP ÷ in-process at p50.

``feed_page`` reads the feed's Cosmos containers only (no first pages from Redis, in-process and over
HTTP); ``feed_page_redis`` is the same first page answered from Redis (``bench/reads_redis.py``: the
pages are asked for and held before the timing, every timed answer is checked to come from Redis, a
sample is compared with Cosmos's), and ``redis_vs_cosmos`` holds the ratios Redis ÷ Cosmos.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg

from projectors.bench.feed import server_requests
from projectors.bench.private_stack import bench_settings
from projectors.bench.reads_redis import (
    HotFeed,
    PagesReader,
    cosmos_only,
    hits_in_process,
    hits_over_http,
    pages_reader_settings,
    settled_mismatches,
)
from projectors.operations.caught_up import wait_for_pipeline
from projectors.projections import PROJECTIONS
from projectors.projections import projection as get_projection
from projectors.read.client import ReadClient
from projectors.settings import Settings
from projectors.source import PostgresSource
from projectors.stack import local
from projectors.workload import Population, seed, steady

Say = Callable[[str], None]
# feed_page_redis last: the calls before it draw the same users as before it was added
CALLS = ("feed_page", "counters", "suggestions", "search", "notifications", "unread_count", "feed_page_redis")
CALL_PROJECTION = {"feed_page": "feed", "feed_page_redis": "redis", "counters": "counters", "suggestions": "graph",
                   "search": "search", "notifications": "notifications", "unread_count": "notifications"}
ALSO_NEEDS = {"feed_page_redis": "feed"}  # Redis's pages are compared with the feed store's
BENCH_STORE_TIMEOUT_S = 120.0
CONCURRENT_CLIENTS = 50


@dataclass(frozen=True)
class ReadsBenchConfig:
    sizes: tuple[int, int] = (1_000, 10_000)  # users seeded first, then added
    calls: int = 200  # of each kind, per measurement
    write_rate: float = 50.0  # source operations/s while the calls run under writes
    pipeline_wait_s: float = 1800.0
    seed_value: int = 23
    measured: tuple[str, ...] = CALLS  # the calls measured; only their projections' workers run

    @property
    def projections(self) -> list[str]:
        needed = {CALL_PROJECTION[c] for c in self.measured} | {ALSO_NEEDS[c] for c in self.measured if c in ALSO_NEEDS}
        return [p for p in PROJECTIONS if p in needed]


TINY = ReadsBenchConfig(sizes=(30, 120), calls=10, write_rate=5.0, pipeline_wait_s=600.0)


@dataclass
class ReadsResults:
    config: dict[str, Any]
    conditions: dict[str, Any] = field(default_factory=dict)
    stores: dict[str, dict[str, int]] = field(default_factory=dict)  # size label -> items per store
    calls: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # label -> call -> figures
    ratios: dict[str, float] = field(default_factory=dict)  # call -> p50 large / p50 small
    # the HTTP read API under CONCURRENT_CLIENTS clients (each its own connection) at the large size
    concurrent: dict[str, float] = field(default_factory=dict)
    # label -> feed_page_redis ÷ feed_page: p50, p99, and the same over HTTP
    redis_vs_cosmos: dict[str, dict[str, float]] = field(default_factory=dict)
    # Redis's pages against Cosmos's once the writes stopped and the pipeline caught up
    settled: dict[str, float] = field(default_factory=dict)


def store_items(settings: Settings, projections: list[str]) -> dict[str, int]:
    """Items each projection holds by its spec (read from PostgreSQL: no store is scanned)."""
    out = {}
    with psycopg.connect(settings.pg.conninfo()) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        for name in projections:
            out[name] = sum(1 for _ in get_projection(name, settings).spec_all(PostgresSource(conn)))
    return out


def total_requests(served: dict[str, dict[str, int]]) -> int:
    """Requests the local Cosmos server served (``batch_items`` counts items inside batches)."""
    return sum(n for kinds in served.values() for kind, n in kinds.items() if kind != "batch_items")


def measure(
    settings: Settings, population: Population, config: ReadsBenchConfig, rng: random.Random, quiet: bool = True,
    pages: Settings | None = None,
) -> dict[str, dict[str, float]]:
    """Each call ``config.calls`` times. ``quiet``: nothing else uses the Cosmos server, so its
    request count is the calls' (under writes the workers' requests are counted too: left out).
    ``pages``: the settings of the HTTP reader that answers first pages from Redis (``PagesReader``)."""
    users = [str(u) for u in population.users]
    posts = [str(p) for p in population.posts]
    client = ReadClient(cosmos_only(patient(settings)))
    api = http.client.HTTPConnection(settings.read.api_host, settings.read.api_port, timeout=BENCH_STORE_TIMEOUT_S)
    redis_http = pages or settings
    # the users whose first pages are timed from Redis: the same at each measurement
    timed_users = random.Random(config.seed_value).sample(users, min(config.calls, len(users)))
    hot = HotFeed(patient(settings), redis_http, timed_users if "feed_page_redis" in config.measured else [])
    apis = {"feed_page_redis": http.client.HTTPConnection(redis_http.read.api_host, redis_http.read.api_port,
                                                          timeout=BENCH_STORE_TIMEOUT_S)}

    def subjects() -> list[str]:  # 20: 10 users and 10 posts
        return rng.sample(users, min(10, len(users))) + rng.sample(posts, min(10, len(posts)))

    words = ("stream", "graph", "kafka", "cosmos")
    # each call in-process, and the same call over HTTP (path and query)
    calls: dict[str, tuple[Callable[[], Any], Callable[[], str]]] = {
        "feed_page": (lambda: client.feed_page(rng.choice(users), limit=50),
                      lambda: f"/v1/users/{rng.choice(users)}/feed?limit=50"),
        "counters": (lambda: client.counters(subjects()),
                     lambda: "/v1/counters?" + urlencode({"ids": subjects()}, doseq=True)),
        "suggestions": (lambda: client.suggestions(rng.choice(users), limit=10),
                        lambda: f"/v1/users/{rng.choice(users)}/suggestions?limit=10"),
        "search": (lambda: client.search("posts", rng.choice(words), limit=20),
                   lambda: f"/v1/search/posts?q={rng.choice(words)}&limit=20"),
        "notifications": (lambda: client.notifications(rng.choice(users), limit=20),
                          lambda: f"/v1/users/{rng.choice(users)}/notifications?limit=20"),
        "unread_count": (lambda: client.unread_count(rng.choice(users)),
                         lambda: f"/v1/users/{rng.choice(users)}/notifications/unread-count"),
        "feed_page_redis": (partial(hot.call, rng), partial(hot.path, rng)),
    }

    def over_http_of(path: Callable[[], str], conn: http.client.HTTPConnection) -> None:
        over_http(path(), conn)

    def over_http(path: str, conn: http.client.HTTPConnection) -> None:
        try:
            conn.request("GET", path)
            answer = conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            # the server closed the idle kept-alive connection (uvicorn: after 5 s): a new one
            conn.close()
            conn.request("GET", path)
            answer = conn.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"GET {path}: {answer.status} {body[:300]!r}")

    out: dict[str, dict[str, float]] = {}
    try:
        for name, (call, path) in calls.items():
            if name not in config.measured:
                continue
            conn = apis.get(name, api)
            warmed = hot.warm() if name == "feed_page_redis" else {}
            call()  # connections and generation pointers are set up before the timing
            over_http(path(), conn)
            before = server_requests(settings)
            fallbacks = sum(client.fallbacks.values()) + sum(hot.client.fallbacks.values())
            hits = hits_in_process()
            times = timed(call, config.calls)
            hits = hits_in_process() - hits
            after = server_requests(settings)
            requests = total_requests(after) - total_requests(before)
            over_http(path(), conn)  # the kept-alive connection is open again before the timing
            web_hits = hits_over_http(redis_http) if name == "feed_page_redis" else 0.0
            web = timed(partial(over_http_of, path, conn), config.calls)
            out[name] = {
                "p50_ms": statistics.median(times),
                "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
                "http_p50_ms": statistics.median(web),
                "http_p99_ms": web[min(len(web) - 1, int(len(web) * 0.99))],
                "cosmos_requests_per_call": requests / config.calls if quiet else -1.0,
                "fallbacks": sum(client.fallbacks.values()) + sum(hot.client.fallbacks.values()) - fallbacks,
            }
            if name == "feed_page_redis":  # every timed answer from Redis, and Redis's equal to Cosmos's
                compared, items, differ = hot.mismatches(client, rng)
                out[name].update(warmed, from_redis=hits / config.calls, compared=compared, mismatches=differ,
                                 compared_items=items,
                                 http_from_redis=(hits_over_http(redis_http) - web_hits) / config.calls)
    finally:
        client.close()
        hot.close()
        api.close()
        for conn in apis.values():
            conn.close()
    return out


def concurrent_feeds(settings: Settings, population: Population, seconds: float) -> dict[str, float]:
    """Feed pages (limit 20) over HTTP from CONCURRENT_CLIENTS threads, each with its own kept-alive
    connection, for ``seconds``: requests/s and the latency p50 across all of them."""
    users = [str(u) for u in population.users]
    stop = time.monotonic() + seconds
    times: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        api = http.client.HTTPConnection(settings.read.api_host, settings.read.api_port, timeout=BENCH_STORE_TIMEOUT_S)
        mine = []
        try:
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    api.request("GET", f"/v1/users/{rng.choice(users)}/feed?limit=20")
                    answer = api.getresponse()
                    answer.read()
                    ok = answer.status == 200
                except (OSError, http.client.HTTPException):
                    api.close()
                    ok = False
                if ok:
                    mine.append((time.perf_counter() - started) * 1000)
                else:
                    with lock:
                        errors[0] += 1
        finally:
            api.close()
            with lock:
                times.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CONCURRENT_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return {"clients": CONCURRENT_CLIENTS, "seconds": elapsed, "requests_s": len(times) / elapsed,
            "p50_ms": statistics.median(times) if times else 0.0, "errors": float(errors[0])}


def timed(call: Callable[[], Any], times: int) -> list[float]:
    """Milliseconds of each of ``times`` calls, sorted."""
    out = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return sorted(out)


def patient(settings: Settings) -> Settings:
    """The bench times the stores: a slow answer on a loaded machine is a figure, not a fallback."""
    read = settings.read.model_copy(update={"store_timeout_s": BENCH_STORE_TIMEOUT_S})
    return settings.model_copy(update={"read": read})


def run(config: ReadsBenchConfig, out_dir: Path, say: Say = print) -> ReadsResults:
    out_dir.mkdir(parents=True, exist_ok=True)
    results = ReadsResults(config=asdict(config))
    results.conditions = {"cpus": os.cpu_count(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          "load_average": os.getloadavg()}
    root = Path(tempfile.mkdtemp(prefix="projectors-readsbench-", dir="/tmp"))
    settings = bench_settings(root)
    rng = random.Random(config.seed_value)
    say(f"== stack in {root}")
    # first pages from Redis over HTTP: a second reader with the default page size
    pages = pages_reader_settings(patient(settings)) if "feed_page_redis" in config.measured else None
    try:
        workers = tuple(f"worker-{p}" for p in config.projections)
        local.up(settings, local.SERVERS + workers, say=say)
        # the HTTP read API, as patient as the client, reading the feed's Cosmos containers only
        local.up(cosmos_only(patient(settings)), local.READERS, say=say)
        if pages is not None:
            PagesReader(pages).start(settings.stack.start_timeout_s)
        first: Population | None = None
        added = 0
        for label, users in zip(("small", "large"), config.sizes, strict=True):
            with psycopg.connect(settings.pg.conninfo()) as conn:
                population = seed(conn, users - added, 1, min(users - added - 1, max(10, (users - added) // 10)), rng)
            added = users
            first = first or population
            started = time.monotonic()
            wait_for_pipeline(settings, config.projections, time.monotonic() + config.pipeline_wait_s)
            results.stores[label] = store_items(settings, config.projections)
            say(f"== {label}: {users} users, stores hold {results.stores[label]} "
                f"(pipeline caught up in {time.monotonic() - started:.0f}s)")
            results.calls[label] = measure(settings, first, config, rng, pages=pages)
            for call, figures in results.calls[label].items():
                say(f"   {call}: p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
                    f"{figures['cosmos_requests_per_call']:.1f} Cosmos requests/call; over HTTP p50 "
                    f"{figures['http_p50_ms']:.1f} ms, p99 {figures['http_p99_ms']:.1f} ms")
        assert first is not None
        writer = threading.Thread(target=steady, args=(settings.pg.conninfo(), first, config.write_rate,
                                                        max(10.0, config.calls * 0.2), random.Random(5)))
        writer.start()
        try:
            results.calls["large, under writes"] = measure(settings, first, config, rng, quiet=False, pages=pages)
        finally:
            writer.join()
        for call, figures in results.calls["large, under writes"].items():
            say(f"   under writes, {call}: p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms")
        if pages is not None:
            wait_for_pipeline(settings, config.projections, time.monotonic() + config.pipeline_wait_s)
            results.settled = settled_mismatches(patient(settings), [str(u) for u in first.users], rng)
            say(f"== after the writes, caught up: {results.settled['mismatches']:.0f} of "
                f"{results.settled['compared']:.0f} Redis pages differ from Cosmos's")
        for call in config.measured:
            small, large = results.calls["small"][call]["p50_ms"], results.calls["large"][call]["p50_ms"]
            results.ratios[call] = large / small if small else 0.0
        say("== p50 large / small: " + ", ".join(f"{c} {r:.2f}" for c, r in results.ratios.items()))
        results.redis_vs_cosmos = redis_vs_cosmos(results.calls)
        for label, r in results.redis_vs_cosmos.items():
            hot = results.calls[label]["feed_page_redis"]
            say(f"== first feed page, Redis ÷ Cosmos, {label}: p50 {r['p50']:.3f}, p99 {r['p99']:.3f}; over HTTP "
                f"p50 {r['http_p50']:.3f}, p99 {r['http_p99']:.3f}; from Redis {hot['from_redis']:.0%} "
                f"(HTTP {hot['http_from_redis']:.0%}); {hot['mismatches']:.0f} of {hot['compared']:.0f} pages "
                "differ from Cosmos's")
        results.concurrent = concurrent_feeds(settings, first, max(3.0, config.calls * 0.1))
        say(f"== {CONCURRENT_CLIENTS} concurrent HTTP clients, feed pages: {results.concurrent['requests_s']:.0f} "
            f"requests/s, p50 {results.concurrent['p50_ms']:.0f} ms, errors {results.concurrent['errors']:.0f}")
    finally:
        if pages is not None:
            PagesReader(pages).stop()
        local.down(settings, local.ORDER, say=lambda _l: None)
    (out_dir / "reads-results.json").write_text(json.dumps(asdict(results), indent=2, default=str))
    (out_dir / "reads-results.md").write_text(markdown(results))
    say(f"== wrote {out_dir / 'reads-results.md'} and reads-results.json")
    return results


def redis_vs_cosmos(calls: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per measurement: ``feed_page_redis`` ÷ ``feed_page`` (Redis's first page ÷ Cosmos's)."""
    out = {}
    for label, figures in calls.items():
        if "feed_page" in figures and "feed_page_redis" in figures:
            cosmos, redis = figures["feed_page"], figures["feed_page_redis"]
            out[label] = {k.removesuffix("_ms"): redis[k] / cosmos[k] if cosmos[k] else 0.0
                          for k in ("p50_ms", "p99_ms", "http_p50_ms", "http_p99_ms")}
    return out


def markdown(r: ReadsResults) -> str:
    lines = ["# projectors bench-reads", "", f"Conditions: {json.dumps(r.conditions)}", "",
             "## Store sizes (items, by the spec)", "", "| size | " + " | ".join(PROJECTIONS) + " |",
             "|---|" + "---|" * len(PROJECTIONS)]
    for label, sizes in r.stores.items():
        # a projection this run did not project (``--calls``) is "-", not an empty store
        lines.append(f"| {label} | " + " | ".join(f"{sizes[n]:,}" if n in sizes else "-" for n in PROJECTIONS) + " |")
    lines += ["", "## Calls (in-process, and over the HTTP read API)", "",
              "| store size | call | p50 ms | p99 ms | HTTP p50 ms | HTTP p99 ms | HTTP ÷ in-process p50 "
              "| Cosmos requests/call | fallbacks |",
              "|---|---|---|---|---|---|---|---|---|"]
    for label, calls in r.calls.items():
        for call, f in calls.items():
            requests = f["cosmos_requests_per_call"]
            ratio = f["http_p50_ms"] / f["p50_ms"] if f["p50_ms"] else 0.0
            lines.append(f"| {label} | {call} | {f['p50_ms']:.1f} | {f['p99_ms']:.1f} | {f['http_p50_ms']:.1f} | "
                         f"{f['http_p99_ms']:.1f} | {ratio:.2f} | "
                         f"{'-' if requests < 0 else f'{requests:.1f}'} | {f['fallbacks']:.0f} |")
    lines += ["", "## p50 large ÷ small (goal ≤ 2)", "", "| call | ratio |", "|---|---|"]
    lines += [f"| {call} | {ratio:.2f} |" for call, ratio in r.ratios.items()]
    if r.redis_vs_cosmos:
        lines += ["", "## The feed's first page: Redis ÷ Cosmos (`feed_page_redis` ÷ `feed_page`)", "",
                  "| store size | p50 | p99 | HTTP p50 | HTTP p99 | from Redis (HTTP) "
                  "| pages differing from Cosmos's |",
                  "|---|---|---|---|---|---|---|"]
        for label, x in r.redis_vs_cosmos.items():
            hot = r.calls[label]["feed_page_redis"]
            lines.append(f"| {label} | {x['p50']:.3f} | {x['p99']:.3f} | {x['http_p50']:.3f} | {x['http_p99']:.3f} | "
                         f"{hot['from_redis']:.0%} ({hot['http_from_redis']:.0%}) | "
                         f"{hot['mismatches']:.0f} of {hot['compared']:.0f} |")
        if r.settled:
            lines += ["", f"After the writes, the pipeline caught up: {r.settled['mismatches']:.0f} of "
                          f"{r.settled['compared']:.0f} Redis pages differ from Cosmos's."]
    if r.concurrent:
        c = r.concurrent
        lines += ["", f"## HTTP read API, {c['clients']:.0f} concurrent clients (feed pages, large size)", "",
                  "| requests/s | p50 ms | errors |", "|---|---|---|",
                  f"| {c['requests_s']:.0f} | {c['p50_ms']:.0f} | {c['errors']:.0f} |"]
    return "\n".join(lines) + "\n"
