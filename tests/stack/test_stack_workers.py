"""Several worker processes share a projection's partitions; more than its partitions, an unknown
projection, or a store that does not answer stop `stack up` before any worker starts."""

from __future__ import annotations

import json

from projectors.runtime.observe import pid_alive
from projectors.runtime.stats import read_stats
from projectors.settings import load_settings
from tests.conftest import StackHandle, private_dir, stack_env
from tests.operations.test_operators import assert_clean
from tests.stack.common import NAMES, activity, cli_ok


def test_two_worker_processes_share_a_projection() -> None:
    env = stack_env(private_dir("projectors-workers-"))
    env["PROJECTORS_STACK_WORKERS"] = "graph=2"
    handle = StackHandle(load_settings(env), env)
    settings = handle.settings
    pids: list[int] = []
    try:
        cli_ok(handle, "stack", "up")
        parts = {p["name"]: p for p in json.loads(cli_ok(handle, "stack", "status", "--json"))}
        assert {"worker-graph", "worker-graph-2"} <= set(parts), parts
        assert all(p["up"] and p["pid"] for p in parts.values()), parts
        pids = [p["pid"] for p in parts.values()]
        activity(settings, 21, 400, first=True)
        assert_clean(handle, NAMES)
        stats = read_stats(settings, "graph")
        assert len(stats) == 2, stats
        assert all(int(s["events"]) > 0 for s in stats), stats  # each process was given partitions
        # replay --force pauses both through the control topic and resumes them: the same processes
        replay = cli_ok(handle, "replay", "graph", "--from", "earliest", "--force", "--wait", "0")
        assert "graph: paused: group projectors-graph is empty" in replay and "resume requested" in replay, replay
        assert all(pid_alive(pid) for pid in pids), "a paused worker process stays alive"
        assert_clean(handle, NAMES)
    finally:
        handle.cli("stack", "down", timeout=300)
    assert pids and not [pid for pid in pids if pid_alive(pid)], "stack down left processes behind"


def test_more_workers_than_partitions_is_refused_naming_the_setting() -> None:
    env = stack_env(private_dir("projectors-workers2-"))
    env["PROJECTORS_STACK_WORKERS"] = "graph=4"  # the topics have 3 partitions
    done = StackHandle(load_settings(env), env).cli("stack", "up")
    assert done.returncode == 2 and "PROJECTORS_STACK_WORKERS" in done.stderr, done.stdout + done.stderr
    env["PROJECTORS_STACK_WORKERS"] = "graf=2"
    bad = StackHandle(load_settings({k: v for k, v in env.items() if k != "PROJECTORS_STACK_WORKERS"}), env)
    done = bad.cli("stack", "up")
    assert done.returncode == 2 and "PROJECTORS_STACK_WORKERS" in done.stderr, done.stdout + done.stderr


def test_a_store_that_does_not_answer_stops_stack_up_before_its_workers() -> None:
    root = private_dir("projectors-nostore-")
    env = stack_env(root)
    (root / "stack.json").write_text(json.dumps({"id": "a-stack", "marked": ["graph"], "atRisk": []}))
    done = StackHandle(load_settings(env), env).cli("stack", "up", "--only", "worker-graph")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "graph: its store does not answer" in done.stderr and "stack up" in done.stderr, done.stderr
    assert not (root / "run" / "worker-graph.pid").exists()
