"""`python -m projectors.bench.fetch_wait`: a faust agent with the workers' app class (the adaptive
wait) takes every record produced on a private broker, and the figures are reported.

Only that it runs and counts every record: the latencies and CPU shares are benchmarks, never asserted."""

from __future__ import annotations

import pytest

from projectors.bench.fetch_wait import measure

pytestmark = pytest.mark.stack


def test_every_record_produced_is_taken_and_reported() -> None:
    [row] = measure([(10, 100)], rate=100, seconds=1.0)
    assert row["busy_ms"] == 10 and row["idle_ms"] == 100
    assert row["sent"] >= 50 and row["taken"] == row["sent"], row
    assert row["p50_ms"] is not None and 0 < row["p50_ms"] <= row["p99_ms"], row
    assert row["broker_cpu_pct"] >= 0 and row["agent_cpu_pct"] > 0, row
