"""A projection worker run for the bench: the real worker in a group of its own, timed by the stats
it publishes; its CPU and memory from ``/proc``; the totals of the stack's running workers."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from projectors.bench.report import BatchProfile, WorkerRun
from projectors.runtime.stats import read_stats
from projectors.settings import Settings
from projectors.stack.commands import Worker


class BenchWorker(Worker):
    """``projectors.bench.worker``: the real worker in a group of its own, real or null store."""

    group = ""
    null_store = False

    def command(self) -> list[str]:
        flags = ["--null-store"] if self.null_store else []
        return [sys.executable, "-m", "projectors.bench.worker", self.projection, "--group", self.group, *flags]


def bench_worker(settings: Settings, projection: str, group: str, null_store: bool, index: int = 1) -> Worker:
    """A bench worker process; ``index`` tells apart the processes of one group."""
    cls = type("BenchWorker_" + projection, (BenchWorker,), {
        "projection": projection, "group": group, "null_store": null_store,
    })
    worker: Worker = cls(settings)
    worker.name = f"bench-{projection}-{'null' if null_store else 'store'}" + ("" if index == 1 else f"-{index}")
    return worker


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a worker and its projector process)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(child) for child in task.read_text().split()]
            except OSError:
                continue
    return out


def proc_texts(pid: int, name: str) -> list[str]:
    """``/proc/<member>/<name>`` of the process and each of its descendants still running."""
    texts = []
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            texts.append(Path(f"/proc/{member}/{name}").read_text())
    return texts


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds the process and its descendants used so far (0 when gone)."""
    fields = [stat.rsplit(")", 1)[1].split() for stat in proc_texts(pid, "stat")]
    return sum(int(f[11]) + int(f[12]) for f in fields) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of the process and its descendants, summed."""
    return sum(int(line.split()[1]) / 1024 for status in proc_texts(pid, "status")
               for line in status.splitlines() if line.startswith("VmHWM:"))


def run_worker_until(settings: Settings, part: Worker, expected: int, limit_s: float) -> WorkerRun:
    """Start ``part``, follow its published stats until ``expected`` events or ``limit_s`` after the
    first batch. Events/s count from the end of the first batch seen to the end of the last one, by
    the worker's own batch clock (``lastAppliedAt``), as the bare faust agent times itself: faust
    start, group join, the polling of the stats file and the worker's stop are all left out."""
    return run_workers_until(settings, [part], expected, limit_s)


def run_workers_until(settings: Settings, parts: list[Worker], expected: int, limit_s: float) -> WorkerRun:
    """:func:`run_worker_until` for the processes of one consumer group together: from the first
    batch any of them finished to the last one, counting every process's events after its own
    first batch (an event redelivered by a rebalance counts twice, as the store saw it twice)."""
    pids: list[int] = []
    firsts: dict[int, dict[str, Any]] = {}
    lasts: dict[int, dict[str, Any]] = {}
    cpu_at_first: dict[int, float] = {}
    cpu: dict[int, float] = {}
    rss = 0.0
    try:
        for part in parts:
            part.start(60)
            pid = part.pid()
            assert pid is not None
            pids.append(pid)
        deadline = time.monotonic() + limit_s + 120
        started = False
        while time.monotonic() < deadline:
            for stats in read_stats(settings, parts[0].projection):
                pid = int(stats["pid"])
                if pid not in pids:
                    continue
                lasts[pid] = stats
                if int(stats.get("events", 0)) and pid not in firsts:
                    firsts[pid] = dict(stats)
                    cpu_at_first[pid] = process_cpu_s(pid)
            if firsts and not started:
                started = True
                deadline = time.monotonic() + limit_s
            if sum(int(s.get("events", 0)) for s in lasts.values()) >= expected:
                break
            time.sleep(0.25)
        for pid in pids:
            rss = max(rss, peak_rss_mb(pid))
            cpu[pid] = process_cpu_s(pid)
    finally:
        for part in parts:
            part.stop()
    first = merged([firsts[p] for p in pids if p in firsts], earliest=True) if firsts else None
    last = merged([lasts[p] for p in pids if p in lasts], earliest=False)
    return worker_rate(first, last, sum(cpu[p] - cpu_at_first[p] for p in firsts), expected, rss)


def merged(samples: list[dict[str, Any]], earliest: bool) -> dict[str, Any]:
    """Several processes' stats as one: counts summed, the batch clock the earliest (a start) or
    the latest (an end) of them."""
    out: dict[str, Any] = {"stageSeconds": {}, "storeRequests": {}}
    for key in ("events", "operations", "batches", "cpuSeconds", "sourceQueries", "sourceRows"):
        out[key] = sum(float(s.get(key, 0)) for s in samples)
    stamps = [float(s.get("lastAppliedAt", 0.0)) for s in samples]
    out["lastAppliedAt"] = (min(stamps) if earliest else max(stamps)) if stamps else 0.0
    for field in ("stageSeconds", "storeRequests"):
        for s in samples:
            for k, v in s.get(field, {}).items():
                out[field][k] = out[field].get(k, 0.0) + float(v)
    return out


def worker_rate(
    first: dict[str, Any] | None, last: dict[str, Any], process_cpu_s: float, expected: int, rss_mb: float
) -> WorkerRun:
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
    return WorkerRun(
        events=done,
        complete=done >= expected,
        seconds=elapsed if timed else 0.0,
        events_per_s=counted / elapsed if timed else 0.0,
        operations=int(last.get("operations", 0)),
        batches=int(last.get("batches", 0)),
        ops_per_s=ops / elapsed if timed else 0.0,
        stages_s={k: float(v) - float(first.get("stageSeconds", {}).get(k, 0.0))
                  for k, v in last.get("stageSeconds", {}).items()},
        peak_rss_mb=rss_mb,
        source_queries_per_event=int(last.get("sourceQueries", 0)) / done if done else 0.0,
        source_rows_per_event=int(last.get("sourceRows", 0)) / done if done else 0.0,
        cpu_us_per_event=max(0.0, process_cpu_s) / counted * 1e6 if timed else 0.0,
        own_cpu_us_per_event=max(0.0, own_cpu) / counted * 1e6 if timed else 0.0,
        cpu_share=max(0.0, process_cpu_s) / elapsed if timed else 0.0,
        store_requests_per_event={kind: float(n) / done for kind, n in last.get("storeRequests", {}).items()}
        if done else {},
    )


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


def batch_profile(before: dict[str, Any], after: dict[str, Any]) -> BatchProfile:
    """What the workers' batches were like between two :func:`worker_totals`: their count, size, and
    milliseconds per batch in each stage (where commit -> visible goes once an event is fetched)."""
    batches = after["batches"] - before["batches"]
    per = max(1, batches)
    return BatchProfile(
        batches=batches,
        events_per_batch=(after["events"] - before["events"]) / per,
        stage_ms_per_batch={
            stage: (seconds - before["stageSeconds"].get(stage, 0.0)) * 1000 / per
            for stage, seconds in after["stageSeconds"].items()
        },
    )
