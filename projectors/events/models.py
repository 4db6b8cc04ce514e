"""Pydantic models of what Debezium publishes: the change envelope and every source row.

The row models are what the projectors may read from an event (its keys and the few columns that
decide which items it touches); unknown columns are ignored, so a column added to a table breaks
nothing. Data written to the stores never comes from an event (see docs/projections.md), so a TOAST
placeholder (``__debezium_unavailable_value``) can never reach a store.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

UNAVAILABLE = "__debezium_unavailable_value"


# PostgreSQL's text form of a uuid, lower-cased (validated in pydantic-core, no Python call per id)
Uuid = Annotated[
    str,
    StringConstraints(
        to_lower=True, pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ),
    WithJsonSchema({"type": "string", "format": "uuid"}),
]


class Row(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


R = TypeVar("R", bound=Row)


class UserRow(Row):
    id: Uuid
    handle: str | None = None
    display_name: str | None = None
    bio: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class PostRow(Row):
    id: Uuid
    author_id: Uuid
    body: str | None = None
    topics: list[str] = Field(default_factory=list)
    visibility: Literal["public", "private"] | None = None
    created_at: str | None = None
    updated_at: str | None = None


class ReplyRow(Row):
    id: Uuid
    post_id: Uuid
    author_id: Uuid
    body: str | None = None
    created_at: str | None = None


class FollowRow(Row):
    follower_id: Uuid
    followee_id: Uuid
    created_at: str | None = None


class ReactionRow(Row):
    post_id: Uuid
    user_id: Uuid
    kind: Literal["like", "love", "laugh"]
    created_at: str | None = None


class BlockRow(Row):
    blocker_id: Uuid
    blocked_id: Uuid
    created_at: str | None = None


class MuteRow(Row):
    muter_id: Uuid
    muted_id: Uuid
    created_at: str | None = None


class NotificationReadRow(Row):
    """The app's read state of a user's notifications (``read_up_to``: read through this time)."""

    user_id: Uuid
    read_up_to: str | None = None
    updated_at: str | None = None


ROW_MODELS: dict[str, type[Row]] = {
    "users": UserRow,
    "posts": PostRow,
    "replies": ReplyRow,
    "follows": FollowRow,
    "reactions": ReactionRow,
    "blocks": BlockRow,
    "mutes": MuteRow,
    "notification_reads": NotificationReadRow,
}


class Source(BaseModel):
    """``source`` block of a Debezium PostgreSQL event (the fields the projectors rely on)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    connector: str | None = None
    name: str | None = None
    db: str | None = None
    schema_: str = Field(alias="schema")
    table: str
    lsn: int = Field(ge=0, le=2**64 - 1)  # a PostgreSQL LSN is 64 bits
    txId: int | None = None
    ts_ms: int | None = None
    snapshot: str | None = None


class Envelope(BaseModel):
    """The value of a change event (JSON converter, schemas disabled)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    op: Literal["c", "r", "u", "d", "t", "m"]
    before: dict[str, object] | None = None
    after: dict[str, object] | None = None
    source: Source
    ts_ms: int | None = None


class TypedEnvelope(BaseModel, Generic[R]):
    """An envelope whose rows are one table's model: decode's fast path validates it in one pass
    of pydantic-core over the raw JSON bytes."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    op: Literal["c", "r", "u", "d", "t", "m"]
    before: R | None = None
    after: R | None = None
    source: Source


TYPED_ENVELOPES: dict[str, type[TypedEnvelope[Any]]] = {
    table: TypedEnvelope[row] for table, row in ROW_MODELS.items()  # type: ignore[valid-type]
}


def add_row_models(rows: dict[str, type[Row]]) -> None:
    """Teach the decoder the row models of tables a projection module declares (``Descriptor.rows``);
    called once, by ``projectors.projections`` when it collects the descriptors. A table that has
    a model already keeps it: a projection cannot redefine a shared table's row."""
    for table, row in rows.items():
        if table in ROW_MODELS and ROW_MODELS[table] is not row:
            raise ValueError(f"table {table!r} has a row model already ({ROW_MODELS[table].__name__})")
        ROW_MODELS[table] = row
        TYPED_ENVELOPES[table] = TypedEnvelope[row]  # type: ignore[valid-type]


class ChangeEvent(NamedTuple):
    """A decoded, validated change: the table's typed rows and where it came from.

    Built only by ``decode`` from rows its models validated, so it validates nothing itself (a named
    tuple: built in C; a pydantic model's ``model_construct`` cost more than the rest of the event's
    decode after pydantic-core's JSON pass)."""

    table: str
    op: Literal["c", "u", "d"]
    before: Row | None
    after: Row | None
    lsn: int
    origin: str = ""
    # the PostgreSQL transaction of a streamed change (Debezium's source.txId); None for snapshot
    # reads: a projection reads the source only in a snapshot that already sees this transaction
    tx_id: int | None = None

    def rows(self) -> list[Row]:
        """``before`` and ``after`` (whichever exist): a change touches what both rows touch."""
        return [r for r in (self.before, self.after) if r is not None]
