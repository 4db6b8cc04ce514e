"""The statements that write each table, the operation mix and the words posts are made of."""

from __future__ import annotations

import uuid
from collections.abc import Hashable
from typing import LiteralString, TypeVar

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


T = TypeVar("T", bound=Hashable)
Pair = tuple[uuid.UUID, uuid.UUID]
ReactionKey = tuple[uuid.UUID, uuid.UUID, str]  # post, user, kind

REACTION_KINDS = ("like", "like", "love", "laugh")
PUBLIC_SHARE = 0.85  # of new posts
PARETO_ALPHA = 1.2  # of the popular-user draw in a population without seeded followers

# The operation mix, as relative weights, in the order drawn: the planned load's (bulk, steady).
# The sample workload (SocialWorkload) adds user deletes and notification reads (SAMPLE_MIX). The
# planned load leaves user deletes out: deleting a user cascades to an unbounded number of rows
# (10,000 follows for a celebrity), which is not load; and it writes no read state, so that its
# mix, and the benchmark figures measured with it, stay the same.
MIX: dict[str, float] = {
    "posts.insert": 14,
    "posts.update": 6,
    "posts.delete": 2,
    "replies.insert": 10,
    "replies.delete": 2,
    "reactions.insert": 18,
    "reactions.delete": 4,
    "follows.insert": 14,
    "follows.delete": 4,
    "blocks.insert": 2,
    "blocks.delete": 1,
    "mutes.insert": 2,
    "mutes.delete": 1,
    "users.insert": 3,
    "users.update": 3,
}

SOCIAL_EXTRA: dict[str, float] = {"users.delete": 0.3, "notification_reads.upsert": 3}
SAMPLE_MIX: dict[str, float] = {**MIX, **SOCIAL_EXTRA}


def _pair_statements(table: LiteralString, a: LiteralString, b: LiteralString) -> tuple[LiteralString, LiteralString]:
    """The insert and the delete of a row of a (user, user) table."""
    return (
        "INSERT INTO " + table + " (" + a + ", " + b + ") VALUES (%s, %s)",
        "DELETE FROM " + table + " WHERE " + a + " = %s AND " + b + " = %s",
    )


INSERT_USER: LiteralString = "INSERT INTO users (id, handle, display_name, bio) VALUES (%s, %s, %s, %s)"
UPDATE_USER: LiteralString = "UPDATE users SET bio = %s, updated_at = now() WHERE id = %s"
DELETE_USER: LiteralString = "DELETE FROM users WHERE id = %s"
INSERT_POST: LiteralString = "INSERT INTO posts (id, author_id, body, topics, visibility) VALUES (%s, %s, %s, %s, %s)"
UPDATE_POST_BODY: LiteralString = "UPDATE posts SET body = %s, updated_at = now() WHERE id = %s"
TOGGLE_POST_VISIBILITY: LiteralString = (
    "UPDATE posts SET visibility = CASE visibility WHEN 'public' THEN 'private' ELSE 'public' END, "
    "updated_at = now() WHERE id = %s"
)
DELETE_POST: LiteralString = "DELETE FROM posts WHERE id = %s"
INSERT_REPLY: LiteralString = "INSERT INTO replies (id, post_id, author_id, body) VALUES (%s, %s, %s, %s)"
DELETE_REPLY: LiteralString = "DELETE FROM replies WHERE id = %s"
INSERT_REACTION: LiteralString = "INSERT INTO reactions (post_id, user_id, kind) VALUES (%s, %s, %s)"
DELETE_REACTION: LiteralString = "DELETE FROM reactions WHERE post_id = %s AND user_id = %s AND kind = %s"
INSERT_FOLLOW, DELETE_FOLLOW = _pair_statements("follows", "follower_id", "followee_id")
INSERT_BLOCK, DELETE_BLOCK = _pair_statements("blocks", "blocker_id", "blocked_id")
INSERT_MUTE, DELETE_MUTE = _pair_statements("mutes", "muter_id", "muted_id")

IF_NEW: LiteralString = " ON CONFLICT DO NOTHING"  # appended to an INSERT: a row that exists is left as is

COPY_USERS: LiteralString = "COPY users (id, handle, display_name, bio) FROM STDIN"
COPY_FOLLOWS: LiteralString = "COPY follows (follower_id, followee_id) FROM STDIN"
COPY_POSTS: LiteralString = "COPY posts (id, author_id, body, topics, visibility) FROM STDIN"
