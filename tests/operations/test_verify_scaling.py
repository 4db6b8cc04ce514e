"""verify on the real local stack without re-reading whole stores: --wait waits on the pipeline and
then re-checks only drifted keys; --sample checks a seeded share of the spec's keys; the read budget
paces store reads. Store reads are counted by verify and by the local Cosmos server itself."""

from __future__ import annotations

import itertools
import json
import random
import re
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from projectors.db.migrate import connect
from projectors.model import ItemKey
from projectors.operations.verify import Sample
from projectors.projections import projection as get_projection
from projectors.source import PostgresSource
from projectors.stack import local
from projectors.stack.part import Part
from projectors.stores.cosmos import CosmosStore
from projectors.stores.factory import open_raw_store
from projectors.workload import SocialWorkload
from tests.conftest import QUICK_BATCHES, StackHandle, local_stack, worker_part


@pytest.fixture(scope="module")
def counters_stack() -> Iterator[StackHandle]:
    """The servers, capture and the counters worker, with a little social activity projected."""
    with local_stack("projectors-verify-", local.SERVERS, **QUICK_BATCHES) as handle:
        counters_worker(handle).start(60)
        with connect(handle.settings.pg) as conn:
            SocialWorkload(conn, rng=random.Random(7)).seed(users=50, posts=20, follows=40)
        first = handle.cli("verify", "counters", "--wait", "240", "--json", timeout=300)
        assert first.returncode == 0, first.stdout + first.stderr
        yield handle


def counters_worker(handle: StackHandle) -> Part:
    return worker_part(handle.settings, "counters")


def served(handle: StackHandle) -> dict[str, int]:
    """What the local Cosmos server served to the counters container, by kind of request."""
    url = handle.settings.cosmos.of("counters").endpoint + "/_projectors/requests"
    with urllib.request.urlopen(url, timeout=10) as response:
        counts: dict[str, int] = json.loads(response.read()).get("counters", {})
    return counts


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def report(done: Any) -> dict[str, Any]:
    rows = json.loads(done.stdout)  # --json: stdout is the JSON alone
    assert len(rows) == 1
    row: dict[str, Any] = rows[0]
    return row


def follow_burst(handle: StackHandle, follows: int, seed: int) -> int:
    """``follows`` new follows among the users, in one transaction."""
    with psycopg.connect(handle.settings.pg.conninfo()) as conn:
        users = [r[0] for r in conn.execute("SELECT id FROM users ORDER BY id").fetchall()]
        pairs = [(a, b) for a, b in itertools.permutations(users, 2)]
        random.Random(seed).shuffle(pairs)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO follows (follower_id, followee_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                pairs[:follows],
            )
            inserted = cur.rowcount
        conn.commit()
    return inserted


def some_counter(handle: StackHandle) -> dict[str, Any]:
    store = open_raw_store(handle.settings, "counters")
    assert isinstance(store, CosmosStore)
    try:
        items = store.container("counters").query_items(
            "SELECT * FROM c WHERE c.deleted = false AND c.kind = 'followers'", enable_cross_partition_query=True
        )
        return dict(next(iter(items)))
    finally:
        store.close()


def replace_counter(handle: StackHandle, item: dict[str, Any]) -> None:
    store = open_raw_store(handle.settings, "counters")
    assert isinstance(store, CosmosStore)
    try:
        store.container("counters").replace_item(item["id"], item)
    finally:
        store.close()


def test_wait_reads_the_store_in_full_once_after_a_burst(counters_stack: StackHandle) -> None:
    handle = counters_stack
    assert follow_burst(handle, 2000, seed=1) > 1000
    before = served(handle)
    waited = handle.cli("verify", "counters", "--full", "--wait", "300", "--json", timeout=400)
    during = delta(served(handle), before)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    row = report(waited)
    assert row["pipeline"]["caughtUp"] and row["pipeline"]["capture"] == "caught up", row["pipeline"]
    assert row["fullReads"] == 1 and (row["missing"], row["extra"], row["wrong"]) == (0, 0, 0)
    # one whole read (every live item once) plus the point reads of the re-checks, if any
    assert row["itemsRead"] >= row["held"] > 0
    assert during.get("point_read", 0) + during.get("point_read_refused", 0) == row["itemsRead"] - row["held"]
    # the server saw one whole read: the same whole-container queries a plain verify sends now
    before = served(handle)
    plain = handle.cli("verify", "counters", "--full", "--json")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    once = delta(served(handle), before)
    assert during.get("cross_partition_query", 0) == once.get("cross_partition_query", 0) > 0
    assert report(plain)["itemsRead"] == report(plain)["held"] == row["held"]
    print(f"--wait after a burst: {row['itemsRead']} items read (held {row['held']}), "
          f"{row['attempts']} attempt(s), pipeline wait {row['pipeline']['waitedS']}s")


def test_wait_still_finds_drift_made_in_the_store_and_repair_ends_it(counters_stack: StackHandle) -> None:
    handle = counters_stack
    item = some_counter(handle)
    item["count"] += 5
    replace_counter(handle, item)  # after the pipeline caught up: nothing will correct it
    waited = handle.cli("verify", "counters", "--full", "--wait", "6", "--json", timeout=120)
    assert waited.returncode == 1, waited.stdout + waited.stderr
    row = report(waited)
    assert (row["missing"], row["extra"], row["wrong"]) == (0, 0, 1)
    assert row["samples"][0]["id"] == item["id"]
    # one whole read, then one point read of the one drifted key per re-check, and one to show the
    # wrong item's differing fields (a whole read keeps only digests)
    assert row["fullReads"] == 1
    wrong_shown = sum(1 for s in row["samples"] if s["kind"] == "wrong")
    assert row["itemsRead"] == row["held"] + (row["attempts"] - 1) + wrong_shown, row
    fixed = handle.cli("verify", "counters", "--full", "--wait", "6", "--repair", "--json", timeout=120)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    repaired = json.loads(fixed.stdout)[0]
    assert repaired["drifted"] == 1 and repaired["changed"] == 1 and repaired["driftAfter"] == 0, repaired
    assert handle.cli("verify", "counters", "--full").returncode == 0


def spec_keys(handle: StackHandle) -> list[ItemKey]:
    with psycopg.connect(handle.settings.pg.conninfo()) as conn:
        return [key for key, _doc in get_projection("counters", handle.settings).spec_all(PostgresSource(conn))]


def test_a_sample_finds_drift_only_in_its_keys_and_a_seed_repeats_it(counters_stack: StackHandle) -> None:
    handle = counters_stack
    item = some_counter(handle)
    drifted = ItemKey("counters", item["id"], item["subjectId"])
    item["count"] += 3
    replace_counter(handle, item)
    # an item the spec has not: a sample of spec keys cannot see it
    ghost = str(uuid.uuid4())
    replace_or_create = open_raw_store(handle.settings, "counters")
    assert isinstance(replace_or_create, CosmosStore)
    try:
        replace_or_create.container("counters").create_item({
            "id": f"{ghost}:likes", "subjectId": ghost, "kind": "likes", "count": 1, "sourceVersion": 0,
            "deleted": False,
        })
    finally:
        replace_or_create.close()
    try:
        keys = spec_keys(handle)
        everything = handle.cli("verify", "counters", "--sample", "100%", "--seed", "5", "--json")
        assert everything.returncode == 1, everything.stdout + everything.stderr
        row = report(everything)
        assert (row["missing"], row["extra"], row["wrong"]) == (0, 0, 1) and row["samples"][0]["id"] == item["id"]
        assert row["checked"] == row["sample"]["specItems"] == len(keys) == row["itemsRead"]
        assert row["fullReads"] == 0 and row["sample"] == {"fraction": 1.0, "seed": 5, "specItems": len(keys)}
        # a 20% sample without the drifted key is clean; one with it finds it
        without = next(s for s in range(1000) if drifted not in Sample(0.2, s))
        within = next(s for s in range(1000) if drifted in Sample(0.2, s))
        clean = handle.cli("verify", "counters", "--sample", "20%", "--seed", str(without), "--json")
        assert clean.returncode == 0, clean.stdout + clean.stderr
        chosen = [k for k in keys if k in Sample(0.2, without)]
        assert report(clean)["checked"] == len(chosen) == report(clean)["itemsRead"] < len(keys)
        found = handle.cli("verify", "counters", "--sample", "0.2", "--seed", str(within), "--json")
        assert found.returncode == 1 and report(found)["samples"][0]["id"] == item["id"]
        # the same seed picks the same keys
        again = handle.cli("verify", "counters", "--sample", "0.2", "--seed", str(within), "--json")
        assert report(again) == report(found)
        # the text says what a sample cannot see; a full verify sees the extra item too
        text = handle.cli("verify", "counters", "--sample", "20%", "--seed", str(without))
        assert text.returncode == 0 and "not detected" in text.stdout and f"seed {without}" in text.stdout
        full = handle.cli("verify", "counters", "--full", "--json")
        assert full.returncode == 1 and (report(full)["extra"], report(full)["wrong"]) == (1, 1)
    finally:
        assert handle.cli("verify", "counters", "--full", "--repair").returncode == 0
    assert handle.cli("verify", "counters", "--full").returncode == 0


def test_the_read_budget_paces_store_reads(counters_stack: StackHandle) -> None:
    handle = counters_stack
    held = report(handle.cli("verify", "counters", "--full", "--json"))["held"]
    budget = max(1, held // 4)  # a whole read: about 4 s of budget, of which 1 s may come at once
    env = {**handle.env, "PROJECTORS_VERIFY_READ_BUDGET_ITEMS_S": str(budget)}
    paced = handle.cli("verify", "counters", "--full", env=env)
    assert paced.returncode == 0, paced.stdout + paced.stderr
    assert "pacing to the read budget" in paced.stdout
    row = report(handle.cli("verify", "counters", "--full", "--json", env=env))
    assert row["itemsRead"] == held and row["readBudgetWaitS"] > 0
    # a rebuild's check of its new generation before the swap reads through the same budget
    rebuilt = handle.cli("rebuild", "counters", "--force", env=env, timeout=600)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert re.search(r"verify generation \d+: .* read \d+ store item\(s\), \d+s of it pacing to the read budget",
                     rebuilt.stdout), rebuilt.stdout
