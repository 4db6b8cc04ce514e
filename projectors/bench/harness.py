"""`projectors bench`: how fast, how far behind, how it breaks, on a private local stack.

Every figure is measured in one run on this machine, with its baseline taken in the same run:

- **throughput**: each projection's worker (faust agent, BatchProjector, its store) reading the
  topics from the beginning in a group of its own, against a bare confluent-kafka consumer and a bare
  faust agent that only counts, on the same topics; the same worker on a null store; each store
  client alone writing the projection's documents in batches of the size the worker wrote;
- **profile**: where the worker's time went (faust poll + commit, decode + validate, touched,
  plan (source reads), store apply, dead-letter flush), from the worker's own stage timers;
- **rebuild**: a rebuild's build phase (``operations/rebuild.py``) three ways on the same stack: the
  store's own bulk load of the projection's items (already in memory: the baseline), the build from
  the source's state (``operations/load.py``: the same items read from PostgreSQL while writing),
  and the replay of the topics from the beginning (``--from-topics``);
- **lag**: PostgreSQL COMMIT -> visible in the graph and the search index, p50/p95/p99, under
  steady source writes;
- **fan-out**: feed writes per post against its author's follower count, and the time until every
  feed has it;
- **memory**: peak RSS of each worker;
- **verify**: a full and an incremental verify of counters at two store sizes (seconds, items read,
  store requests), and a worker's throughput alone and beside full verifies;
- **fault drills**: SIGKILL a worker mid-batch, the graph store stopped, capture restarted, poison
  events among good ones, under load; each ends with ``verify`` at zero drift and every poison event
  in the dead letters.

Each phase is a module of this package: ``throughput`` (with the profile and memory),
``rebuild_times``, ``lag``, ``fanout``, ``verify_costs``, ``drills``; ``worker_runs`` runs and times a
worker, ``private_stack`` holds the stack's settings and shared steps, ``report`` the figures and
``render`` writes them: ``results.json``, ``results.md`` and ``results.png`` in the output folder.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
import traceback
from pathlib import Path

import psycopg

from projectors.bench import other_code
from projectors.bench.config import PHASES, TINY, BenchConfig, Say
from projectors.bench.drills import drills
from projectors.bench.fanout import fanout
from projectors.bench.lag import lag
from projectors.bench.private_stack import bench_settings, count_events
from projectors.bench.rebuild_times import rebuild_times
from projectors.bench.render import write_reports
from projectors.bench.report import Conditions, LoadFigures, Results
from projectors.bench.scale import scale
from projectors.bench.throughput import throughput
from projectors.bench.verify_costs import verify_costs
from projectors.projections import PROJECTIONS, descriptor
from projectors.stack import local
from projectors.workload import bulk, seed

__all__ = ["PHASES", "TINY", "BenchConfig", "Results", "run"]  # the command line's entry (`projectors bench`)


def run(config: BenchConfig, out_dir: Path, say: Say = print, before: str | None = None) -> Results:
    """Run the bench's phases; ``before``: every process the bench starts runs the code of that
    git revision instead (``other_code``), for a before/after pair from one invocation."""
    if before:
        with other_code.running(before):
            say(f"== the processes run the code of {before}")
            return run(config, out_dir, say)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = Results(config=config)
    results.conditions = Conditions(
        cpus=os.cpu_count(), started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), load_average=os.getloadavg()
    )
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
        results.load = LoadFigures(seed_rows=dict(population.seeded), seed_s=seeded, bulk_rows=dict(counts),
                                   bulk_s=bulked, rows=rows)
        say(f"== load: {rows} rows ({sum(population.seeded.values())} seeded in {seeded:.1f}s, "
            f"{sum(counts.values())} more in {bulked:.1f}s)")
        every_topic = sorted({t for n in PROJECTIONS for t in descriptor(n).topics(settings)})
        results.load.topic_events = count_events(settings, every_topic, rows, say)
        if "throughput" in config.phases:
            throughput(settings, config, results, say)
            write_reports(results, out_dir)
        if "scale" in config.phases:  # its real-store runs empty graph's and search's live stores (no later
            scale(settings, config, results, say)  # phase reads what they held: rebuild builds its own)
            write_reports(results, out_dir)
        if "rebuild" in config.phases and config.rebuild_events > results.load.topic_events:
            with psycopg.connect(settings.pg.conninfo()) as conn:
                more = bulk(conn, population, config.rebuild_events - results.load.topic_events, rng)
            results.load.rebuild_topic_events = count_events(
                settings, every_topic, results.load.topic_events + sum(more.values()), say)
        if "rebuild" in config.phases:
            rebuild_times(settings, config, results, say)
            write_reports(results, out_dir)
        if "lag" in config.phases:
            lag(settings, config, population, results, say)
            write_reports(results, out_dir)
        if "fanout" in config.phases:
            fanout(settings, config, population, results, say)
            write_reports(results, out_dir)
        if "verify" in config.phases:
            verify_costs(settings, config, population, results, say, lambda: write_reports(results, out_dir))
            write_reports(results, out_dir)
    except Exception:
        traceback.print_exc()  # where a phase failed, beside the one line the command prints
        raise
    finally:
        local.down(settings, local.ORDER, say=lambda _l: None)
    if "drills" in config.phases:
        drills(config, results, say)
    write_reports(results, out_dir)
    say(f"== wrote {out_dir / 'results.md'}, results.json, results.png")
    return results
