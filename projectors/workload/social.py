"""The random workload of `projectors sample`, the demo and the tests."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import LiteralString

import psycopg

from projectors.projections.notifications import MARK_READ
from projectors.workload.population import new_id
from projectors.workload.statements import (
    DELETE_POST,
    DELETE_USER,
    IF_NEW,
    INSERT_BLOCK,
    INSERT_FOLLOW,
    INSERT_MUTE,
    INSERT_POST,
    INSERT_REACTION,
    INSERT_REPLY,
    INSERT_USER,
    MIX,
    PUBLIC_SHARE,
    REACTION_KINDS,
    SOCIAL_EXTRA,
    TOGGLE_POST_VISIBILITY,
    TOPICS,
    UPDATE_POST_BODY,
    UPDATE_USER,
    WORDS,
)


# -- the random workload ---------------------------------------------------------------------------
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

    def _delete_any(self, table: str) -> None:
        """Delete one row of ``table``, chosen by the database (none when the table is empty)."""
        one = f"SELECT ctid FROM {table} ORDER BY random() LIMIT 1"
        self._exec(f"{table}.delete", f"DELETE FROM {table} WHERE ctid = ({one})", ())

    # -- operations -------------------------------------------------------------------------------
    def create_user(self) -> uuid.UUID:
        uid = new_id(self.rng)
        handle = f"user_{uid.hex[:10]}"
        self._exec("users.insert", INSERT_USER, (uid, handle, handle.replace("_", " ").title(), self._text(6)))
        self.users.append(uid)
        return uid

    def update_user(self) -> None:
        self._exec("users.update", UPDATE_USER, (self._text(8), self._user()))

    def delete_user(self) -> None:
        if len(self.users) < 10:
            return
        uid = self.users.pop(self.rng.randrange(5, len(self.users)))
        self._exec("users.delete", DELETE_USER, (uid,))
        self._forget_deleted_posts()

    def _forget_deleted_posts(self) -> None:
        rows = self.conn.execute("SELECT id FROM posts").fetchall()
        alive = {r[0] for r in rows}
        self.posts = [p for p in self.posts if p in alive]

    def create_post(self) -> uuid.UUID:
        pid = new_id(self.rng)
        topics = self.rng.sample(TOPICS, self.rng.randint(0, 3))
        visibility = "public" if self.rng.random() < PUBLIC_SHARE else "private"
        author = self._popular_user() if self.rng.random() < 0.5 else self._user()
        self._exec("posts.insert", INSERT_POST, (pid, author, self._text(12), topics, visibility))
        self.posts.append(pid)
        return pid

    def update_post(self) -> None:
        if not self.posts:
            return
        pid = self.rng.choice(self.posts)
        if self.rng.random() < 0.5:
            self._exec("posts.update", UPDATE_POST_BODY, (self._text(10), pid))
        else:
            self._exec("posts.update", TOGGLE_POST_VISIBILITY, (pid,))

    def delete_post(self) -> None:
        if len(self.posts) < 5:
            return
        pid = self.posts.pop(self.rng.randrange(len(self.posts)))
        self._exec("posts.delete", DELETE_POST, (pid,))

    def reply(self) -> None:
        if not self.posts:
            return
        rid = new_id(self.rng)
        self._exec("replies.insert", INSERT_REPLY, (rid, self.rng.choice(self.posts), self._user(), self._text(5)))

    def delete_reply(self) -> None:
        self._exec(
            "replies.delete", "DELETE FROM replies WHERE id = (SELECT id FROM replies ORDER BY random() LIMIT 1)", ()
        )

    def react(self) -> None:
        if not self.posts:
            return
        key = (self.rng.choice(self.posts), self._user(), self.rng.choice(REACTION_KINDS))
        self._exec("reactions.insert", INSERT_REACTION + IF_NEW, key)

    def unreact(self) -> None:
        self._delete_any("reactions")

    def follow(self) -> None:
        follower, followee = self._user(), self._popular_user()
        if follower != followee:
            self._exec("follows.insert", INSERT_FOLLOW + IF_NEW, (follower, followee))

    def unfollow(self) -> None:
        self._delete_any("follows")

    def _pair(self, name: str, query: LiteralString) -> None:
        x, y = self._user(), self._user()
        if x != y:
            self._exec(name, query + IF_NEW, (x, y))

    def block(self) -> None:
        self._pair("blocks.insert", INSERT_BLOCK)

    def unblock(self) -> None:
        self._delete_any("blocks")

    def mute(self) -> None:
        self._pair("mutes.insert", INSERT_MUTE)

    def unmute(self) -> None:
        self._delete_any("mutes")

    def mark_read(self) -> None:
        """A user reads their notifications: up to now, or (sometimes) up to a moment ago."""
        ago = None if self.rng.random() < 0.7 else datetime.now(UTC) - timedelta(seconds=self.rng.randint(1, 5))
        self._exec("notification_reads.upsert", MARK_READ, (self._user(), ago))  # the app's own write

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
        """Each operation with its weight: :data:`MIX`, then :data:`SOCIAL_EXTRA`."""
        operations: dict[str, Callable[[], object]] = {
            "posts.insert": self.create_post,
            "posts.update": self.update_post,
            "posts.delete": self.delete_post,
            "replies.insert": self.reply,
            "replies.delete": self.delete_reply,
            "reactions.insert": self.react,
            "reactions.delete": self.unreact,
            "follows.insert": self.follow,
            "follows.delete": self.unfollow,
            "blocks.insert": self.block,
            "blocks.delete": self.unblock,
            "mutes.insert": self.mute,
            "mutes.delete": self.unmute,
            "users.insert": self.create_user,
            "users.update": self.update_user,
            "users.delete": self.delete_user,
            "notification_reads.upsert": self.mark_read,
        }
        return [(operations[name], weight) for name, weight in {**MIX, **SOCIAL_EXTRA}.items()]

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
