"""The sample workload against a real PostgreSQL: what it knows equals what the database holds,
through user deletes (cascades), and a workload given users and posts from the database reads the
rest and edits and deletes it too."""

from __future__ import annotations

import random
import uuid
from typing import Any

import psycopg

from projectors.db.migrate import connect
from projectors.workload import Population, SocialWorkload
from tests.conftest import running


def held(conn: psycopg.Connection[Any]) -> dict[str, set[Any]]:
    def rows(query: str) -> set[Any]:
        return {r if len(r) > 1 else r[0] for r in conn.execute(query.encode()).fetchall()}

    return {
        "users": rows("SELECT id FROM users"),
        "posts": rows("SELECT id, author_id FROM posts"),
        "replies": rows("SELECT id, author_id FROM replies"),
        "reactions": rows("SELECT post_id, user_id, kind FROM reactions"),
        "follows": rows("SELECT follower_id, followee_id FROM follows"),
        "blocks": rows("SELECT blocker_id, blocked_id FROM blocks"),
        "mutes": rows("SELECT muter_id, muted_id FROM mutes"),
        "readers": rows("SELECT user_id FROM notification_reads"),
    }


def known(p: Population) -> dict[str, set[Any]]:
    return {
        "users": set(p.users),
        "posts": {(pid, p.authors[pid]) for pid in p.posts},
        "replies": {(rid, p.authors[rid]) for rid in p.replies},
        "reactions": set(p.reactions),
        "follows": set(p.follows),
        "blocks": set(p.blocks),
        "mutes": set(p.mutes),
        "readers": set(p.readers),
    }


def test_the_sample_workload_knows_every_row_and_a_resumed_one_reads_the_rest() -> None:
    with running("projectors-workload-", ["postgres"]) as (settings, _env), connect(settings.pg) as conn:
        load = SocialWorkload(conn, rng=random.Random(5))
        load.seed(users=30, posts=30, follows=90)
        done = load.run(1_500)
        assert done["users.delete"] >= 2 and done["notification_reads.upsert"] > 0 and done["posts.delete"] > 0
        assert held(conn) == known(load.population)
        follows = held(conn)["follows"]
        top = max({b for _a, b in follows}, key=lambda u: sum(1 for _a, b in follows if b == u))
        assert top in load.users[:5]  # the first users are the popular ones

        resumed = SocialWorkload(conn, rng=random.Random(6))
        resumed.users = [uuid.UUID(r[0]) for r in conn.execute("SELECT id::text FROM users").fetchall()]
        resumed.posts = [uuid.UUID(r[0]) for r in conn.execute("SELECT id::text FROM posts").fetchall()]
        again = resumed.run(600)
        for name in ("replies.delete", "reactions.delete", "follows.delete", "posts.update"):
            assert again[name] > 0, (name, again)
        assert held(conn) == known(resumed.population)
