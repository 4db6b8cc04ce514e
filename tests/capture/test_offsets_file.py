"""Reading Debezium's offsets file (Kafka Connect's FileOffsetBackingStore format). Pure logic: the
bytes below are a file the embedded engine wrote in a capture test run."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from projectors.capture.debezium_offsets import UnreadableOffsets, read_offsets, server_offset, snapshot_running

# A one-entry HashMap<byte[], byte[]>, as written by Debezium 3 (server "kill", a streamed INSERT).
WRITTEN = bytes.fromhex(
    "aced0005737200116a6176612e7574696c2e486173684d61700507dac1c31660d103000246000a6c6f6164466163"
    "746f724900097468726573686f6c6478703f4000000000000c77080000001000000001757200025b42acf317f806"
    "0854e00200007870000000295b2270726f6a6563746f72732d706f737467726573222c7b22736572766572223a22"
    "6b696c6c227d5d7571007e0002000000787b226c736e5f70726f63223a32373336373839362c226d657373616765"
    "54797065223a22494e53455254222c226c736e5f636f6d6d6974223a32373336373839362c226c736e223a323733"
    "36373839362c2274784964223a323234322c2274735f75736563223a313739363235353830363631393037367d78"
)


def array(value: object) -> bytes:
    """A further byte[] in the stream: TC_ARRAY, a back-reference to the [B class, length, bytes."""
    raw = json.dumps(value, separators=(",", ":")).encode()
    return b"\x75\x71\x00\x7e\x00\x02" + struct.pack(">i", len(raw)) + raw


def test_reads_the_key_and_the_source_offset(tmp_path: Path) -> None:
    path = tmp_path / "offsets.dat"
    path.write_bytes(WRITTEN)
    [(key, offset)] = read_offsets(path)
    assert key == ["projectors-postgres", {"server": "kill"}]
    assert offset["lsn"] == 27367896 and offset["messageType"] == "INSERT"
    assert server_offset(path, "kill") == offset
    assert server_offset(path, "social") is None
    assert not snapshot_running(offset)


def test_reads_every_entry_and_finds_each_server(tmp_path: Path) -> None:
    size_at = WRITTEN.index(b"\x77\x08") + 6
    two = WRITTEN[:size_at] + struct.pack(">i", 2) + WRITTEN[size_at + 4 : -1]
    snapshot = {"last_snapshot_record": False, "lsn": 123, "txId": 9, "snapshot": True}
    two += array(["projectors-postgres", {"server": "social"}]) + array(snapshot) + b"\x78"
    path = tmp_path / "offsets.dat"
    path.write_bytes(two)
    (kill_key, kill_offset), (social_key, social_offset) = read_offsets(path)
    assert kill_key[1] == {"server": "kill"} and social_key[1] == {"server": "social"}
    assert server_offset(path, "social") == social_offset == snapshot
    assert server_offset(path, "kill") == kill_offset and kill_offset["messageType"] == "INSERT"


def test_a_missing_or_empty_file_holds_no_offsets(tmp_path: Path) -> None:
    assert read_offsets(tmp_path / "absent.dat") == []
    (tmp_path / "empty.dat").write_bytes(b"")
    assert read_offsets(tmp_path / "empty.dat") == []


@pytest.mark.parametrize("cut", [10, 60, 100, len(WRITTEN) - 20])
def test_a_file_cut_short_is_unreadable_not_misread(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "offsets.dat"
    path.write_bytes(WRITTEN[:cut])
    with pytest.raises(UnreadableOffsets):
        read_offsets(path)


def test_not_a_serialization_stream_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "offsets.dat"
    path.write_bytes(b'{"lsn": 1}')
    with pytest.raises(UnreadableOffsets, match="not a Java serialization stream"):
        read_offsets(path)


def test_a_snapshot_is_running_until_its_last_record() -> None:
    assert snapshot_running({"snapshot": True, "last_snapshot_record": False, "lsn": 1})
    assert snapshot_running({"snapshot": True, "lsn": 1})
    assert not snapshot_running({"snapshot": True, "last_snapshot_record": True, "lsn": 1})
    assert not snapshot_running({"lsn": 1, "lsn_proc": 1, "messageType": "COMMIT"})
