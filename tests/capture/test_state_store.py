"""Capture's state on the broker: the record's format (pure), its round trip through the real broker,
and capture on the real stack started again with an empty state directory."""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from pathlib import Path

import psycopg
from confluent_kafka import Producer

from projectors.capture.debezium_offsets import UnreadableOffsets, server_offset
from projectors.capture.preflight import CapturePosition
from projectors.capture.state_store import (
    BrokerState,
    CaptureState,
    complete_offsets,
    local_state,
    synchronize,
    write_local,
)
from projectors.model import table_topic
from projectors.stack.commands import Capture
from tests.capture.helpers import capture_settings, read_until, run_capture, streamed_and_stopped
from tests.capture.test_offsets_file import WRITTEN
from tests.conftest import StackHandle


def committed_type(path: Path, server: str) -> str | None:
    """The kind of message of Debezium's last committed offset (``INSERT``: inside a transaction)."""
    try:
        offset = server_offset(path, server)
    except UnreadableOffsets:  # caught while Debezium rewrites it
        return None
    return None if offset is None else offset.get("messageType")


def test_a_state_record_round_trips_and_a_torn_offsets_file_is_not_taken() -> None:
    state = CaptureState(CapturePosition("s_slot", 27367896, streaming=True), WRITTEN)
    assert CaptureState.decode(state.encode()) == state
    assert CaptureState.decode(CaptureState(None, WRITTEN).encode()) == CaptureState(None, WRITTEN)
    assert complete_offsets(WRITTEN)
    for cut in (1, 20, len(WRITTEN) // 2, len(WRITTEN) - 1):  # caught while Debezium rewrites it
        assert not complete_offsets(WRITTEN[:cut])
    assert not complete_offsets(b"")


def test_local_state_reads_and_writes_the_state_directory(tmp_path: Path) -> None:
    assert local_state(tmp_path) is None
    state = CaptureState(CapturePosition("s_slot", 42, streaming=False), WRITTEN)
    write_local(tmp_path / "new", state)
    assert local_state(tmp_path / "new") == state
    (tmp_path / "new" / "offsets.dat").write_bytes(WRITTEN[:30])  # cut short: the position stays
    assert local_state(tmp_path / "new") == CaptureState(state.position, b"")


def test_the_broker_keeps_the_newest_state_and_syncs_with_the_state_directory(stack: StackHandle) -> None:
    name = f"st{uuid.uuid4().hex[:6]}"
    settings = capture_settings(stack, name)
    other = capture_settings(stack, name + "x")
    broker, neighbour = BrokerState(settings), BrokerState(other)
    broker.ensure_topic()
    try:
        assert broker.read() is None
        # batched produce around the record (the local broker's high watermark falls short after it):
        # the read goes to its own marker, not to the watermark, and finds the newest state
        noise = Producer({**settings.kafka.client_config(), "linger.ms": 50})
        for i in range(200):
            noise.produce(broker.topic, key=b"elsewhere", value=str(i).encode(), partition=0)
        noise.flush(10)
        first = CaptureState(CapturePosition(f"{name}_slot", 100, streaming=False), WRITTEN)
        newest = CaptureState(CapturePosition(f"{name}_slot", 200, streaming=True), WRITTEN)
        broker.publish(first)
        neighbour.publish(CaptureState(CapturePosition(f"{name}x_slot", 999), b""))
        broker.publish(newest)
        for i in range(200):
            noise.produce(broker.topic, key=b"elsewhere", value=str(i).encode(), partition=0)
        noise.flush(10)
        assert broker.read() == newest
        assert neighbour.read() == CaptureState(CapturePosition(f"{name}x_slot", 999), b"")

        # an empty state directory is restored from the broker
        state_dir = settings.capture_state_dir
        assert local_state(state_dir) is None
        assert "restored from topic" in synchronize(settings, broker)
        assert local_state(state_dir) == newest
        assert "agree" in synchronize(settings, broker)

        # a stale state directory (an older position) takes the broker's
        write_local(state_dir, first)
        assert "restored" in synchronize(settings, broker)
        assert local_state(state_dir) == newest

        # a state directory ahead of the broker (or from before this store) is published
        ahead = CaptureState(CapturePosition(f"{name}_slot", 300, streaming=True), WRITTEN)
        write_local(state_dir, ahead)
        assert "published to topic" in synchronize(settings, broker)
        assert broker.read() == ahead

        broker.forget()
        assert broker.read() is None
        assert neighbour.read() is not None
    finally:
        broker.close()
        neighbour.close()


def test_a_capture_killed_mid_copy_and_started_with_an_empty_state_directory_loses_no_row(
    stack: StackHandle,
) -> None:
    """SIGKILLed as soon as it committed an offset inside one COPY of 20,000 rows, its state
    directory removed (another machine, a pod without a volume), capture restores its state from the
    broker and every copied row reaches the topic. A capture whose local state predates the broker
    store publishes it at start (migration)."""
    settings = capture_settings(stack, "ecopy")
    state_dir = settings.capture_state_dir
    broker = BrokerState(settings)
    topic = table_topic("ecopy", "users")
    capture = Capture(settings)
    capture.start(120)
    ids = [str(uuid.uuid4()) for _ in range(20_000)]
    try:
        with psycopg.connect(settings.pg.conninfo()) as conn, conn.cursor() as cur, \
                cur.copy("COPY users (id, handle) FROM STDIN") as copy:
            for i, u in enumerate(ids):
                copy.write_row((u, f"e{i}_{u[:8]}"))
        deadline = time.monotonic() + 120
        while committed_type(state_dir / "offsets.dat", "ecopy") != "INSERT":
            assert time.monotonic() < deadline and capture.pid(), "capture never committed inside the COPY"
            time.sleep(0.02)
        os.killpg(capture.pid() or 0, signal.SIGKILL)
        while capture.pid() is not None:
            time.sleep(0.1)
        saved = broker.read()
        assert saved is not None and saved.position is not None and saved.position.streaming
        shutil.rmtree(state_dir)
        capture.start(120)
        log = capture.log_file.read_text()
        assert "state restored from topic" in log, log[-3000:]
        wanted = set(ids)
        # a loaded machine publishes a few hundred records a second: the bound is generous
        records = read_until(settings, [topic], lambda rs: wanted <= {r.key["id"] for r in rs if r.key}, 600)
        missing = wanted - {r.key["id"] for r in records if r.key}
        assert not missing, f"{len(missing)} of {len(ids)} copied rows never reached the topic"

        # migration: a state directory with no broker record is published at the next start
        capture.stop()
        broker.forget()
        assert broker.read() is None
        capture.start(120)
        assert "published to topic" in capture.log_file.read_text()
        migrated = broker.read()
        assert migrated is not None and migrated.position is not None and migrated.offsets
    finally:
        capture.stop()
        broker.close()


def test_a_dropped_slot_is_refused_even_from_an_empty_state_directory(stack: StackHandle) -> None:
    """The restored position is what the refusal of a dropped slot rests on: a fresh machine does
    not silently take a new slot and skip the changes made while none existed."""
    name = "gone"
    settings, env, _ = streamed_and_stopped(stack, name)
    with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (f"{name}_slot",))
    shutil.rmtree(settings.capture_state_dir)
    assert "no longer exists" in run_capture(stack, env, code=3).stderr
    assert "forgot the state" in run_capture(stack, env, "--reset", code=0).stdout
    broker = BrokerState(settings)
    try:
        assert broker.read() is None
    finally:
        broker.close()
