"""Generated malformed input (Hypothesis): whatever arrives on a capture topic, decoding ends in a
change event, a no-op (None), or a PoisonEventError with a reason; never another exception. What
decodes is something every projection can name its touches for, and every string in it is text
PostgreSQL can hold (no NUL, no lone surrogate). The real stack runs the dead-letter path for such
events in tests/pipeline."""

from __future__ import annotations

import json
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projectors.errors import PoisonEventError
from projectors.events.decode import decode
from projectors.events.models import ROW_MODELS, ChangeEvent
from projectors.projections import PROJECTIONS

TABLES = sorted(ROW_MODELS)
TOPICS = [f"social.public.{t}" for t in TABLES] + ["social.public.unknown", "odd"]

# every kind of JSON scalar, strings with NUL, surrogates, huge and odd text
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "\udfff", "x" * 5000, "__debezium_unavailable_value",
                     str(uuid.uuid4()), str(uuid.uuid4()).upper(), "public", "private", "like"]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)), max_leaves=25)
columns = st.sampled_from(["id", "author_id", "body", "topics", "visibility", "handle", "post_id", "user_id",
                           "kind", "follower_id", "followee_id", "blocker_id", "blocked_id", "muter_id",
                           "muted_id", "created_at", "display_name", "bio"])
rows = st.one_of(st.none(), json_values, st.dictionaries(columns, json_values, max_size=8))


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly envelope-shaped: the fields a change has, with values of any type."""
    out: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        out["op"] = draw(st.one_of(st.sampled_from(["c", "r", "u", "d", "t", "m", "x", ""]), json_values))
    for side in ("before", "after"):
        if draw(st.integers(0, 4)):
            out[side] = draw(rows)
    if draw(st.integers(0, 5)):
        out["source"] = draw(st.one_of(json_values, st.fixed_dictionaries({
            "table": st.one_of(st.sampled_from(TABLES), json_values),
            "lsn": st.one_of(st.integers(min_value=-5, max_value=2**66), json_values),
        })))
    if draw(st.booleans()):
        out.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3)))
    return out


def check(topic: str, value: bytes | None) -> None:
    try:
        event = decode(topic, 0, 7, b"{}", value)
    except PoisonEventError as exc:
        assert str(exc), "a poison event needs a reason"
        return
    if event is None:
        return
    assert isinstance(event, ChangeEvent) and 0 <= event.lsn < 2**64
    for row in event.rows():
        for value_ in row.model_dump().values():
            for text in value_ if isinstance(value_, list) else [value_]:
                if isinstance(text, str):
                    assert "\x00" not in text
                    text.encode("utf-8")
    for projection in PROJECTIONS.values():
        projection.touched(event)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TOPICS), envelopes())
def test_generated_envelopes_decode_or_are_poison(topic: str, envelope: dict[str, Any]) -> None:
    check(topic, json.dumps(envelope).encode())


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(TOPICS), st.one_of(st.none(), st.binary(max_size=300), json_values.map(
    lambda v: json.dumps(v).encode())))
def test_arbitrary_bytes_and_json_decode_or_are_poison(topic: str, value: bytes | None) -> None:
    check(topic, value)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(TABLES), st.sampled_from(["c", "u", "d", "r"]), st.data())
def test_rows_near_valid_with_one_bad_field(table: str, op: str, data: st.DataObject) -> None:
    """A valid row of each table with one field replaced by a generated value."""
    ids = {c: str(uuid.uuid4()) for c in ("id", "author_id", "post_id", "user_id", "follower_id", "followee_id",
                                          "blocker_id", "blocked_id", "muter_id", "muted_id")}
    row: dict[str, Any] = {**ids, "body": "b", "topics": ["t"], "visibility": "public", "handle": "h",
                           "kind": "like"}
    row[data.draw(columns)] = data.draw(json_values)
    side = "before" if op == "d" else "after"
    envelope = {"op": op, side: row, "source": {"table": table, "lsn": data.draw(
        st.integers(min_value=-1, max_value=2**64))}}
    check(f"social.public.{table}", json.dumps(envelope).encode())
