"""`projectors bench --tiny`, the phases that build and check stores: rebuild, lag, fan-out and
verify (``test_harness.py`` runs throughput and scale beside it, on a stack of its own).

Only that they run and what they report: the figures themselves are benchmarks, never asserted."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench.harness_checks import assert_sections_run
from tests.conftest import cli


def test_the_build_and_check_phases_run_on_a_tiny_input(tmp_path: Path) -> None:
    done = cli("bench", "--tiny", "--phases", "rebuild,lag,fanout,verify", "--out", str(tmp_path), timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["rebuild"]) == {"feed", "counters", "graph", "search"}
    for name, r in results["rebuild"].items():  # from state: every item of the spec, as many as the bulk load
        assert r["items"] > 0 and r["from_state"]["items"] == r["bulk_load"]["items"] == r["items"], (name, r)
        assert r["from_state"]["refused"] == 0 and (name not in ("graph", "search") or r["from_topics"]["events"] > 0)
    for store in ("graph", "search"):
        assert results["lag"]["50"][store]["n"] > 0, results["lag"]
        batches = results["lag_batches"]["50"][store]
        assert batches["batches"] > 0 and batches["stage_ms_per_batch"]["store apply"] > 0, batches
        stages = results["lag_stages"]["50"][store]  # every stage timed, from the workers' batch clock
        assert all(stages[stage]["n"] > 0 for stage in stages), stages
    assert results["fanout"] and all(f["feed_writes"] >= f["followers"] > 0 for f in results["fanout"]), results
    verify = results["verify"]  # a full and an incremental verify at two store sizes, and a worker beside one
    assert len(verify["sizes"]) == 2 and verify["sizes"][1]["items"] >= verify["sizes"][0]["items"] > 0, verify
    for size in verify["sizes"]:
        full, incremental = size["full"], size["incremental"]
        # one counter changed in the store behind the projector's back: both checks find it (the
        # incremental one in the container's change feed)
        # (a full verify keeps digests only: it reads the wrong item once more to show its fields)
        assert size["items"] <= full["items_read"] <= size["items"] + 1 and full["requests"] > 0, size
        assert full["drift"] == incremental["drift"] == 1 and full["found"] and incremental["found"], size
        assert incremental["events_read"] > 0 and incremental["keys_checked"] > 0, size
        assert incremental["store_changes"] >= 1 and incremental["request_kinds"].get("change_feed", 0) >= 1, size
        assert 0 < incremental["items_read"] < full["items_read"], size
    assert verify["worker_alone"]["events"] > 0 and verify["worker_beside_verify"]["events"] > 0, verify
    assert verify["worker_beside_budgeted_verify"]["events"] > 0, verify
    digests = verify["graph_digests"]  # clean: no item read; one node changed: found
    assert digests["whole_items_read"] == digests["items"] > 0 and digests["digests_items_read"] == 0, digests
    assert digests["drift_found"] == 1 and 0 < digests["drifted_items_read"] <= digests["items"], digests
    report = (tmp_path / "results.md").read_text()
    assert_sections_run(report, ("Rebuild", "Lag", "Fan-out", "Verify: full and incremental"))
    assert "events per batch" in report
