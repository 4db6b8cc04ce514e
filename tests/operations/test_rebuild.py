"""`projectors rebuild` on the real local stack: readers querying in a loop through the swap never see
an empty or partial store, the new generation verifies, the old one is dropped; a rebuild during
writes ends with zero drift."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from projectors.db.migrate import connect
from projectors.projections import PROJECTIONS
from projectors.read.client import ReadClient
from projectors.stores.factory import current_generation
from projectors.workload import SocialWorkload
from tests.conftest import QUICK_BATCHES, StackHandle, local_stack
from tests.operations.test_operators import assert_clean

NAMES = list(PROJECTIONS)


@pytest.fixture(scope="module")
def rebuild_stack() -> Iterator[StackHandle]:
    with local_stack("projectors-rebuild-", **QUICK_BATCHES) as handle:
        with connect(handle.settings.pg) as conn:
            load = SocialWorkload(conn, rng=random.Random(53))
            load.seed(users=25, posts=30, follows=80)
            load.run(150)
        assert_clean(handle, NAMES)
        yield handle


def snapshot(client: ReadClient, users: list[str], posts: list[str]) -> dict[str, Any]:
    """What read services see, in an order-free form (ties may be listed in another order)."""
    return {
        "feed": {u: sorted(i["id"] for i in client.feed_page(u, limit=500)) for u in users},
        "counters": client.counters(users + posts),
        "suggestions": {u: sorted((s["id"], s["mutual"]) for s in client.suggestions(u, limit=100)) for u in users},
        "search": {w: sorted(d["id"] for d in client.search("posts", w, limit=500)) for w in ("stream", "graph")},
        "users": sorted(d["id"] for d in client.search("users", "", limit=500)),
    }


def reader_loop(handle: StackHandle, expected: dict[str, Any], users: list[str], posts: list[str],
                stop: threading.Event, seen: list[str]) -> Callable[[], None]:
    def run() -> None:
        client = ReadClient(handle.settings)
        try:
            while not stop.is_set():
                try:
                    now = snapshot(client, users, posts)
                except Exception as exc:  # a reader must never fail either
                    seen.append(f"error: {exc!r}")
                    continue
                for part, value in now.items():
                    if value != expected[part]:
                        seen.append(f"{part} differs: {json.dumps(value)[:300]}")
                seen.append("ok")
        finally:
            client.close()

    return run


def test_rebuild_swaps_while_readers_read(rebuild_stack: StackHandle) -> None:
    settings = rebuild_stack.settings
    with connect(settings.pg) as conn:
        users = [r[0] for r in conn.execute(
            "SELECT followee_id::text FROM follows GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 6").fetchall()]
        users += [r[0] for r in conn.execute(
            "SELECT follower_id::text FROM follows GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 6").fetchall()]
        posts = [r[0] for r in conn.execute("SELECT id::text FROM posts ORDER BY id LIMIT 10").fetchall()]
    client = ReadClient(settings)
    expected = snapshot(client, users, posts)
    client.close()
    # the scene is worth reading: feeds, counters, suggestions and search results are not empty
    assert sum(map(len, expected["feed"].values())) > 20
    assert any(expected["suggestions"].values()) and expected["search"]["stream"] and expected["users"]
    assert all(expected["counters"][u] for u in users)

    refused = rebuild_stack.cli("rebuild", "feed")
    assert refused.returncode == 2 and "--force" in refused.stderr

    stop, seen = threading.Event(), []  # type: ignore[var-annotated]
    reader = threading.Thread(target=reader_loop(rebuild_stack, expected, users, posts, stop, seen))
    reader.start()
    reports = {}
    try:
        for name in NAMES:
            done = rebuild_stack.cli("rebuild", name, "--force", "--json", timeout=600)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            reports[name] = json.loads(done.stdout)
    finally:
        stop.set()
        reader.join()
    problems = [s for s in seen if s != "ok"]
    assert not problems, problems[:5]
    assert seen.count("ok") >= 10, f"the reader read only {len(seen)} times"

    for name, report in reports.items():
        assert report["oldGeneration"] == 0 and report["newGeneration"] == 1, report
        assert report["verified"]["missing"] + report["verified"]["wrong"] == 0, report
        # built from the source's state (no writes meanwhile: exactly the items the verify checked)
        assert report["loadedFromState"]["items"] == report["verified"]["checked"], report
        assert report["loadedFromState"]["refused"] == 0, report
        assert report["verified"]["checked"] > 0 and report["droppedGeneration"] == 0
        assert current_generation(settings, name) == 1
    # the old generation is gone: Cosmos containers, the FalkorDB graph, the SQLite file
    import redis

    from projectors.stores.cosmos import CosmosStore

    containers = {
        c["id"] for p in ("feed", "counters") for c in CosmosStore(settings.cosmos.of(p), {}).database.list_containers()
    }
    assert {"userFeed-g1", "counters-g1"} <= containers and not {"userFeed", "counters"} & containers
    assert redis.Redis(port=settings.falkordb.port).exists(settings.falkordb.graph) == 0
    assert not settings.search_sqlite_path.exists()
    status = json.loads(rebuild_stack.cli("status", "--json").stdout)
    assert {r["projection"]: r["generation"] for r in status} == dict.fromkeys(NAMES, 1)

    # the restarted workers write the new generation: new activity arrives and verifies
    with connect(settings.pg) as conn:
        load = SocialWorkload(conn, rng=random.Random(59))
        load.users = [uuid.UUID(u) for (u,) in conn.execute("SELECT id::text FROM users").fetchall()]
        load.posts = [uuid.UUID(p) for (p,) in conn.execute("SELECT id::text FROM posts").fetchall()]
        load.run(60)
    assert_clean(rebuild_stack, NAMES)


@pytest.mark.parametrize("name, how", [("graph", "--from-state"), ("search", "--from-topics")])
def test_rebuild_during_writes_ends_with_zero_drift(rebuild_stack: StackHandle, name: str, how: str) -> None:
    """Writes go on through the whole rebuild: from the state (the snapshot, then the events from
    offsets taken before it) or from the topics, the swapped-in store has no drift."""
    settings = rebuild_stack.settings
    stop = threading.Event()
    written: list[int] = []
    failed: list[BaseException] = []

    def write() -> None:
        try:
            write_until_stopped()
        except BaseException as exc:
            failed.append(exc)

    def write_until_stopped() -> None:
        with connect(settings.pg) as conn:
            load = SocialWorkload(conn, rng=random.Random(f"writes during the rebuild of {name}"))
            load.users = [uuid.UUID(r[0]) for r in conn.execute("SELECT id::text FROM users").fetchall()]
            load.posts = [uuid.UUID(r[0]) for r in conn.execute("SELECT id::text FROM posts").fetchall()]
            while not stop.is_set():
                load.run(10)
                written.append(10)
                time.sleep(0.2)

    before = current_generation(settings, name)
    writer = threading.Thread(target=write)
    writer.start()
    try:
        args = ["--from-topics"] if how == "--from-topics" else []
        done = rebuild_stack.cli("rebuild", name, "--force", "--json", *args, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        report = json.loads(done.stdout)
    finally:
        stop.set()
        writer.join()
    assert report["droppedGeneration"] == before
    assert not failed and len(written) >= 5, failed
    if how == "--from-state":
        assert report["loadedFromState"]["items"] > 0 and report["events"] > 0, report  # writes came after the snapshot
    else:
        assert report["loadedFromState"] is None and report["events"] > 0, report
    assert current_generation(settings, name) == before + 1
    assert_clean(rebuild_stack, [name])
