"""Which records of a Debezium batch capture marks processed (pure logic, no servers)."""

from __future__ import annotations

from typing import Any

from projectors.capture.commit_points import committable


def change(lsn: int, kind: str = "INSERT") -> dict[str, Any]:
    return {"lsn": lsn, "lsn_proc": lsn, "lsn_commit": 10, "messageType": kind, "txId": 7}


def test_a_batch_ending_inside_a_group_of_one_lsn_leaves_that_group_unmarked() -> None:
    # a COPY: rows share the LSN of their WAL record; the batch ends inside the group at 300
    batch = [change(100), change(100), change(200), change(300), change(300)]
    assert committable(batch) == 3  # up to the last event at 200, which a higher LSN followed


def test_a_batch_that_ends_with_a_commit_or_after_one_is_marked_whole() -> None:
    assert committable([change(100), change(200), change(250, "COMMIT")]) == 3
    heartbeat_after_commit = {"lsn": 250, "lsn_proc": 250, "lsn_commit": 250, "messageType": "COMMIT"}
    assert committable([change(100), heartbeat_after_commit]) == 2


def test_a_heartbeat_inside_the_group_is_held_back_with_it() -> None:
    heartbeat_inside = change(300)  # a heartbeat carries the offset of where streaming is
    assert committable([change(200), change(300), heartbeat_inside]) == 1


def test_a_batch_that_is_one_group_marks_nothing_and_snapshot_reads_are_always_safe() -> None:
    assert committable([change(300), change(300)]) == 0
    assert committable([]) == 0
    snapshot = {"lsn": 50, "snapshot": "true", "last_snapshot_record": False}
    assert committable([snapshot, snapshot]) == 2
    assert committable([change(100), {}]) == 2  # no offset at all (not a streamed change): nothing to skip
