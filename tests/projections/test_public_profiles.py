"""The publicProfiles projection: what a change touches (pure), and on the real stack (PostgreSQL,
Debezium, the broker, its worker, the Cosmos REST server) its items equal an independent count of
the source after a power-law workload, match the committed JSON Schema, leave the bio out of the
indexing policy, read through `ReadClient.items`, and survive a replay."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from projectors.db.migrate import connect
from projectors.events.models import ChangeEvent, FollowRow, PostRow, UserRow
from projectors.projections.public_profiles import COLLECTION, PublicProfilesProjection, profile_key
from projectors.read.client import ReadClient
from projectors.stores.factory import open_raw_store
from projectors.workload import SocialWorkload
from tests.conftest import QUICK_BATCHES, StackHandle, local_stack
from tests.operations.test_operators import assert_clean

A, B = "0d6f4c3e-4a57-4cde-9c55-6a1e2f1b0a01", "0d6f4c3e-4a57-4cde-9c55-6a1e2f1b0a02"
P = "0d6f4c3e-4a57-4cde-9c55-6a1e2f1b0aff"
SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "projections" / "publicProfiles" / "publicProfiles.json"


def change(table: str, op: str, row: Any) -> ChangeEvent:
    return ChangeEvent(table, op, row if op == "d" else None, None if op == "d" else row, 1)  # type: ignore[arg-type]


def test_a_change_touches_the_profiles_whose_fields_or_counts_it_moves() -> None:
    touched = PublicProfilesProjection().touched
    assert touched(change("users", "u", UserRow(id=A, handle="a"))) == [profile_key(A)]
    assert touched(change("follows", "c", FollowRow(follower_id=A, followee_id=B))) == [
        profile_key(A), profile_key(B)
    ]
    assert touched(change("posts", "d", PostRow(id=P, author_id=B))) == [profile_key(B)]
    assert profile_key(A) == (COLLECTION, A, A)  # id and partition key are the user's id


@pytest.fixture(scope="module")
def profiles_stack() -> Iterator[StackHandle]:
    parts = ["postgres", "broker", "cosmos", "capture", "worker-publicProfiles"]
    with local_stack("projectors-profiles-", parts, **QUICK_BATCHES) as handle:
        yield handle


def expected_profiles(handle: StackHandle) -> dict[str, dict[str, Any]]:
    """The profiles computed here in Python from the raw rows (not the projection's SQL)."""
    with connect(handle.settings.pg) as conn:
        users = conn.execute("SELECT id::text, handle::text, display_name, bio FROM users").fetchall()
        follows = conn.execute("SELECT follower_id::text, followee_id::text FROM follows").fetchall()
        posts = conn.execute("SELECT author_id::text, visibility FROM posts").fetchall()
    followers = Counter(followee for _, followee in follows)
    following = Counter(follower for follower, _ in follows)
    public = Counter(author for author, visibility in posts if visibility == "public")
    return {
        u: {"handle": h, "displayName": d, "bio": b, "followers": followers[u], "following": following[u],
            "posts": public[u]}
        for u, h, d, b in users
    }


def shown(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in ("handle", "displayName", "bio", "followers", "following", "posts")}


def test_profiles_equal_the_source_after_a_power_law_workload_and_a_replay(profiles_stack: StackHandle) -> None:
    with connect(profiles_stack.settings.pg) as conn:
        load = SocialWorkload(conn, rng=random.Random(36))
        load.seed(users=60, posts=120, follows=400)  # a few popular users get most follows
        load.run(400)
        load.delete_user()
        conn.commit()
    assert_clean(profiles_stack, ["publicProfiles"])
    expected = expected_profiles(profiles_stack)
    popular = max(expected, key=lambda u: expected[u]["followers"])
    assert expected[popular]["followers"] >= 15, expected[popular]  # the workload's shape, not a tiny sample

    client = ReadClient(profiles_stack.settings)
    try:
        ids = [*expected, "not-a-uuid", "0d6f4c3e-4a57-4cde-9c55-6a1e2f1b0a00"]  # one bad, one unknown id
        found = client.items("publicProfiles", [profile_key(u) for u in ids])
        assert found.source == "store"
        assert {u: shown(d) for u, d in found.items()} == expected
        schema = json.loads(SCHEMA.read_text())
        store = open_raw_store(profiles_stack.settings, "publicProfiles")
        try:
            container = store.container(COLLECTION)  # type: ignore[attr-defined]
            stored = list(container.query_items("SELECT * FROM c", enable_cross_partition_query=True))
            assert len(stored) >= len(expected)  # live items, and the deleted user's tombstone
            for item in stored:  # as a read service gets them from the SDK, bookkeeping included
                jsonschema.validate(item, schema)
            properties = container.read()
            excluded = {p["path"] for p in properties["indexingPolicy"]["excludedPaths"]}
            assert "/bio/?" in excluded, properties["indexingPolicy"]
        finally:
            store.close()

        done = profiles_stack.cli("replay", "publicProfiles", "--force", "--wait", "180", timeout=400)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert_clean(profiles_stack, ["publicProfiles"])
        again = client.items("publicProfiles", [profile_key(u) for u in expected])
        assert {u: shown(d) for u, d in again.items()} == expected
    finally:
        client.close()
