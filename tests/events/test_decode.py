"""Decoding capture records: valid envelopes, and every kind of bad input named in the error."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from projectors.errors import PoisonEventError
from projectors.events.decode import decode
from projectors.events.models import UNAVAILABLE, PostRow

POST = str(uuid.uuid4())
AUTHOR = str(uuid.uuid4())


def envelope(op: str = "c", table: str = "posts", before: Any = None, after: Any = None, lsn: int = 42) -> bytes:
    if after is None and op in ("c", "r", "u"):
        after = {"id": POST, "author_id": AUTHOR, "body": "hi", "topics": ["a"], "visibility": "public"}
    return json.dumps(
        {
            "op": op,
            "before": before,
            "after": after,
            "source": {"schema": "public", "table": table, "lsn": lsn, "txId": 7, "connector": "postgresql"},
            "ts_ms": 1,
        }
    ).encode()


def test_a_valid_create_decodes_to_typed_rows() -> None:
    event = decode("social.public.posts", 1, 9, b"{}", envelope())
    assert event is not None
    assert event.op == "c" and event.lsn == 42 and event.origin == "social.public.posts:1:9"
    assert isinstance(event.after, PostRow) and event.after.author_id == AUTHOR and event.before is None


def test_snapshot_reads_are_creates_and_tombstones_are_skipped() -> None:
    event = decode("t", 0, 0, None, envelope(op="r"))
    assert event is not None and event.op == "c"
    assert decode("t", 0, 1, b"{}", None) is None


@pytest.mark.parametrize("topic", ["social.public.posts", "t"])  # the typed fast path, and the general one
def test_a_streamed_change_carries_its_transaction_and_a_snapshot_read_none(topic: str) -> None:
    for op in ("c", "u", "d"):
        event = decode(topic, 0, 0, None, envelope(op=op, before={"id": POST, "author_id": AUTHOR, "body": "x"}))
        assert event is not None and event.tx_id == 7, op
    # Debezium's txId on a snapshot read is the snapshot's own transaction, open until it ends
    event = decode(topic, 0, 0, None, envelope(op="r"))
    assert event is not None and event.tx_id is None


def test_unknown_columns_and_toast_placeholders_are_accepted() -> None:
    after = {"id": POST, "author_id": AUTHOR, "body": UNAVAILABLE, "topics": [UNAVAILABLE], "mood": "new column"}
    event = decode("t", 0, 0, None, envelope(op="u", after=after, before=after))
    assert event is not None and event.op == "u"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a Debezium envelope"),
        (json.dumps({"op": "c", "after": {"id": 5}}).encode(), "not a Debezium change envelope"),
        (json.dumps({"schema": {}, "payload": {}}).encode(), "schemas disabled"),
        (envelope(after={"id": POST, "author_id": "not-a-uuid", "body": "x"}), "violates the posts schema"),
        (envelope(after={"id": POST, "body": "x"}), "author_id"),
        (envelope(table="reactions", after={"post_id": POST, "user_id": AUTHOR, "kind": "hate"}), "kind"),
        (envelope(op="t"), "truncate"),
        (envelope(table="secrets", after={"id": 1}), "no projection reads"),
        (envelope(op="d", before=None), "delete without"),
        (envelope(op="x"), "op"),
    ],
)
def test_bad_input_is_poison_with_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(PoisonEventError, match=reason):
        decode("social.public.posts", 0, 1, b"k", value)


ROWS = {
    "users": {"id": POST, "handle": "h", "display_name": "H"},
    "posts": {"id": POST, "author_id": AUTHOR, "body": "hi", "topics": ["a"], "visibility": "public"},
    "replies": {"id": POST, "post_id": AUTHOR, "author_id": AUTHOR, "body": "re"},
    "follows": {"follower_id": POST, "followee_id": AUTHOR},
    "reactions": {"post_id": POST, "user_id": AUTHOR, "kind": "love"},
    "blocks": {"blocker_id": POST, "blocked_id": AUTHOR},
    "mutes": {"muter_id": POST, "muted_id": AUTHOR},
}


@pytest.mark.parametrize("table", sorted(ROWS))
@pytest.mark.parametrize("op", ["c", "r", "u", "d"])
def test_the_fast_path_by_topic_decodes_exactly_as_the_general_path(table: str, op: str) -> None:
    """A topic named after its table takes the typed one-pass path; any other topic name the
    general path. Both give the same event."""
    row = ROWS[table]
    value = envelope(op, table, before=row if op in ("u", "d") else None, after=None if op == "d" else row)
    fast = decode(f"social.public.{table}", 0, 3, None, value)
    general = decode("renamed-topic", 0, 3, None, value)
    assert fast is not None and general is not None
    assert fast._replace(origin="") == general._replace(origin="")
    assert type(fast.after) is type(general.after) and type(fast.before) is type(general.before)


def test_uuids_are_lower_cased_and_other_forms_are_poison() -> None:
    upper = {**ROWS["posts"], "id": POST.upper()}
    event = decode("social.public.posts", 0, 0, None, envelope(after=upper))
    assert event is not None and event.after is not None and event.after.id == POST  # type: ignore[attr-defined]
    braced = {**ROWS["posts"], "id": "{" + POST + "}"}
    with pytest.raises(PoisonEventError, match="after row violates the posts schema: id"):
        decode("social.public.posts", 0, 0, None, envelope(after=braced))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (envelope(op="c", after={"id": POST, "body": "x"}), "after row violates the posts schema: author_id"),
        (envelope(op="t"), "truncate of posts"),
        (envelope(op="d", before=None), "delete without a 'before' row"),
        (envelope(table="users", after={"handle": "x"}), "after row violates the users schema: id"),
    ],
)
def test_what_the_fast_path_refuses_is_reported_by_the_general_path(value: bytes, reason: str) -> None:
    with pytest.raises(PoisonEventError, match=reason):
        decode("social.public.posts", 0, 0, None, value)


def post_with(body: str, topics: list[str] | None = None, lsn: int = 42) -> bytes:
    after = {"id": POST, "author_id": AUTHOR, "body": body, "topics": topics or ["a"], "visibility": "public"}
    return envelope(after=after, lsn=lsn)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (post_with("x", ["bad\u0000topic"]), "NUL"),
        (post_with("nul \u0000 in the body"), "NUL"),
        (post_with("lone \ud800 high"), "surrogate"),
        (post_with("lone \udc00 low"), "surrogate"),
        (post_with("ok", lsn=2**64), "lsn"),
        (post_with("ok", lsn=-1), "lsn"),
    ],
)
def test_what_postgresql_cannot_hold_is_poison(value: bytes, reason: str) -> None:
    """NUL, lone surrogates and LSNs beyond 64 bits are malformed input: dead-lettered by decode,
    before they can make a projection's source read fail."""
    with pytest.raises(PoisonEventError, match=reason):
        decode("social.public.posts", 0, 1, b"{}", value)


def test_escapes_that_postgresql_can_hold_decode() -> None:
    for body in ("emoji \U0001f600 pair", "a backslash then u0000: \\u0000", "é and ü"):
        event = decode("social.public.posts", 0, 1, b"{}", post_with(body))
        assert event is not None and isinstance(event.after, PostRow) and event.after.body == body
