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
