"""Pure rules: which items each projection says a change touched, and how a plan becomes operations."""

from __future__ import annotations

import uuid
from typing import Any

from projectors.events.models import (
    UNAVAILABLE,
    BlockRow,
    ChangeEvent,
    FollowRow,
    MuteRow,
    PostRow,
    ReactionRow,
    ReplyRow,
    Row,
    UserRow,
)
from projectors.model import ItemKey, Put, Remove
from projectors.projections import PROJECTIONS
from projectors.projections.base import ops_for
from projectors.projections.counters import counter_key
from projectors.projections.feed import AuthorTouch, PairTouch, PostTouch

A, B, P, R = (str(uuid.uuid4()) for _ in range(4))


def event(op: str, before: Row | None = None, after: Row | None = None) -> ChangeEvent:
    table = {UserRow: "users", PostRow: "posts", FollowRow: "follows", ReactionRow: "reactions",
             ReplyRow: "replies", BlockRow: "blocks", MuteRow: "mutes"}[type(after or before)]  # type: ignore[index]
    return ChangeEvent(table=table, op=op, before=before, after=after, lsn=1)  # type: ignore[arg-type]


def touched(name: str, ev: ChangeEvent) -> set[Any]:
    return set(PROJECTIONS[name].touched(ev))


def post(visibility: str = "public", topics: list[str] | None = None) -> PostRow:
    return PostRow(id=P, author_id=A, body="b", topics=topics or ["x"], visibility=visibility)  # type: ignore[arg-type]


# -- feed ---------------------------------------------------------------------------------------

def test_feed_post_changes_touch_the_post_never_the_store() -> None:
    """Created, edited, made private, deleted: the recipients come from PostgreSQL (no lookup)."""
    assert touched("feed", event("c", after=post())) == {PostTouch(P, A, created=True)}
    assert touched("feed", event("u", before=post(), after=post("private"))) == {PostTouch(P, A)}
    assert touched("feed", event("d", before=post())) == {PostTouch(P, A)}
    # a post private before and after: only its author's item can change
    assert touched("feed", event("c", after=post("private"))) == {PostTouch(P, A, created=True, public=False)}
    assert touched("feed", event("u", before=post("private"), after=post("private"))) == {
        PostTouch(P, A, public=False)
    }
    assert touched("feed", event("d", before=post("private"))) == {PostTouch(P, A, public=False)}


def test_feed_follow_adds_and_unfollow_removes_the_followees_posts_and_may_cross_the_threshold() -> None:
    follow = FollowRow(follower_id=B, followee_id=A)
    assert touched("feed", event("c", after=follow)) == {PairTouch(B, A, False), AuthorTouch(A)}
    assert touched("feed", event("d", before=follow)) == {PairTouch(B, A, True), AuthorTouch(A)}


def test_feed_mute_hides_one_way_and_block_hides_both_ways() -> None:
    assert touched("feed", event("c", after=MuteRow(muter_id=B, muted_id=A))) == {PairTouch(B, A, True)}
    assert touched("feed", event("d", before=MuteRow(muter_id=B, muted_id=A))) == {PairTouch(B, A, False)}
    assert touched("feed", event("c", after=BlockRow(blocker_id=B, blocked_id=A))) == {
        PairTouch(B, A, True),
        PairTouch(A, B, True),
    }


def test_feed_ignores_reactions_and_users() -> None:
    assert touched("feed", event("c", after=ReactionRow(post_id=P, user_id=B, kind="like"))) == set()
    assert touched("feed", event("u", after=UserRow(id=A, handle="a"))) == set()


# -- counters -----------------------------------------------------------------------------------

def test_counters_only_likes_count_among_reactions() -> None:
    assert touched("counters", event("c", after=ReactionRow(post_id=P, user_id=B, kind="like"))) == {
        counter_key(P, "likes")
    }
    assert touched("counters", event("c", after=ReactionRow(post_id=P, user_id=B, kind="love"))) == set()


def test_counters_follow_touches_both_sides_and_posts_touch_author_and_own_counters() -> None:
    assert touched("counters", event("d", before=FollowRow(follower_id=B, followee_id=A))) == {
        counter_key(B, "following"),
        counter_key(A, "followers"),
    }
    assert touched("counters", event("d", before=post())) == {
        counter_key(A, "posts"),
        counter_key(P, "likes"),
        counter_key(P, "replies"),
    }
    reply = ReplyRow(id=R, post_id=P, author_id=B, body="r")
    assert touched("counters", event("c", after=reply)) == {counter_key(P, "replies")}
    assert counter_key(P, "likes") == ItemKey("counters", f"{P}:likes", P)


# -- graph --------------------------------------------------------------------------------------

def test_graph_post_touches_node_authorship_topics_old_and_new() -> None:
    before, after = post(topics=["x", "y"]), post(topics=["y", "z", UNAVAILABLE])
    got = touched("graph", event("u", before=before, after=after))
    assert got == {
        ItemKey("Post", P),
        ItemKey("AUTHORED", f"{A}:{P}"),
        *(ItemKey("Topic", t) for t in "xyz"),
        *(ItemKey("TAGGED", f"{P}:{t}") for t in "xyz"),
    }


def test_graph_edges_have_ids_from_the_row_key() -> None:
    assert touched("graph", event("c", after=ReactionRow(post_id=P, user_id=B, kind="love"))) == {
        ItemKey("REACTED", f"{B}:{P}:love")
    }
    assert touched("graph", event("c", after=ReplyRow(id=R, post_id=P, author_id=B))) == {ItemKey("REPLIED", R)}
    assert touched("graph", event("c", after=BlockRow(blocker_id=A, blocked_id=B))) == {ItemKey("BLOCKS", f"{A}:{B}")}
    assert touched("graph", event("c", after=FollowRow(follower_id=A, followee_id=B))) == {
        ItemKey("FOLLOWS", f"{A}:{B}")
    }
    assert touched("graph", event("c", after=MuteRow(muter_id=A, muted_id=B))) == set()


# -- search -------------------------------------------------------------------------------------

def test_search_indexes_posts_and_users_only() -> None:
    assert touched("search", event("u", before=post(), after=post("private"))) == {ItemKey("posts", P)}
    assert touched("search", event("d", before=UserRow(id=A))) == {ItemKey("users", A)}
    assert touched("search", event("c", after=FollowRow(follower_id=A, followee_id=B))) == set()


# -- plan -> operations -------------------------------------------------------------------------

def test_ops_put_what_the_spec_has_and_remove_what_it_has_not_with_the_read_ticket() -> None:
    k1, k2 = ItemKey("c", "1"), ItemKey("c", "2")
    ops = ops_for([k2, k1, k1], {k1: {"id": "1"}}, version=9)
    assert ops == [Put(k1, 9, {"id": "1"}), Remove(k2, 9)]
    assert ops[0].doc == {"id": "1"}  # type: ignore[union-attr]


def test_graph_blank_topics_are_not_touched() -> None:
    keys = touched("graph", event("c", after=post(topics=["", " ", "real"])))
    assert {k.id for k in keys if k.collection == "Topic"} == {"real"}
