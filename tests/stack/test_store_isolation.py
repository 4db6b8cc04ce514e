"""Each Cosmos projection has its own server, and reads go on without a server that is down."""

from __future__ import annotations

import json
import os
import signal
import time

from projectors.cli import EXIT_UNAVAILABLE
from projectors.db.migrate import connect
from projectors.operations.caught_up import wait_for_pipeline
from projectors.read.client import ReadClient
from projectors.settings import load_settings
from projectors.stack import local
from projectors.stack.servers import Cosmos
from projectors.stores.factory import current_generation
from tests.conftest import StackHandle, private_dir, stack_env
from tests.operations.test_operators import assert_clean
from tests.stack.common import NAMES, activity, cli_ok


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
