"""Realistic social activity written to the source database (demo, tests, benchmarks).

Every operation of the app: users sign up and edit profiles, post (public or private, with topics),
edit and delete posts, reply, react, follow and unfollow, block and mute. Follower counts follow a
power law: a few authors attract most follows.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

TOPICS = ("python", "kafka", "postgres", "graphs", "search", "music", "cats", "rust", "cooking", "travel")
WORDS = [
    "stream",
    "change",
    "capture",
    "event",
    "projection",
    "feed",
    "counter",
    "graph",
    "search",
    "replay",
    "offset",
    "partition",
    "broker",
    "slot",
    "snapshot",
    "lsn",
    "version",
    "batch",
    "commit",
    "follow",
    "reply",
    "like",
    "love",
    "laugh",
    "topic",
    "user",
    "post",
]


@dataclass
class SocialWorkload:
    conn: psycopg.Connection
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    users: list[uuid.UUID] = field(default_factory=list)
    posts: list[uuid.UUID] = field(default_factory=list)
    done: Counter[str] = field(default_factory=Counter)

    # -- helpers ----------------------------------------------------------------------------------
    def _text(self, words: int) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(words))

    def _user(self) -> uuid.UUID:
        return self.rng.choice(self.users)

    def _popular_user(self) -> uuid.UUID:
        """Pareto-weighted choice: low indexes are the celebrities."""
        index = min(int(self.rng.paretovariate(1.2)) - 1, len(self.users) - 1)
        return self.users[index]

    def _exec(self, name: str, query: str, params: tuple[object, ...]) -> int:
        cur = self.conn.execute(query.encode(), params)
        self.done[name] += cur.rowcount if cur.rowcount > 0 else 0
        return cur.rowcount

    # -- operations -------------------------------------------------------------------------------
    def create_user(self) -> uuid.UUID:
        uid = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        handle = f"user_{uid.hex[:10]}"
        self._exec(
            "users.insert",
            "INSERT INTO users (id, handle, display_name, bio) VALUES (%s, %s, %s, %s)",
            (uid, handle, handle.replace("_", " ").title(), self._text(6)),
        )
        self.users.append(uid)
        return uid

    def update_user(self) -> None:
        self._exec(
            "users.update", "UPDATE users SET bio = %s, updated_at = now() WHERE id = %s", (self._text(8), self._user())
        )

    def delete_user(self) -> None:
        if len(self.users) < 10:
            return
        uid = self.users.pop(self.rng.randrange(5, len(self.users)))
        self._exec("users.delete", "DELETE FROM users WHERE id = %s", (uid,))
        self._forget_deleted_posts()

    def _forget_deleted_posts(self) -> None:
        rows = self.conn.execute("SELECT id FROM posts").fetchall()
        alive = {r[0] for r in rows}
        self.posts = [p for p in self.posts if p in alive]

    def create_post(self) -> uuid.UUID:
        pid = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        topics = self.rng.sample(TOPICS, self.rng.randint(0, 3))
        visibility = "public" if self.rng.random() < 0.85 else "private"
        self._exec(
            "posts.insert",
            "INSERT INTO posts (id, author_id, body, topics, visibility) VALUES (%s, %s, %s, %s, %s)",
            (
                pid,
                self._popular_user() if self.rng.random() < 0.5 else self._user(),
                self._text(12),
                topics,
                visibility,
            ),
        )
        self.posts.append(pid)
        return pid

    def update_post(self) -> None:
        if not self.posts:
            return
        pid = self.rng.choice(self.posts)
        if self.rng.random() < 0.5:
            self._exec(
                "posts.update", "UPDATE posts SET body = %s, updated_at = now() WHERE id = %s", (self._text(10), pid)
            )
        else:
            self._exec(
                "posts.update",
                "UPDATE posts SET visibility = CASE visibility WHEN 'public' THEN 'private' ELSE 'public' END, "
                "updated_at = now() WHERE id = %s",
                (pid,),
            )

    def delete_post(self) -> None:
        if len(self.posts) < 5:
            return
        pid = self.posts.pop(self.rng.randrange(len(self.posts)))
        self._exec("posts.delete", "DELETE FROM posts WHERE id = %s", (pid,))

    def reply(self) -> None:
        if not self.posts:
            return
        self._exec(
            "replies.insert",
            "INSERT INTO replies (id, post_id, author_id, body) VALUES (%s, %s, %s, %s)",
            (
                uuid.UUID(int=self.rng.getrandbits(128), version=4),
                self.rng.choice(self.posts),
                self._user(),
                self._text(5),
            ),
        )

    def delete_reply(self) -> None:
        self._exec(
            "replies.delete", "DELETE FROM replies WHERE id = (SELECT id FROM replies ORDER BY random() LIMIT 1)", ()
        )

    def react(self) -> None:
        if not self.posts:
            return
        self._exec(
            "reactions.insert",
            "INSERT INTO reactions (post_id, user_id, kind) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (self.rng.choice(self.posts), self._user(), self.rng.choice(("like", "like", "love", "laugh"))),
        )

    def unreact(self) -> None:
        self._exec(
            "reactions.delete",
            "DELETE FROM reactions WHERE ctid = (SELECT ctid FROM reactions ORDER BY random() LIMIT 1)",
            (),
        )

    def follow(self) -> None:
        follower, followee = self._user(), self._popular_user()
        if follower != followee:
            self._exec(
                "follows.insert",
                "INSERT INTO follows (follower_id, followee_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (follower, followee),
            )

    def unfollow(self) -> None:
        self._exec(
            "follows.delete",
            "DELETE FROM follows WHERE ctid = (SELECT ctid FROM follows ORDER BY random() LIMIT 1)",
            (),
        )

    def _pair(self, table: str, a: str, b: str) -> None:
        x, y = self._user(), self._user()
        if x != y:
            self._exec(
                f"{table}.insert", f"INSERT INTO {table} ({a}, {b}) VALUES (%s, %s) ON CONFLICT DO NOTHING", (x, y)
            )

    def block(self) -> None:
        self._pair("blocks", "blocker_id", "blocked_id")

    def unblock(self) -> None:
        self._exec(
            "blocks.delete", "DELETE FROM blocks WHERE ctid = (SELECT ctid FROM blocks ORDER BY random() LIMIT 1)", ()
        )

    def mute(self) -> None:
        self._pair("mutes", "muter_id", "muted_id")

    def unmute(self) -> None:
        self._exec(
            "mutes.delete", "DELETE FROM mutes WHERE ctid = (SELECT ctid FROM mutes ORDER BY random() LIMIT 1)", ()
        )

    # -- mixes ------------------------------------------------------------------------------------
    def seed(self, users: int, posts: int, follows: int) -> None:
        for _ in range(users):
            self.create_user()
        for _ in range(follows):
            self.follow()
        for _ in range(posts):
            self.create_post()
        self.conn.commit()

    def mix(self) -> list[tuple[Callable[[], object], float]]:
        return [
            (self.create_post, 14),
            (self.update_post, 6),
            (self.delete_post, 2),
            (self.reply, 10),
            (self.delete_reply, 2),
            (self.react, 18),
            (self.unreact, 4),
            (self.follow, 14),
            (self.unfollow, 4),
            (self.block, 2),
            (self.unblock, 1),
            (self.mute, 2),
            (self.unmute, 1),
            (self.create_user, 3),
            (self.update_user, 3),
            (self.delete_user, 0.3),
        ]

    def run(self, operations: int, commit_every: int = 20) -> Counter[str]:
        """Apply ``operations`` random operations, committing every ``commit_every``."""
        if not self.users:
            self.seed(users=20, posts=20, follows=40)
        ops, weights = zip(*self.mix(), strict=True)
        for i in range(operations):
            self.rng.choices(ops, weights)[0]()
            if (i + 1) % commit_every == 0:
                self.conn.commit()
        self.conn.commit()
        return self.done
