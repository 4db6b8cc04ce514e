"""Incremental verify on the real local stack (counters on the local Cosmos server): a clean verify
commits its checkpoint in Kafka; the next one reads the events since then and checks only the items
they touched and the items the store's change feed names since then; what was deleted from the
store with no event is left to --full; a rebuild's new store
generation makes the next verify a full one."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from projectors.db.migrate import connect
from projectors.operations.caught_up import wait_for_pipeline
from projectors.operations.checkpoint import Checkpoint, unusable
from projectors.operations.verify import FEED_MARGIN_S
from projectors.stack import local
from projectors.stores.cosmos import CosmosStore
from projectors.stores.factory import current_generation, open_raw_store
from projectors.workload import SocialWorkload
from tests.conftest import QUICK_BATCHES, StackHandle, local_stack
from tests.operations.test_verify_scaling import counters_worker, delta, follow_burst, replace_counter, report, served


@pytest.fixture(scope="module")
def incr_stack() -> Iterator[StackHandle]:
    """Servers, capture and the counters worker, with some hundreds of counters projected."""
    with local_stack("projectors-verify-incr-", local.SERVERS, **QUICK_BATCHES) as handle:
        counters_worker(handle).start(60)
        with connect(handle.settings.pg) as conn:
            SocialWorkload(conn, rng=random.Random(11)).seed(users=200, posts=300, follows=400)
        yield handle


def new_follows(handle: StackHandle, n: int) -> list[tuple[str, str]]:
    """``n`` follows that do not exist yet, inserted in one transaction: (follower, followee)."""
    with psycopg.connect(handle.settings.pg.conninfo()) as conn:
        rows = conn.execute(
            "SELECT a.id::text, b.id::text FROM users a CROSS JOIN users b WHERE a.id <> b.id AND NOT EXISTS "
            "(SELECT 1 FROM follows f WHERE f.follower_id = a.id AND f.followee_id = b.id) "
            "ORDER BY md5(a.id::text || b.id::text) LIMIT %s",
            (n,),
        ).fetchall()
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO follows (follower_id, followee_id) VALUES (%s, %s)", rows)
        conn.commit()
    return [(str(a), str(b)) for a, b in rows]


def counter(handle: StackHandle, item_id: str) -> dict[str, Any]:
    store = open_raw_store(handle.settings, "counters")
    assert isinstance(store, CosmosStore)
    try:
        return dict(store.container("counters").read_item(item_id, partition_key=item_id.split(":")[0]))
    finally:
        store.close()


def pipeline_applied(handle: StackHandle) -> None:
    """Capture and the counters group have applied what PostgreSQL holds now (no verify: no checkpoint)."""
    waited = wait_for_pipeline(handle.settings, ["counters"], time.monotonic() + 240)["counters"]
    assert waited.caught_up, waited.as_dict()


def test_a_clean_verify_records_a_checkpoint_and_the_next_reads_only_what_events_touched(
    incr_stack: StackHandle,
) -> None:
    handle = incr_stack
    pipeline_applied(handle)
    # the next verify reads the change feed from a little before this one's start: the seed's writes
    # are older than that
    time.sleep(FEED_MARGIN_S + 1.5)
    first = handle.cli("verify", "counters", "--wait", "240", "--json", timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    full = report(first)
    # no checkpoint yet: a full check, which records one
    assert full["mode"] == "full" and full["fullBecause"] == "no checkpoint of a clean verify", full
    assert full["fullReads"] == 1 and full["itemsRead"] >= full["held"] > 500
    recorded = full["checkpointRecorded"]
    assert recorded["generation"] == current_generation(handle.settings, "counters")
    shown = json.loads(handle.cli("status", "counters", "--json").stdout)[0]["verified"]
    assert shown["at"] == recorded["at"] and shown["offsets"] == recorded["offsets"], shown
    assert "last clean verify: " in handle.cli("status", "counters").stdout

    follows = new_follows(handle, 3)
    assert len(follows) == 3
    before = served(handle)
    done = handle.cli("verify", "counters", "--wait", "240", "--json", timeout=300)
    during = delta(served(handle), before)
    assert done.returncode == 0, done.stdout + done.stderr
    row = report(done)
    assert row["mode"] == "incremental" and row["checkpoint"]["offsets"] == recorded["offsets"], row
    assert (row["missing"], row["extra"], row["wrong"], row["fullReads"]) == (0, 0, 0, 0)
    # the three follows' events, and each one's two counters (follower's following, followee's followers)
    assert row["eventsRead"] >= 3
    touched = {f"{a}:following" for a, _b in follows} | {f"{b}:followers" for _a, b in follows}
    assert row["checked"] >= len(touched) and row["held"] >= len(touched)
    assert 0 < row["itemsRead"] < full["held"] // 50, (row["itemsRead"], full["held"])
    # no whole-container query reached the store: the change feed since the checkpoint (the items the
    # worker wrote since), then point reads of the keys checked
    assert during.get("cross_partition_query", 0) == 0 and during.get("change_feed", 0) >= 1, during
    assert row["storeChanges"] >= len(touched), row
    assert during.get("point_read", 0) + during.get("point_read_refused", 0) + row["storeChanges"] == row["itemsRead"]
    assert row["checkpointRecorded"]["offsets"] != recorded["offsets"]
    text = handle.cli("verify", "counters")
    assert text.returncode == 0 and "incremental since the clean verify of" in text.stdout, text.stdout
    assert "--full checks all" in text.stdout
    print(f"full verify read {full['itemsRead']} items (held {full['held']}); incremental after 3 follows: "
          f"{row['eventsRead']} events, {row['checked']} keys, {row['itemsRead']} items read")


def test_an_item_an_event_touched_and_wrong_in_the_store_is_found_incrementally(incr_stack: StackHandle) -> None:
    handle = incr_stack
    assert handle.cli("verify", "counters", "--wait", "240", timeout=300).returncode == 0
    [(_follower, followee)] = new_follows(handle, 1)
    pipeline_applied(handle)
    item = counter(handle, f"{followee}:followers")
    item["count"] += 5
    replace_counter(handle, item)  # after the worker applied the follow: nothing corrects it
    done = handle.cli("verify", "counters", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    row = report(done)
    assert row["mode"] == "incremental" and (row["missing"], row["extra"], row["wrong"]) == (0, 0, 1), row
    assert row["samples"][0]["id"] == item["id"] and "checkpointRecorded" not in row
    # not clean: the checkpoint stays; a repair of what the incremental check found ends it
    fixed = handle.cli("verify", "counters", "--repair", "--json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    repaired = json.loads(fixed.stdout)[0]
    assert repaired["drifted"] == 1 and repaired["changed"] == 1 and repaired["driftAfter"] == 0, repaired
    assert report(handle.cli("verify", "counters", "--full", "--json"))["wrong"] == 0


def test_an_item_changed_in_the_store_with_no_event_is_found_by_its_change_feed_a_deleted_one_by_full(
    incr_stack: StackHandle,
) -> None:
    handle = incr_stack
    assert handle.cli("verify", "counters", "--wait", "240", timeout=300).returncode == 0
    time.sleep(FEED_MARGIN_S + 1)  # the change feed is read from a little before the checkpoint
    item = counter(handle, next(iter(_some_followers_counter(handle))))
    item["count"] += 2
    replace_counter(handle, item)  # no event touches it: only the container's change feed shows it
    quick = handle.cli("verify", "counters", "--json")
    assert quick.returncode == 1, quick.stdout + quick.stderr
    row = report(quick)
    assert row["mode"] == "incremental" and row["fullReads"] == 0 and row["eventsRead"] == 0, row
    assert row["storeChanges"] == 1 and row["wrong"] == 1 and row["samples"][0]["id"] == item["id"], row
    assert row["itemsRead"] <= 3, row  # the feed's one item and its point read (and its fields shown)
    fixed = handle.cli("verify", "counters", "--repair", "--json")
    assert fixed.returncode == 0 and json.loads(fixed.stdout)[0]["driftAfter"] == 0, fixed.stdout + fixed.stderr
    assert handle.cli("verify", "counters", "--wait", "240", timeout=300).returncode == 0

    # an item deleted directly: Azure's change feed does not report deletions, nor does the local one
    store = open_raw_store(handle.settings, "counters")
    assert isinstance(store, CosmosStore)
    try:
        store.container("counters").delete_item(item["id"], partition_key=item["subjectId"])
    finally:
        store.close()
    quick = handle.cli("verify", "counters", "--json")
    assert quick.returncode == 0, quick.stdout + quick.stderr
    row = report(quick)
    # the documented limit: nothing shows the deletion to the incremental check
    assert row["mode"] == "incremental" and row["missing"] == 0 and row["storeChanges"] == 0, row
    found = handle.cli("verify", "counters", "--full", "--json")
    assert found.returncode == 1, found.stdout + found.stderr
    full = report(found)
    assert full["mode"] == "full" and full["fullBecause"] == "--full" and full["missing"] == 1, full
    assert full["samples"][0]["id"] == item["id"]
    assert handle.cli("verify", "counters", "--full", "--repair").returncode == 0


def _some_followers_counter(handle: StackHandle) -> list[str]:
    with psycopg.connect(handle.settings.pg.conninfo()) as conn:
        row = conn.execute("SELECT followee_id::text FROM follows ORDER BY followee_id LIMIT 1").fetchone()
    assert row is not None
    return [f"{row[0]}:followers"]


def test_after_a_rebuild_the_checkpoint_of_the_old_generation_is_not_used(incr_stack: StackHandle) -> None:
    handle = incr_stack
    clean = handle.cli("verify", "counters", "--wait", "240", "--json", timeout=300)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    old = report(clean)["checkpointRecorded"]["generation"]
    rebuilt = handle.cli("rebuild", "counters", "--force", "--json", timeout=600)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    new = current_generation(handle.settings, "counters")
    assert new != old
    follow_burst(handle, 5, seed=3)
    done = handle.cli("verify", "counters", "--wait", "240", "--json", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    row = report(done)
    assert row["mode"] == "full" and row["fullReads"] == 1, row
    assert row["fullBecause"] == f"the checkpoint is of store generation {old}, the live one is {new}"
    assert row["checkpointRecorded"]["generation"] == new
    assert report(handle.cli("verify", "counters", "--json"))["mode"] == "incremental"


def test_a_checkpoint_is_unusable_when_its_events_are_gone_or_its_store_is_another() -> None:
    here = Checkpoint("counters", {("t", 0): 10, ("t", 1): 4}, at=0.0, generation=2, store="CosmosStore")
    end = {("t", 0): 12, ("t", 1): 4}
    assert unusable(here, 2, "CosmosStore", {("t", 0): 0, ("t", 1): 0}, end) is None
    assert unusable(None, 2, "CosmosStore", {}, end) == "no checkpoint of a clean verify"
    assert "generation 2, the live one is 3" in str(unusable(here, 3, "CosmosStore", {}, end))
    assert "a CosmosStore, the store is a SqliteSearchStore" in str(unusable(here, 2, "SqliteSearchStore", {}, end))
    assert "retention" in str(unusable(here, 2, "CosmosStore", {("t", 0): 11}, end))
    assert "recreated" in str(unusable(here, 2, "CosmosStore", {}, {("t", 0): 3, ("t", 1): 4}))
    # a partition the checkpoint does not name is read from its start, unless retention took some
    wider = {**end, ("t", 2): 7}
    assert unusable(here, 2, "CosmosStore", {}, wider) is None
    assert "t[2]" in str(unusable(here, 2, "CosmosStore", {("t", 2): 1}, wider))
