"""Fault drills on a stack of their own, each under load, ending with ``verify`` at zero drift and
every poison event in the dead letters."""

from __future__ import annotations

import json
import os
import random
import signal
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from confluent_kafka import Producer

from projectors.bench.config import BenchConfig, Say
from projectors.bench.private_stack import bench_settings, count_letters
from projectors.bench.report import Drill, Results
from projectors.operations.verify import (
    verify_until_clean,
)
from projectors.projections import PROJECTIONS
from projectors.settings import Settings
from projectors.stack import local
from projectors.stack.processes import PART_CLASSES
from projectors.stores.factory import open_raw_store
from projectors.workload import seed, steady


def send_poison(settings: Settings, count: int) -> None:
    producer = Producer(settings.kafka.client_config())
    topic = f"{settings.capture.topic_prefix}.public.posts"
    for i in range(count):
        producer.produce(topic, key=f"poison-{i}".encode(), value=b"{not json" if i % 2 else b'{"op": "x"}')
    producer.flush(30)


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
            results.drills.append(Drill("SIGKILL the graph worker mid-stream, restart it"))
            say("== drill: graph worker killed (SIGKILL) and restarted")
            falkor = PART_CLASSES["falkordb"](settings)
            falkor_pid = falkor.pid()
            assert falkor_pid is not None
            os.kill(falkor_pid, signal.SIGSTOP)
            time.sleep(config.graph_stop_s)
            os.kill(falkor_pid, signal.SIGCONT)
            results.drills.append(Drill(f"graph store stopped (SIGSTOP) for {config.graph_stop_s:.0f}s"))
            say(f"== drill: FalkorDB stopped for {config.graph_stop_s:.0f}s")
            capture = PART_CLASSES["capture"](settings)
            capture.stop()
            capture.start(120)
            results.drills.append(Drill("capture restarted under load"))
            say("== drill: capture restarted under load")
            send_poison(settings, config.poison_events)
            results.drills.append(Drill(f"{config.poison_events} poison events among good ones"))
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
    for v in verdicts:
        if v.total:  # what stayed drifted, and whether the pipeline had caught up, to find out why
            caught = "?" if v.pipeline is None else f"caught up {v.pipeline.caught_up}, lag {v.pipeline.lag}"
            say(f"   {v.projection} drifted ({caught}), e.g. " + json.dumps(v.samples[:3], default=str)[:1500])
    for d in results.drills:
        d.drift_after = drift
        d.verify_seconds = seconds
    results.drills[-1].dead_letters = letters
    results.drills[-1].expected_dead_letters = dict.fromkeys(names, config.poison_events)
    say("== drills verified: drift " + ", ".join(f"{k} {v}" for k, v in drift.items())
        + f" after {seconds:.0f}s; dead letters " + ", ".join(f"{k} {v}" for k, v in letters.items()))
