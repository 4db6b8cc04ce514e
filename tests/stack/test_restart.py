"""`projectors stack down` then `stack up` on the real processes: nothing is lost; a store that did
lose its data shows as LOST and is restored by `stack up` itself."""

from __future__ import annotations

import json
import shutil

from projectors.settings import load_settings
from projectors.stack.servers import Cosmos, FalkorDB
from tests.conftest import StackHandle, private_dir, stack_env
from tests.operations.test_operators import assert_clean
from tests.stack.common import NAMES, SERVERS, activity, cli_ok, graph_nodes


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
