"""`projectors bench --tiny`: the harness runs end to end on a tiny input and reports every figure.

Only that it runs and what it reports: the figures themselves are benchmarks, never asserted."""

from __future__ import annotations

import json
from pathlib import Path

from projectors.bench.config import BenchConfig
from projectors.bench.render import markdown
from projectors.bench.report import BuildFigures, RebuildRun, Results
from projectors.bench.worker_runs import worker_rate
from tests.bench.harness_checks import assert_sections_run
from tests.conftest import cli


def test_the_harness_runs_on_a_tiny_input(tmp_path: Path) -> None:
    """The throughput and scale phases (``test_harness_state.py`` runs rebuild, lag, fan-out and
    verify beside it, and ``test_drills.py`` the drills, each on a stack of its own)."""
    done = cli("bench", "--tiny", "--phases", "throughput,scale", "--out", str(tmp_path), timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["throughput"]) == {"feed", "counters", "graph", "search"}
    for name, t in results["throughput"].items():
        assert t["topic_events"] > 0, name
        assert t["null_store"]["events"] > 0 and t["real_store"]["events"] > 0, (name, t)
        # every event counted by the bare faust agent (too few to time on a tiny input: its rate may be 0)
        assert t["bare_faust_events"] == t["topic_events"] and t["raw_store"]["operations"] > 0, (name, t)
        assert t["real_store"]["source_queries_per_event"] > 0 and t["real_store"]["source_rows_per_event"] > 0
        assert t["real_store"]["peak_rss_mb"] > 0 and "store apply" in t["real_store"]["stages_s"], (name, t)
    # one worker projecting in a thread, one in a child process, two workers in one group; null and real store
    scale = results["scale"]["graph"]
    for store in ("null", "real"):
        shapes = scale["runs"][store]
        assert len(shapes) == 3 and all(runs[0]["events"] >= scale["topic_events"] for runs in shapes.values()), shapes
    assert_sections_run((tmp_path / "results.md").read_text(), (
        "Throughput", "Where a worker's time goes", "The load on the source", "CPU per event", "Scaling a projection"))
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unknown_phase_stops_the_bench_before_any_stack_starts(tmp_path: Path) -> None:
    done = cli("bench", "--phases", "rebuild,speed", "--out", str(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--phases: unknown speed" in done.stderr and "throughput" in done.stderr
    assert not (tmp_path / "results.json").exists()


def test_a_phase_left_out_says_so_in_the_report() -> None:
    results = Results(config=BenchConfig(phases=("lag",)))
    build = BuildFigures(items=10, seconds=1.0, items_per_second=10, source_wait_seconds=0.1, store_seconds=0.9)
    results.rebuild["graph"] = RebuildRun(items=10, bulk_load=build, bulk_load_runs_s=[1.0], from_state_runs_s=[1.0],
                                          from_state=build, ratio_state_vs_bulk=1.0)
    report = markdown(results)
    sections = {part.split("\n", 1)[0]: part for part in report.split("\n## ")[1:]}
    assert sections["Rebuild (build phase)"].strip().endswith("Not run (`--phases`).")
    assert "| graph | 10 |" not in report and "| graph |" not in report
    assert "Not run" not in sections["Lag: PostgreSQL COMMIT -> visible (ms)"]
    assert all("Not run" in body for title, body in sections.items() if not title.startswith("Lag"))


def test_a_worker_run_is_timed_by_its_own_batches() -> None:
    """Events/s count between the first and the last batch the worker published (its own clock), not
    the harness's polling, nor the worker's start or stop; CPU, operations and stage times over the same span."""
    first = {"events": 1_000, "operations": 3_000, "cpuSeconds": 0.5, "lastAppliedAt": 100.0, "batches": 1,
             "stageSeconds": {"store apply": 0.5}}
    last = {"events": 21_000, "operations": 63_000, "cpuSeconds": 1.5, "lastAppliedAt": 104.0, "batches": 21,
            "stageSeconds": {"store apply": 2.5}}
    run = worker_rate(first, last, process_cpu_s=3.0, expected=21_000, rss_mb=100.0)
    assert run.events_per_s == 5_000.0 and run.ops_per_s == 15_000.0 and run.seconds == 4.0
    assert run.cpu_us_per_event == 150.0 and run.own_cpu_us_per_event == 50.0 and run.cpu_share == 0.75
    assert run.complete and run.events == 21_000 and run.stages_s == {"store apply": 2.0}
    # no batch finished in time, or only one: nothing to time, reported as 0 (partial), never a division error
    assert worker_rate(None, {}, 1.0, 10, 0.0).events_per_s == 0.0
    assert worker_rate(first, first, 1.0, 10_000, 0.0).events_per_s == 0.0



def test_too_few_users_stop_the_bench_before_any_stack_starts(tmp_path: Path) -> None:
    done = cli("bench", "--users", "1", "--out", str(tmp_path))
    assert done.returncode == 2 and "--users: at least 2" in done.stderr, done.stdout + done.stderr
    assert not (tmp_path / "results.json").exists()
