"""Lag: PostgreSQL COMMIT -> visible in the graph and the search index, under steady writes, and
where each change's time went: the workers run with their batch clock on (``runtime/clock.py``)."""

from __future__ import annotations

import random
import threading
import time

from projectors.bench.config import BenchConfig, Say
from projectors.bench.private_stack import live_workers
from projectors.bench.report import LAG_STAGES, TOTAL, LagRun, Percentiles, Results, WriterRate
from projectors.bench.worker_runs import batch_profile, worker_totals
from projectors.runtime.clock import read_clock
from projectors.settings import Settings
from projectors.stores.factory import open_raw_store
from projectors.workload import Population, steady

PROBE_S = 0.01  # the prober's pause between two looks at the stores


class Prober:
    """Polls the graph and the search index for posts committed in PostgreSQL; records commit ->
    visible for each (a look at both stores every ``PROBE_S`` plus the queries' time)."""

    def __init__(self, settings: Settings) -> None:
        self.pending: dict[str, dict[str, float]] = {"graph": {}, "search": {}}
        self.latencies: dict[str, list[float]] = {"graph": [], "search": []}
        self.visible: dict[str, dict[str, float]] = {"graph": {}, "search": {}}  # post id -> first seen
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
            rows = self.graph.transport.run("MATCH (p:Post) WHERE p.id IN $ids RETURN p.id AS id", {"ids": ids})  # type: ignore[attr-defined]
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
                        self.visible[store][post_id] = now
            time.sleep(PROBE_S)

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


def percentiles(values: list[float]) -> Percentiles:
    if not values:
        return Percentiles(n=0)
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return Percentiles(n=len(ordered), p50=at(0.50), p95=at(0.95), p99=at(0.99), max=ordered[-1])


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
        for seen in prober.visible.values():
            seen.clear()
        for waiting in prober.pending.values():
            waiting.clear()


def stage_times(clocked: dict[str, list[float | None]], visible: dict[str, float]) -> dict[str, Percentiles]:
    """Each stage's time per change (the posts both clocked by the worker and seen by the prober)."""
    spans: dict[str, list[float]] = {stage: [] for stage in (*LAG_STAGES, TOTAL)}
    for post_id, seen in visible.items():
        times = clocked.get(post_id)
        if times is None:
            continue
        marks = [*times, seen]
        for stage, start, end in zip(LAG_STAGES, marks, marks[1:], strict=False):
            if start is not None and end is not None:
                spans[stage].append(max(0.0, end - start))
        if marks[0] is not None:
            spans[TOTAL].append(max(0.0, seen - marks[0]))
    return {stage: percentiles(values) for stage, values in spans.items()}


def lag(settings: Settings, config: BenchConfig, population: Population, results: Results, say: Say) -> None:
    stores = ("graph", "search")
    # the workers' shipped hand-over (the bench stack's 0.2 s batches for throughput would double it)
    within = type(settings.worker).model_fields["batch_within_s"].default
    settings = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"clock": True, "batch_within_s": within})})
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
            results.lag[str(rate)] = LagRun(
                stores={store: percentiles(v) for store, v in prober.latencies.items()},
                writer=WriterRate(achieved_per_s=report.achieved_rate, target_per_s=rate),
            )
            results.lag_stages[str(rate)] = {
                store: stage_times(read_clock(settings, store), prober.visible[store]) for store in stores
            }
            for store in stores:
                p = results.lag[str(rate)].stores[store]
                b = results.lag_batches[str(rate)][store]
                say(f"== lag at {rate} writes/s ({report.achieved_rate:.0f} achieved), {store}: n {p.n:.0f}, "
                    + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in p.figures().items())
                    + f"; {b.batches} batches of {b.events_per_batch:.0f} events, ms per batch: "
                    + ", ".join(f"{k} {v:.1f}" for k, v in b.stage_ms_per_batch.items()))
                stages = results.lag_stages[str(rate)][store]
                say("   stages p50/p99 ms: " + ", ".join(
                    f"{k} {v.p50 * 1000:.0f}/{(v.p99 or 0) * 1000:.0f}"
                    for k, v in stages.items() if v.p50 is not None))
