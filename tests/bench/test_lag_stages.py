"""The lag phase's stage times and the environment of ``--before`` processes (pure logic)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from projectors.bench.lag import stage_times
from projectors.bench.other_code import environment_for
from projectors.bench.report import LAG_STAGES, TOTAL
from projectors.runtime.clock import BatchClock, read_clock
from projectors.runtime.dead_letters import RawRecord
from projectors.settings import load_settings


def envelope(committed_ms: int, read_ms: int) -> bytes:
    return json.dumps({"op": "c", "ts_ms": read_ms, "source": {"ts_ms": committed_ms}, "after": {}}).encode()


def test_each_change_is_timed_stage_by_stage_from_the_clock_to_the_prober(tmp_path: Path) -> None:
    settings = load_settings({"PROJECTORS_STACK_DIR": str(tmp_path)})
    clock = BatchClock(tmp_path / "run" / "clock" / "graph-1.jsonl")
    records = [
        RawRecord("social.public.posts", 0, 1, b'{"id":"p1"}', envelope(1_000_000, 1_000_010), 1000.030),
        RawRecord("social.public.posts", 0, 2, b'{"id":"p2"}', None, 1000.030),  # a tombstone: no envelope
    ]
    clock.write(records, [1000.050, 1000.050], handed=1000.070, applied=1000.100)
    clocked = read_clock(settings, "graph")
    assert clocked["p1"] == pytest.approx([1000.0, 1000.010, 1000.030, 1000.050, 1000.070, 1000.100])
    stages = stage_times(clocked, {"p1": 1000.120, "p2": 1000.120, "unclocked": 1000.3})
    expected = dict(zip(LAG_STAGES, (0.010, 0.020, 0.020, 0.020, 0.030, 0.020), strict=True))
    for stage, seconds in expected.items():
        assert stages[stage].p50 == pytest.approx(seconds), stage
    assert stages[TOTAL].n == 1 and stages[TOTAL].p50 == pytest.approx(0.120)
    assert stages["fetched -> handed"].n == 2  # p2's worker times are known, its source times are not


def test_before_processes_get_only_the_settings_their_code_knows_and_not_this_codes_defaults() -> None:
    wait = str(load_settings({}).worker.fetch_max_wait_ms)  # this code's default, whatever it is
    defaults = {"PROJECTORS_WORKER_FETCH_MAX_WAIT_MS": wait, "PROJECTORS_WORKER_BATCH_SIZE": "1000"}
    known = frozenset({"PROJECTORS_WORKER_FETCH_MAX_WAIT_MS", "PROJECTORS_WORKER_BATCH_SIZE",
                       "PROJECTORS_KAFKA_BOOTSTRAP_SERVERS"})
    settings = load_settings({"PROJECTORS_WORKER_BATCH_SIZE": "200", "PROJECTORS_WORKER_CLOCK": "true",
                              "PROJECTORS_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1234"})
    env = environment_for(known, defaults)(settings)
    assert env == {"PROJECTORS_WORKER_BATCH_SIZE": "200", "PROJECTORS_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1234"}
