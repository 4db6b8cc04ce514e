"""`projectors bench-reads --tiny`: the reads bench runs end to end and reports every figure (the
figures themselves are benchmarks, never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import cli


def test_the_reads_bench_runs_on_a_tiny_input(tmp_path: Path) -> None:
    done = cli("bench-reads", "--tiny", "--out", str(tmp_path), timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "reads-results.json").read_text())
    assert set(results["calls"]) == {"small", "large", "large, under writes"}
    for label, calls in results["calls"].items():
        assert set(calls) == {"feed_page", "feed_page_redis", "counters", "suggestions", "search", "notifications",
                              "unread_count"}, label
        hot = calls["feed_page_redis"]
        # every timed first page came from Redis (in-process and over HTTP), and Redis's pages are
        # Cosmos's for the same users
        assert hot["from_redis"] == 1 and hot["http_from_redis"] == 1, hot
        assert hot["compared"] > 0 and hot["compared_items"] > 0, hot  # (not only empty pages)
        if label != "large, under writes":  # (the writer changes pages while they are compared)
            assert hot["mismatches"] == 0, hot
        assert all(c["p50_ms"] > 0 and c["fallbacks"] == 0 for c in calls.values()), (label, calls)
        assert all(c["http_p50_ms"] > 0 and c["http_p99_ms"] >= c["http_p50_ms"] for c in calls.values()), calls
        if label != "large, under writes":  # (the workers' requests are counted too then: left out)
            assert calls["feed_page"]["cosmos_requests_per_call"] >= 1
            assert calls["feed_page_redis"]["cosmos_requests_per_call"] == 0
            assert calls["search"]["cosmos_requests_per_call"] == 0
            assert calls["unread_count"]["cosmos_requests_per_call"] >= 1  # one point read
            # one query for the 20 subjects (and now and then a read of the generation pointer)
            assert 1 <= calls["counters"]["cosmos_requests_per_call"] < 2, calls["counters"]
    assert results["stores"]["large"]["feed"] > results["stores"]["small"]["feed"] > 0
    assert set(results["ratios"]) == set(results["calls"]["small"])
    assert results["concurrent"]["clients"] == 50 and results["concurrent"]["requests_s"] > 0
    assert results["concurrent"]["errors"] == 0
    assert set(results["redis_vs_cosmos"]) == set(results["calls"])
    settled = results["settled"]  # once the writes stopped and the pipeline caught up
    assert settled["compared"] > 0 and settled["compared_items"] > 0 and settled["mismatches"] == 0, settled
    assert all(r["p50"] > 0 and r["http_p99"] > 0 for r in results["redis_vs_cosmos"].values()), results
    report = (tmp_path / "reads-results.md").read_text()
    assert "## p50 large ÷ small" in report and "HTTP ÷ in-process p50" in report
    assert "Redis ÷ Cosmos" in report


def test_a_projection_the_run_did_not_project_shows_no_size() -> None:
    """Under ``--calls`` only some projections run: the others' store sizes are "-", not 0."""
    from projectors.bench.reads import PROJECTIONS, ReadsResults, markdown

    report = markdown(ReadsResults(config={}, stores={"small": {"search": 1_234}}))
    row = next(line for line in report.splitlines() if line.startswith("| small |"))
    assert row.count("| - ") == len(PROJECTIONS) - 1 and "| 1,234 |" in row and " 0 " not in row, row
