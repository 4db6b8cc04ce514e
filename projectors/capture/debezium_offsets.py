"""Debezium's stored offsets, as Kafka Connect's ``FileOffsetBackingStore`` writes them: a Java
serialized ``HashMap<byte[], byte[]>`` whose keys and values are the JSON of the offset key
(``["<engine name>", {"server": "<topic prefix>"}]``) and of the source offset.

Only read here, never written: capture needs to know whether Debezium's last committed offset lies
inside a snapshot that capture has since seen finish.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

_MAGIC = b"\xac\xed\x00\x05"
# A byte[] in a serialization stream: TC_ARRAY, then its class descriptor (the first time in full,
# "[B" with its serialVersionUID, afterwards a back-reference), then a 4-byte length and the bytes.
_BYTE_ARRAY = re.compile(rb"\x75(?:\x72\x00\x02\[B.{8}\x02\x00\x00\x78\x70|\x71\x00\x7e..)(.{4})", re.DOTALL)
# HashMap.writeObject: block data of 8 bytes, the capacity then the number of entries.
_HASHMAP_SIZE = re.compile(rb"java\.util\.HashMap.*?\x78\x70.{8}\x77\x08.{4}(.{4})", re.DOTALL)


class UnreadableOffsets(ValueError):
    """The file is not a serialized map of JSON byte arrays (cut short, or another format)."""


def read_offsets(path: Path) -> list[tuple[Any, dict[str, Any]]]:
    """Every (offset key, source offset) pair in the file; empty if the file is missing or empty."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return parse_offsets(data, path)


def parse_offsets(data: bytes, path: Path | str = "offsets") -> list[tuple[Any, dict[str, Any]]]:
    """Every (offset key, source offset) pair in the bytes of an offsets file; empty if empty."""
    if not data:
        return []
    if not data.startswith(_MAGIC):
        raise UnreadableOffsets(f"{path}: not a Java serialization stream")
    size = _HASHMAP_SIZE.search(data)
    if size is None:
        raise UnreadableOffsets(f"{path}: no HashMap in the stream")
    entries = struct.unpack(">i", size.group(1))[0]
    arrays: list[bytes] = []
    pos = size.end()
    while len(arrays) < 2 * entries:
        found = _BYTE_ARRAY.search(data, pos)
        if found is None:
            raise UnreadableOffsets(f"{path}: {entries} entries announced, {len(arrays) // 2} found")
        length = struct.unpack(">i", found.group(1))[0]
        start = found.end()
        if length < 0 or start + length > len(data):
            raise UnreadableOffsets(f"{path}: a byte array runs past the end of the file")
        arrays.append(data[start : start + length])
        pos = start + length
    try:
        decoded = [json.loads(raw) for raw in arrays]
    except ValueError as exc:
        raise UnreadableOffsets(f"{path}: an offset is not JSON ({exc})") from exc
    return [(decoded[i], decoded[i + 1]) for i in range(0, len(decoded), 2) if isinstance(decoded[i + 1], dict)]


def snapshot_running(offset: dict[str, Any]) -> bool:
    """Whether Debezium would read this offset as a snapshot stopped before its end: the PostgreSQL
    connector writes ``snapshot: true`` on every snapshot record, and ``last_snapshot_record: true``
    on the last one, which it reads back as a completed snapshot."""
    return bool(offset.get("snapshot")) and not bool(offset.get("last_snapshot_record"))


def server_offset(path: Path, server: str) -> dict[str, Any] | None:
    """The source offset stored for the connector whose topic prefix is ``server``, if any."""
    for key, value in read_offsets(path):
        if isinstance(key, list) and len(key) == 2 and isinstance(key[1], dict) and key[1].get("server") == server:
            return value
    return None
