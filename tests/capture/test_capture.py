"""Capture on the real parts: PostgreSQL (logical decoding) -> embedded Debezium -> Kafka broker."""

from __future__ import annotations

import json
import os
import signal
import struct
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg

from projectors.capture.connector import heartbeat_topic
from projectors.capture.debezium_offsets import UnreadableOffsets, read_offsets, server_offset
from projectors.capture.topics import TopicRecord
from projectors.model import table_topic
from projectors.projections import SOURCE_TABLES
from projectors.settings import Settings
from projectors.stack.commands import Capture
from tests.capture.helpers import capture_settings, read_until, run_capture, streamed_and_stopped
from tests.conftest import StackHandle


def topics_of(settings: Settings) -> list[str]:
    return [table_topic(settings.capture.topic_prefix, t) for t in SOURCE_TABLES]


def uid() -> uuid.UUID:
    return uuid.uuid4()


def test_every_change_of_every_table_reaches_its_topic(stack: StackHandle) -> None:
    settings = capture_settings(stack, "evt")
    u0, p0 = uid(), uid()
    with stack.pg() as conn:  # rows that exist before capture starts: snapshot events
        conn.execute("INSERT INTO users (id, handle) VALUES (%s, %s)", (u0, f"pre_{u0.hex[:8]}"))
        conn.execute("INSERT INTO posts (id, author_id, body) VALUES (%s, %s, 'before capture')", (p0, u0))

    capture = Capture(settings)
    capture.start(120)
    try:
        ua, ub, uc, p1, p2, r1 = uid(), uid(), uid(), uid(), uid(), uid()
        with stack.pg() as conn:
            for u in (ua, ub, uc):
                conn.execute("INSERT INTO users (id, handle) VALUES (%s, %s)", (u, f"u_{u.hex[:10]}"))
            conn.commit()
            conn.execute("UPDATE users SET bio = 'edited' WHERE id = %s", (ua,))
            conn.execute("DELETE FROM users WHERE id = %s", (uc,))
            conn.execute(
                "INSERT INTO posts (id, author_id, body, topics) VALUES (%s, %s, 'hello', '{kafka,python}')", (p1, ua)
            )
            conn.execute("INSERT INTO posts (id, author_id, body) VALUES (%s, %s, 'gone soon')", (p2, ua))
            conn.commit()
            conn.execute("UPDATE posts SET visibility = 'private' WHERE id = %s", (p1,))
            conn.execute("DELETE FROM posts WHERE id = %s", (p2,))
            conn.execute("INSERT INTO replies (id, post_id, author_id, body) VALUES (%s, %s, %s, 'hi')", (r1, p1, ub))
            conn.execute("INSERT INTO follows (follower_id, followee_id) VALUES (%s, %s)", (ub, ua))
            conn.execute("INSERT INTO reactions (post_id, user_id, kind) VALUES (%s, %s, 'like')", (p1, ub))
            conn.execute("INSERT INTO blocks (blocker_id, blocked_id) VALUES (%s, %s)", (ua, ub))
            conn.execute("INSERT INTO mutes (muter_id, muted_id) VALUES (%s, %s)", (ua, ub))
            conn.commit()
            conn.execute("DELETE FROM replies WHERE id = %s", (r1,))
            conn.execute("DELETE FROM follows WHERE follower_id = %s AND followee_id = %s", (ub, ua))
            conn.execute("DELETE FROM reactions WHERE post_id = %s AND user_id = %s", (p1, ub))
            conn.execute("DELETE FROM blocks WHERE blocker_id = %s AND blocked_id = %s", (ua, ub))
            conn.execute("DELETE FROM mutes WHERE muter_id = %s AND muted_id = %s", (ua, ub))
            conn.commit()

        s = str
        expected: dict[tuple[str, str], list[str]] = {
            ("users", s(u0)): ["r"],
            ("posts", s(p0)): ["r"],
            ("users", s(ua)): ["c", "u"],
            ("users", s(ub)): ["c"],
            ("users", s(uc)): ["c", "d", "tombstone"],
            ("posts", s(p1)): ["c", "u"],
            ("posts", s(p2)): ["c", "d", "tombstone"],
            ("replies", s(r1)): ["c", "d", "tombstone"],
            ("follows", f"{ub}|{ua}"): ["c", "d", "tombstone"],
            ("reactions", f"{p1}|{ub}|like"): ["c", "d", "tombstone"],
            ("blocks", f"{ua}|{ub}"): ["c", "d", "tombstone"],
            ("mutes", f"{ua}|{ub}"): ["c", "d", "tombstone"],
        }
        key_columns = {
            "users": ["id"],
            "posts": ["id"],
            "replies": ["id"],
            "follows": ["follower_id", "followee_id"],
            "reactions": ["post_id", "user_id", "kind"],
            "blocks": ["blocker_id", "blocked_id"],
            "mutes": ["muter_id", "muted_id"],
        }

        def key_of(record: TopicRecord) -> tuple[str, str]:
            table = record.topic.rsplit(".", 1)[1]
            return table, "|".join(str(record.key[c]) for c in key_columns[table])

        def grouped(records: list[TopicRecord]) -> dict[tuple[str, str], list[TopicRecord]]:
            out: dict[tuple[str, str], list[TopicRecord]] = defaultdict(list)
            for r in records:
                out[key_of(r)].append(r)
            return out

        def complete(records: list[TopicRecord]) -> bool:
            got = grouped(records)
            return all(len(got.get(k, [])) >= len(v) for k, v in expected.items())

        records = read_until(settings, topics_of(settings), complete)
        got = grouped(records)
        for key, ops in expected.items():
            seen = [("tombstone" if r.value is None else r.value["op"]) for r in got[key]]
            assert seen == ops, f"{key}: {seen} != {ops}"
            assert len({r.partition for r in got[key]}) == 1, f"{key} spread over partitions"
            lsns = [r.value["source"]["lsn"] for r in got[key] if r.value is not None]
            assert all(isinstance(x, int) and x > 0 for x in lsns)
            assert lsns == sorted(lsns)

        snap = got[("users", s(u0))][0].value
        assert snap["source"]["snapshot"] in (
            "true",
            "first",
            "last",
            "first_in_data_collection",
            "last_in_data_collection",
        )
        assert snap["before"] is None and snap["after"]["handle"] == f"pre_{u0.hex[:8]}"

        upd = got[("posts", s(p1))][1].value
        assert upd["before"]["visibility"] == "public" and upd["after"]["visibility"] == "private"
        assert got[("posts", s(p1))][0].value["after"]["topics"] == ["kafka", "python"]
        # REPLICA IDENTITY FULL on posts and replies: a delete says whose post and which post it was
        deleted_post = got[("posts", s(p2))][1].value
        assert deleted_post["before"]["author_id"] == s(ua) and deleted_post["after"] is None
        assert got[("replies", s(r1))][1].value["before"]["post_id"] == s(p1)
        # REPLICA IDENTITY DEFAULT: the key is all a follow delete needs
        assert got[("follows", f"{ub}|{ua}")][1].value["before"]["followee_id"] == s(ua)
        assert got[("users", s(ua))][1].value["after"]["bio"] == "edited"

        # heartbeats are published and advance the slot on a database whose captured tables are quiet
        with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS scratch_wal (n int)")
            conn.execute("INSERT INTO scratch_wal SELECT generate_series(1, 1000)")
            target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
            deadline = time.monotonic() + 30
            advanced = False
            while time.monotonic() < deadline and not advanced:
                advanced = bool(
                    conn.execute(
                        "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
                        (target, settings.capture.slot_name),
                    ).fetchone()[0]
                )  # type: ignore[index]
                time.sleep(0.5)
        assert advanced, "the replication slot did not advance past quiet-database WAL"
        beats = read_until(settings, [heartbeat_topic("evt")], lambda rs: len(rs) >= 1, timeout_s=20)
        assert beats and "ts_ms" in beats[0].value
    finally:
        capture.stop()


def test_sigkill_mid_stream_loses_nothing(stack: StackHandle) -> None:
    settings = capture_settings(stack, "kill")
    capture = Capture(settings)
    capture.start(120)
    total = 1500
    written: list[str] = []
    stop_writer = threading.Event()

    def writer() -> None:
        with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
            for i in range(total):
                u = uid()
                conn.execute("INSERT INTO users (id, handle) VALUES (%s, %s)", (u, f"k{i}_{u.hex[:8]}"))
                written.append(str(u))
                if stop_writer.is_set():
                    break
                time.sleep(0.002)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 400:
            time.sleep(0.05)
        pid = capture.pid()
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        while capture.pid() is not None:
            time.sleep(0.1)
        capture.start(120)  # again, while the writer goes on
        thread.join(120)
        assert len(written) == total
        wanted = set(written)
        records = read_until(
            settings,
            [table_topic("kill", "users")],
            lambda rs: wanted <= {r.key["id"] for r in rs if r.key},
            timeout_s=120,
        )
        missing = wanted - {r.key["id"] for r in records if r.key}
        assert not missing, f"{len(missing)} committed inserts never reached the topic"
    finally:
        stop_writer.set()
        thread.join(30)
        capture.stop()


def test_a_dropped_or_recreated_slot_is_refused_until_reset(stack: StackHandle) -> None:
    name = "slot"
    settings, env, capture = streamed_and_stopped(stack, name)

    gap = uid()
    with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (f"{name}_slot",))
        conn.execute("INSERT INTO users (id, handle) VALUES (%s, %s)", (gap, f"gap_{gap.hex[:10]}"))
    dropped = run_capture(stack, env, code=3)
    assert "no longer exists" in dropped.stderr and "projectors capture --reset" in dropped.stderr

    with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (f"{name}_slot",))
    assert "recreated" in run_capture(stack, env, code=3).stderr
    assert "dropped replication slot" in run_capture(stack, env, "--reset", code=0).stdout
    capture.start(120)  # a new snapshot brings the row written during the gap
    try:
        records = read_until(
            settings, [table_topic(name, "users")], lambda rs: any(r.key["id"] == str(gap) for r in rs)
        )
        snap = [r for r in records if r.key["id"] == str(gap)]
        assert snap and snap[-1].value["op"] == "r"
    finally:
        capture.stop()


def test_bad_settings_stop_capture_at_start_with_a_clear_message(stack: StackHandle) -> None:
    base = {**stack.env, "PROJECTORS_CAPTURE_STATE_DIR": str(stack.settings.stack.dir / "bad")}

    wrong_password = stack.cli("capture", env={**base, "PROJECTORS_PG_PASSWORD": "not-the-password"})
    assert wrong_password.returncode == 2
    assert "password authentication failed" in wrong_password.stderr
    assert "PROJECTORS_PG_PASSWORD" in wrong_password.stderr

    unpublished = stack.cli("capture", env={**base, "PROJECTORS_CAPTURE_TABLES": "users,posts,schema_migrations"})
    assert unpublished.returncode == 2
    assert "schema_migrations" in unpublished.stderr and "not in publication" in unpublished.stderr

    closed = f"127.0.0.1:{_closed_port()}"
    broker_down = stack.cli("capture", env={**base, "PROJECTORS_KAFKA_BOOTSTRAP_SERVERS": closed})
    assert broker_down.returncode == 2
    assert "broker" in broker_down.stderr and closed in broker_down.stderr

    not_a_port = stack.cli("capture", env={**base, "PROJECTORS_PG_PORT": "fifty"})
    assert not_a_port.returncode == 2
    assert "PROJECTORS_PG_PORT" in not_a_port.stderr

    unknown = stack.cli("capture", env={**base, "PROJECTORS_PG_PASWORD": "typo"})
    assert unknown.returncode == 2
    assert "unknown setting PROJECTORS_PG_PASWORD" in unknown.stderr


def _closed_port() -> int:
    from tests.conftest import free_port

    return free_port()


def test_a_stop_is_clean_and_lost_offsets_never_lose_a_delete(stack: StackHandle) -> None:
    """SIGTERM stops capture through its own handler (offsets committed), and if Debezium's offsets
    file is lost or cut short afterwards, the next start streams from the slot instead of taking a
    new snapshot, which would never emit the deletes made meanwhile."""
    settings = capture_settings(stack, "lost")
    state = settings.capture_state_dir
    capture = Capture(settings)
    doomed, kept = uid(), uid()
    capture.start(120)
    try:
        with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
            for u in (doomed, kept):
                conn.execute("INSERT INTO users (id, handle) VALUES (%s, %s)", (u, f"lost_{u.hex[:8]}"))
        deadline = time.monotonic() + 90
        position = state / "position.json"
        while not (position.exists() and json.loads(position.read_text())["streaming"]):
            assert time.monotonic() < deadline, "capture never recorded that it streams"
            time.sleep(0.2)
        stops_before = capture.log_file.read_text().count("capture stopped after")
        capture.stop()
        assert capture.log_file.read_text().count("capture stopped after") == stops_before + 1, "not a clean stop"
        (state / "offsets.dat").write_bytes(b"")  # lost, or cut short by a crash while rewritten
        with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
            conn.execute("DELETE FROM users WHERE id = %s", (doomed,))
        capture.start(120)

        def deleted(rs: list[TopicRecord]) -> bool:
            return any(r.key == {"id": str(doomed)} and r.value and r.value.get("op") == "d" for r in rs)

        records = read_until(settings, [table_topic("lost", "users")], deleted, timeout_s=120)
        assert deleted(records), "the delete made while capture was down never reached the topic"
    finally:
        capture.stop()


def end_offsets_inside_the_snapshot(path: Path) -> dict[str, Any]:
    """Rewrite Debezium's stored offset as the one its last commit before a SIGKILL holds when the
    kill comes after capture published streamed changes but before Debezium committed any: a
    snapshot record's (``snapshot: true``, not its last record). Same key, same LSN."""
    data = path.read_bytes()
    [(_key, offset)] = read_offsets(path)
    old = json.dumps(offset, separators=(",", ":")).encode()
    inside = {"last_snapshot_record": False, "lsn": offset["lsn"], "txId": offset["txId"], "snapshot": True}
    new = json.dumps(inside, separators=(",", ":")).encode()
    framed = struct.pack(">i", len(old)) + old
    assert data.count(framed) == 1, "the stored offset is not where the format puts it"
    path.write_bytes(data.replace(framed, struct.pack(">i", len(new)) + new))
    assert server_offset(path, offset_server(path)) == inside
    return inside


def offset_server(path: Path) -> str:
    [(key, _offset)] = read_offsets(path)
    return str(key[1]["server"])


def test_offsets_left_inside_the_snapshot_after_streaming_began_resume_from_the_slot(stack: StackHandle) -> None:
    """A SIGKILL after capture published streamed changes but before Debezium's next offset commit
    leaves offsets that end inside the snapshot; once streaming began, capture starts with a snapshot
    mode that takes no data, which Debezium refuses with such offsets ("previously stopped while
    taking a snapshot"). Capture sets them aside and streams from the slot: it starts, and a delete
    made while it was down reaches the topic."""
    settings = capture_settings(stack, "insnap")
    state = settings.capture_state_dir
    capture = Capture(settings)
    doomed = uid()
    capture.start(120)
    try:
        with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
            conn.execute("INSERT INTO users (id, handle) VALUES (%s, %s)", (doomed, f"insnap_{doomed.hex[:8]}"))
        deadline = time.monotonic() + 90
        position = state / "position.json"
        while not (position.exists() and json.loads(position.read_text())["streaming"]):
            assert time.monotonic() < deadline, "capture never recorded that it streams"
            time.sleep(0.2)
        capture.stop()
        offsets = state / "offsets.dat"
        end_offsets_inside_the_snapshot(offsets)
        with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
            conn.execute("DELETE FROM users WHERE id = %s", (doomed,))
        capture.start(120)

        def deleted(rs: list[TopicRecord]) -> bool:
            return any(r.key == {"id": str(doomed)} and r.value and r.value.get("op") == "d" for r in rs)

        records = read_until(settings, [table_topic("insnap", "users")], deleted, timeout_s=120)
        assert deleted(records), "the delete made while capture was down never reached the topic"
        assert (state / "offsets.dat.unfinished-snapshot").exists(), "the old offsets were not kept aside"
        assert "offsets end inside the snapshot" in capture.log_file.read_text()
    finally:
        capture.stop()


def test_a_row_larger_than_a_message_is_published_shrunk_and_capture_goes_on(stack: StackHandle) -> None:
    """A 1.5 MB post (over the 1 MB message limit) is published without its long values, marked;
    it still decodes (the projections read the row from PostgreSQL); the next change follows."""
    from projectors.capture.publisher import SHRUNK
    from projectors.events.decode import decode
    from projectors.events.models import UNAVAILABLE

    settings = capture_settings(stack, "big")
    capture = Capture(settings)
    capture.start(120)
    try:
        author, big, small = uid(), uid(), uid()
        with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
            conn.execute("INSERT INTO users (id, handle) VALUES (%s, %s)", (author, f"big_{author.hex[:8]}"))
            conn.execute("INSERT INTO posts (id, author_id, body, topics) VALUES (%s, %s, %s, %s)",
                         (big, author, "x" * 1_500_000, ["a"]))
            conn.execute("INSERT INTO posts (id, author_id, body, topics) VALUES (%s, %s, %s, %s)",
                         (small, author, "small", ["b"]))
        topic = table_topic("big", "posts")
        records = read_until(settings, [topic], lambda rs: {str(small), str(big)} <= {r.key["id"] for r in rs if r.key})
        by_id = {r.key["id"]: r for r in records if r.key}
        shrunk = by_id[str(big)].value
        assert shrunk[SHRUNK] > 1_500_000 and shrunk["after"]["body"] == UNAVAILABLE
        assert shrunk["after"]["id"] == str(big) and shrunk["after"]["author_id"] == str(author)
        assert by_id[str(small)].value["after"]["body"] == "small"
        event = decode(topic, 0, 0, b"{}", json.dumps(shrunk).encode())
        assert event is not None and event.op == "c"
        assert capture.pid() is not None  # still running
    finally:
        capture.stop()


def test_capture_comes_back_after_a_postgresql_restart_and_loses_nothing(stack: StackHandle) -> None:
    """PostgreSQL restarted while rows are written: capture reconnects by itself (with backoff) and
    every committed row reaches its topic."""
    from projectors.stack.postgres import Postgres

    settings = capture_settings(stack, "restart")
    capture = Capture(settings)
    capture.start(120)
    written: list[str] = []
    try:
        def write(n: int) -> None:
            with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
                for i in range(n):
                    u = uid()
                    conn.execute("INSERT INTO users (id, handle) VALUES (%s, %s)", (u, f"r{i}_{u.hex[:8]}"))
                    written.append(str(u))

        write(100)
        postgres = Postgres(stack.settings)
        postgres.stop()
        time.sleep(3)  # capture meets the outage
        postgres.start(60)
        deadline = time.monotonic() + 60
        while True:  # the server accepts writes again
            try:
                write(100)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        wanted = set(written)
        records = read_until(settings, [table_topic("restart", "users")],
                             lambda rs: wanted <= {r.key["id"] for r in rs if r.key}, timeout_s=180)
        missing = wanted - {r.key["id"] for r in records if r.key}
        assert not missing, f"{len(missing)} committed inserts never reached the topic"
        assert capture.pid() is not None  # the same process, reconnected
        log = capture.log_file.read_text()
        # reconnected: by the connector's own retries, or past them by capture's supervisor
        assert "retriable exception, will retry later" in log or "starting again in" in log, log[-2000:]
    finally:
        capture.stop()


def committed_type(path: Path) -> str | None:
    """The kind of message of Debezium's last committed offset (``INSERT``: inside a transaction)."""
    try:
        offset = server_offset(path, "copy")
    except UnreadableOffsets:  # caught while Debezium rewrites it
        return None
    return None if offset is None else offset.get("messageType")


def test_a_restart_inside_a_copy_loses_none_of_its_rows(stack: StackHandle) -> None:
    """COPY (and every multi-row insert) writes many rows in one WAL record: their change events share
    one LSN, and Debezium resumes after the LSN of the last committed offset, skipping the rest of
    such a group. Killed as soon as it committed an offset inside one transaction of 100,000 copied
    rows (twice: SIGKILL, then a clean stop), capture still publishes every row."""
    settings = capture_settings(stack, "copy")
    offsets_file = settings.capture_state_dir / "offsets.dat"
    topic = table_topic("copy", "users")
    capture = Capture(settings)
    capture.start(120)
    ids = [str(uid()) for _ in range(100_000)]
    try:
        with psycopg.connect(settings.pg.conninfo()) as conn, conn.cursor() as cur, \
                cur.copy("COPY users (id, handle) FROM STDIN") as copy:
            for i, u in enumerate(ids):
                copy.write_row((u, f"c{i}_{u[:8]}"))
        inside = 0
        for stop in (lambda: os.killpg(capture.pid() or 0, signal.SIGKILL), capture.stop):
            deadline = time.monotonic() + 120
            while committed_type(offsets_file) != "INSERT":
                assert time.monotonic() < deadline and capture.pid(), "capture never committed inside the COPY"
                time.sleep(0.02)
            inside += 1
            stop()
            while capture.pid() is not None:
                time.sleep(0.1)
            capture.start(120)
        wanted = set(ids)
        records = read_until(settings, [topic], lambda rs: wanted <= {r.key["id"] for r in rs if r.key}, 180)
        missing = wanted - {r.key["id"] for r in records if r.key}
        assert inside == 2 and not missing, f"{len(missing)} of {len(ids)} copied rows never reached the topic"
    finally:
        capture.stop()
