"""`projectors stack down` then `stack up` on the real processes: nothing is lost; a store that did
lose its data shows as LOST and is restored by `stack up` itself; several worker processes share a
projection's partitions; each Cosmos projection has its own server, and reads go on without it."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time

import redis

from projectors.cli import EXIT_UNAVAILABLE
from projectors.db.migrate import connect
from projectors.operations.caught_up import wait_for_pipeline
from projectors.projections import PROJECTIONS
from projectors.read.client import ReadClient
from projectors.runtime.observe import pid_alive
from projectors.runtime.stats import read_stats
from projectors.settings import Settings, load_settings
from projectors.stack import local
from projectors.stack.servers import Cosmos, FalkorDB
from projectors.stores.factory import current_generation
from projectors.stores.generations import suffix
from projectors.workload import SocialWorkload
from tests.conftest import StackHandle, private_dir, stack_env
from tests.operations.test_operators import assert_clean

NAMES = list(PROJECTIONS)
SERVERS = ",".join(local.SERVERS)


def graph_nodes(settings: Settings, tombstones: bool = True) -> int:
    """The nodes of the live graph; without the tombstones removals leave (a restore from the state
    of PostgreSQL writes none)."""
    graph = settings.falkordb.graph + suffix(current_generation(settings, "graph"))
    where = "" if tombstones else " WHERE NOT n:Tombstone"
    client = redis.Redis(settings.falkordb.host, settings.falkordb.port)
    try:
        result = client.execute_command("GRAPH.RO_QUERY", graph, f"MATCH (n){where} RETURN count(n)")
    finally:
        client.close()
    return int(result[1][0][0])


def activity(settings: Settings, seed: int, operations: int, first: bool) -> None:
    with connect(settings.pg) as conn:
        load = SocialWorkload(conn, rng=random.Random(seed))
        if first:
            load.seed(users=30, posts=40, follows=100)
        load.run(operations)


def cli_ok(handle: StackHandle, *args: str, timeout: float = 600) -> str:
    done = handle.cli(*args, timeout=timeout)
    assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


def test_a_restart_keeps_every_store_and_a_lost_store_is_restored_by_stack_up() -> None:
    env = stack_env(private_dir("projectors-restart-"))
    handle = StackHandle(load_settings(env), env)
    settings = handle.settings
    try:
        cli_ok(handle, "stack", "up")
        activity(settings, 7, 300, first=True)
        assert_clean(handle, NAMES)
        nodes = graph_nodes(settings)
        assert nodes > 30

        # 1. down, then up: every store kept its data; nothing to restore; no drift, no manual step
        cli_ok(handle, "stack", "down")
        again = cli_ok(handle, "stack", "up")
        assert "restor" not in again, again
        assert graph_nodes(settings) == nodes
        assert_clean(handle, NAMES)
        status = json.loads(cli_ok(handle, "status", "--json"))
        assert all(r["store_up"] and r["store_state"] == "" for r in status), status
        # the pipeline goes on after the restart (the broker started empty)
        activity(settings, 8, 200, first=False)
        assert_clean(handle, NAMES)
        nodes = graph_nodes(settings, tombstones=False)

        # 2. FalkorDB and the feed's Cosmos server lose their data while the stack is down
        cli_ok(handle, "stack", "down")
        shutil.rmtree(FalkorDB(settings).data_dir)
        Cosmos(settings).state_file.unlink()
        cli_ok(handle, "stack", "up", "--only", SERVERS)
        lost = handle.cli("status", "--json", timeout=120)
        assert lost.returncode == 1, lost.stdout + lost.stderr
        states = {r["projection"]: (r["store_up"], r["store_state"]) for r in json.loads(lost.stdout)}
        assert states == {
            "feed": (False, "LOST"), "counters": (True, ""), "graph": (False, "LOST"), "search": (True, ""),
            "notifications": (True, ""), "publicProfiles": (False, "LOST"), "redis": (True, ""),
        }, states  # publicProfiles lives on the feed's Cosmos account
        human = handle.cli("status", "graph")
        assert "LOST" in human.stdout, human.stdout

        restored = cli_ok(handle, "stack", "up")
        for name in ("feed", "graph"):
            assert f"{name}: its store has lost its data: restoring" in restored, restored
            assert f"{name}: restored" in restored, restored
        assert not [n for n in ("search", "counters", "notifications") if f"{n}: " in restored], restored
        assert graph_nodes(settings, tombstones=False) == nodes
        assert_clean(handle, NAMES)
        status = json.loads(cli_ok(handle, "status", "--json"))
        assert all(r["store_up"] and r["store_state"] == "" for r in status), status
    finally:
        handle.cli("stack", "down", timeout=300)


def test_the_broker_lost_unprojected_events_and_stack_up_restores_them() -> None:
    env = stack_env(private_dir("projectors-brokerloss-"))
    handle = StackHandle(load_settings(env), env)
    settings = handle.settings
    try:
        cli_ok(handle, "stack", "up")
        activity(settings, 11, 200, first=True)
        assert_clean(handle, NAMES)
        # the graph's worker stops; more activity reaches the topics only; then the broker dies
        local.down(settings, ["worker-graph"], say=lambda _l: None)
        activity(settings, 12, 200, first=False)
        pid = local.parts(settings, ["broker"])[0].pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # the broker dies without stack down
        deadline = time.monotonic() + 60
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)

        restored = cli_ok(handle, "stack", "up")
        assert "graph: the broker restarted before it had projected every event: restoring" in restored, restored
        assert "graph: restored" in restored, restored
        assert_clean(handle, NAMES)
    finally:
        handle.cli("stack", "down", timeout=300)


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


def test_each_cosmos_projection_has_its_own_server_and_reads_survive_a_down_one() -> None:
    env = stack_env(private_dir("projectors-isolated-"))
    env["PROJECTORS_READ_STORE_TIMEOUT_S"] = "30"  # a store that answers is never replaced by PostgreSQL here
    handle = StackHandle(load_settings(env), env)
    settings = handle.settings
    try:
        cli_ok(handle, "stack", "up")
        activity(settings, 31, 300, first=True)
        assert_clean(handle, NAMES)

        # the feed's server hangs (SIGSTOP: it accepts connections and never answers): the counters
        # keep flowing, status answers about every part, and a rebuild of the feed fails in one line
        # without touching anything
        generation = current_generation(settings, "feed")
        feed_server = Cosmos(settings).pid()
        assert feed_server is not None
        os.kill(feed_server, signal.SIGSTOP)
        try:
            activity(settings, 32, 100, first=False)
            waited = wait_for_pipeline(settings, ["counters"], time.monotonic() + 240)
            assert waited["counters"].caught_up, waited["counters"]
            status = handle.cli("status", "--json", timeout=240)
            rows = {r["projection"]: r for r in json.loads(status.stdout)}
            assert status.returncode == 1 and not rows["feed"]["store_up"], status.stdout + status.stderr
            assert rows["counters"]["store_up"] and rows["counters"]["lag"] == 0, rows["counters"]
            rebuild = handle.cli("rebuild", "feed", "--force", timeout=400)
            said = [line for line in rebuild.stderr.splitlines() if line.strip()]
            assert rebuild.returncode == EXIT_UNAVAILABLE and "Traceback" not in rebuild.stderr, rebuild.stderr
            assert said[-1].startswith("projectors: error: the feed store did not answer; nothing was changed")
        finally:
            os.kill(feed_server, signal.SIGCONT)
        assert current_generation(settings, "feed") == generation
        assert_clean(handle, NAMES)  # the feed caught up once its server answered again

        with connect(settings.pg) as conn:
            row = conn.execute(
                "SELECT follower_id::text FROM follows GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
            ).fetchone()
        assert row is not None
        user = row[0]
        client = ReadClient(settings)
        try:
            expected = (client.feed_page(user), client.counters([user]), client.suggestions(user),
                        client.search("users", "", limit=500))
        finally:
            client.close()
        assert expected[0] and expected[1][user] and expected[3]

        # the counters' server stops: the feed is still read from its store, the counters are not
        # (answered from PostgreSQL instead)
        local.down(settings, ["cosmos-counters"], say=lambda _l: None)
        client = ReadClient(settings)
        try:
            feed = client.feed_page(user)
            assert feed == expected[0] and feed.source == "store"
            counts = client.counters([user])
            assert counts == expected[1] and counts.source == "postgres"
        finally:
            client.close()
        # every Cosmos server down: a new client still suggests and searches from their stores
        local.down(settings, ["cosmos", "cosmos-notifications"], say=lambda _l: None)
        client = ReadClient(settings)
        try:
            people = client.suggestions(user)
            assert people == expected[2] and people.source == "store"
            found = client.search("users", "", limit=500)
            assert found == expected[3] and found.source == "store"
        finally:
            client.close()

        # back up (each server kept its state): the same reads, zero drift
        cli_ok(handle, "stack", "up")
        client = ReadClient(settings)
        try:
            assert client.feed_page(user) == expected[0] and client.counters([user]) == expected[1]
        finally:
            client.close()
        assert_clean(handle, NAMES)
    finally:
        handle.cli("stack", "down", timeout=300)


def test_a_store_that_does_not_answer_stops_stack_up_before_its_workers() -> None:
    root = private_dir("projectors-nostore-")
    env = stack_env(root)
    (root / "stack.json").write_text(json.dumps({"id": "a-stack", "marked": ["graph"], "atRisk": []}))
    done = StackHandle(load_settings(env), env).cli("stack", "up", "--only", "worker-graph")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "graph: its store does not answer" in done.stderr and "stack up" in done.stderr, done.stderr
    assert not (root / "run" / "worker-graph.pid").exists()
