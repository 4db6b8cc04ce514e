"""`python -m projectors.bench.leaderboard --tiny`: the redis bench runs end to end on its own private
stack and prints every figure, the worker ÷ store pipeline ratio among them (the figures themselves
are benchmarks, never asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def test_the_redis_bench_runs_on_a_tiny_input() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTORS_")}
    done = subprocess.run([sys.executable, "-m", "projectors.bench.leaderboard", "--tiny"], env=env,
                          capture_output=True, text=True, timeout=1200, check=False)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    worker = re.search(r"worker, real Redis: ([\d,]+) events/s, ([\d,]+) store ops/s", out)
    store = re.search(r"store adapter alone \(pipelined version guard\): ([\d,]+) ops/s in batches of (\d+)", out)
    ratio = re.search(r"worker ÷ store: (\d+\.\d+)", out)
    assert worker and store and ratio, out
    assert all(float(g.replace(",", "")) > 0 for g in (*worker.groups(), *store.groups())), out
    assert float(ratio.group(1)) > 0, out
    apply = re.search(r"the worker's store stage ÷ store alone: (\d+\.\d+)", out)
    ceiling = re.search(r"bare faust agent on the same topics: ([\d,]+) events/s; .* ÷ store alone: (\d+\.\d+)", out)
    assert apply and ceiling and float(apply.group(1)) > 0 and float(ceiling.group(2)) > 0, out
    assert len(re.findall(r"posts \([\d,]+ Redis items\): Redis p50 [\d.]+ ms", out)) == 2, out
