"""`projectors bench-feed --tiny`: every scenario runs end to end and reports its figures.

Only that they run and what they report (zero drift, nothing missing, no dead letters, no
cross-partition query): the timings themselves are benchmarks, never asserted."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import cli


def test_the_feed_bench_runs_on_a_tiny_input(tmp_path: Path) -> None:
    done = cli("bench-feed", "--tiny", "--out", str(tmp_path), timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r = json.loads((tmp_path / "feed-results.json").read_text())
    random_run = r["random"]
    assert random_run["drift"] == 0 and random_run["seconds_to_clean"] > 0, random_run
    for name in ("feed", "counters"):
        requests = random_run["requests"][name]
        assert requests.get("patch", 0) + requests.get("point_write", 0) + requests.get("batch", 0) > 0, requests
        assert requests.get("cross_partition_query", 0) == 0, (name, requests)
    assert r["fanout"]["seconds_to_first_page"] is not None and r["fanout"]["sampled_pages_missing_it"] == 0
    assert r["follow"]["seconds_to_first_page"] is not None and r["follow"]["seconds_to_every_item"] is not None
    assert len(r["requests"]) == 10 and all("feed" in v for v in r["requests"].values()), r["requests"]
    assert r["requests"]["post created (10 followers)"]["feed"], r["requests"]
    assert not any(v.get("cross_partition_query") for g in r["requests"].values() for v in g.values())
    assert r["drill"]["drift"] == 0 and r["drill"]["dead_letters"] == 0, r["drill"]
    report = (tmp_path / "feed-results.md").read_text()
    for heading in ("Random workload", "Fan-out on read", "A follow of an author", "Requests per event",
                    "Drill"):
        assert f"## {heading}" in report, report


def test_an_unknown_scenario_stops_before_any_stack_starts(tmp_path: Path) -> None:
    done = cli("bench-feed", "--scenarios", "random,speed", "--out", str(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--scenarios: unknown speed" in done.stderr
    assert not (tmp_path / "feed-results.json").exists()
