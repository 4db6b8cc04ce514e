"""Raw Kafka record -> :class:`ChangeEvent`, or a :class:`PoisonEventError` saying exactly why not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import ValidationError

from projectors.errors import PoisonEventError
from projectors.events.models import ROW_MODELS, TYPED_ENVELOPES, ChangeEvent, Envelope, Row


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def unholdable(value: bytes) -> str | None:
    """Why ``value`` holds a string PostgreSQL cannot store (NUL, a lone UTF-16 surrogate), else
    None. Both can only arrive as JSON escapes (``\\u``), which the JSON converter does not write
    for ordinary text: only such values are parsed to look."""
    if b"\\u" not in value:
        return None
    try:
        parsed = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # not JSON: said below
    for text in _strings(parsed):
        if "\x00" in text:
            return "a string holds NUL (\\u0000), which PostgreSQL text cannot hold"
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "a string holds a lone UTF-16 surrogate, which is not Unicode text"
    return None


def _short(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def decode(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> ChangeEvent | None:
    """Decode one record of a capture topic.

    Returns ``None`` for what carries no change (a tombstone after a delete, a logical message).
    Raises :class:`PoisonEventError` for anything malformed: not JSON, not a Debezium envelope, a
    row that violates its table's schema, an unknown table, or a truncate (which cannot be projected
    item by item: rebuild the projection).
    """
    origin = f"{topic}:{partition}:{offset}"
    if value is None:
        return None
    bad = unholdable(value)
    if bad is not None:
        raise PoisonEventError(bad)
    # Fast path: the table named by the topic, its typed envelope validated straight from the bytes.
    # Anything it does not accept takes the path below, which names exactly what is wrong.
    table = topic.rpartition(".")[2]
    typed = TYPED_ENVELOPES.get(table)
    if typed is not None:
        try:
            fast: Any = typed.model_validate_json(value)
        except ValidationError:
            fast = None
        if fast is not None and fast.source.table == table and fast.op in ("c", "r", "u", "d"):
            event = _event(table, fast.op, fast.before, fast.after, fast.source.lsn, origin, fast.source.txId)
            if event is not None:
                return event
    try:
        raw: Any = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PoisonEventError(f"value is not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise PoisonEventError(f"value is JSON {type(raw).__name__}, not a Debezium envelope object")
    if "payload" in raw and "schema" in raw:
        raise PoisonEventError(
            "envelope has a schema/payload wrapper: the JSON converter must run with schemas disabled"
        )
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as exc:
        raise PoisonEventError(f"not a Debezium change envelope: {_short(exc)}") from None
    if envelope.op == "m":
        return None
    table = envelope.source.table
    if envelope.op == "t":
        raise PoisonEventError(f"truncate of {table}: rebuild the projections that read it")
    model = ROW_MODELS.get(table)
    if model is None:
        raise PoisonEventError(f"event for table {table!r}, which no projection reads")

    def row(data: dict[str, object] | None, which: str) -> Row | None:
        if data is None:
            return None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise PoisonEventError(f"{which} row violates the {table} schema: {_short(exc)}") from None

    before, after = row(envelope.before, "before"), row(envelope.after, "after")
    event = _event(table, envelope.op, before, after, envelope.source.lsn, origin, envelope.source.txId)
    if event is None:
        if envelope.op == "d":
            raise PoisonEventError("delete without a 'before' row")
        raise PoisonEventError(f"op {envelope.op!r} without an 'after' row")
    return event


def _event(
    table: str, op: str, before: Row | None, after: Row | None, lsn: int, origin: str, tx_id: int | None,
) -> ChangeEvent | None:
    """The change, or ``None`` when the rows its op needs are missing. A snapshot read (``r``)
    carries no transaction: its row was committed before the snapshot began (Debezium's txId there
    is the snapshot's own transaction, open until the snapshot ends)."""
    if (op in ("c", "r", "u") and after is None) or (op == "d" and before is None):
        return None
    change: Literal["c", "u", "d"] = "u" if op == "u" else "d" if op == "d" else "c"
    # every field is validated already (the rows by their models, lsn by the envelope)
    return ChangeEvent(table, change, before, after, lsn, origin, None if op == "r" else tx_id)
