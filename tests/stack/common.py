"""What the stack's restart and isolation tests share: a workload, the graph's node count, a CLI
call that must succeed. Each test file starts stacks of its own, so the files run in parallel."""

from __future__ import annotations

import random

import redis

from projectors.db.migrate import connect
from projectors.projections import PROJECTIONS
from projectors.settings import Settings
from projectors.stack import local
from projectors.stores.factory import current_generation
from projectors.stores.generations import suffix
from projectors.workload import SocialWorkload
from tests.conftest import StackHandle

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
