"""Two captures of one slot on the real stack: one streams, the other waits as a standby on the
slot's lease (a PostgreSQL advisory lock) and takes over when the active one is SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections import Counter

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from projectors.capture.lease import Lease
from projectors.model import table_topic
from projectors.settings import Settings
from projectors.stack.commands import Capture
from tests.capture.helpers import read_until
from tests.conftest import StackHandle


class SecondCapture(Capture):
    """A second `projectors capture` process on the same stack (its own pid and log file)."""

    name = "capture-second"


def of(stack: StackHandle, folder: str) -> Settings:
    return stack.with_env(
        PROJECTORS_CAPTURE_TOPIC_PREFIX="ha",
        PROJECTORS_CAPTURE_SLOT_NAME="ha_slot",
        PROJECTORS_CAPTURE_STATE_DIR=str(stack.settings.stack.dir / folder),
        PROJECTORS_CAPTURE_SNAPSHOT_MODE="no_data",  # streams at once, whatever other tests left in users
    )


def wait_for(what: str, check: object, timeout_s: float) -> float:
    """Seconds until ``check()`` holds; fails after ``timeout_s``."""
    began = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - began < timeout_s, f"{what}: not within {timeout_s:.0f}s"
        time.sleep(0.1)
    return time.monotonic() - began


def next_published(settings: Settings, topic: str, timeout_s: float) -> float:
    """When (``time.monotonic()``) a record is published on ``topic`` after those already there: the
    topic is read from its beginning until it is quiet for 2 s (the dead capture's records; the
    broker's high watermark is not used, it falls short after batched produce), then until the next."""
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"next-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.topics[topic].partitions])
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 2:
            if [m for m in consumer.consume(1000, 0.2) if m.error() is None]:
                quiet_since = time.monotonic()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if [m for m in consumer.consume(1000, 0.2) if m.error() is None]:
                return time.monotonic()
        raise AssertionError(f"nothing new on {topic} within {timeout_s:.0f}s")
    finally:
        consumer.close()


def seen_probe(settings: Settings, topic: str, row_id: str, timeout_s: float) -> None:
    """Return as soon as a change of row ``row_id`` is on ``topic`` (checked record by record: the
    writer keeps the topic busy, so no quiet poll can mark an end)."""
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"probe-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.topics[topic].partitions])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is None and msg.key() and json.loads(msg.key()).get("id") == row_id:
                    return
        raise AssertionError(f"row {row_id} not on {topic} within {timeout_s:.0f}s")
    finally:
        consumer.close()


def test_the_standby_takes_over_from_a_sigkilled_capture_and_no_row_is_lost(stack: StackHandle) -> None:
    first_settings, second_settings = of(stack, "ha-first"), of(stack, "ha-second")
    first, second = Capture(first_settings), SecondCapture(second_settings)
    standby_file = second_settings.capture_state_dir / "standby"
    ready_file = second_settings.capture_state_dir / "ready"
    topic = table_topic("ha", "users")
    written: list[str] = []
    stop_writer = threading.Event()

    def writer() -> None:
        with psycopg.connect(first_settings.pg.conninfo(), autocommit=True) as conn:
            while not stop_writer.is_set():
                u = uuid.uuid4()
                conn.execute("INSERT INTO users (id, handle) VALUES (%s, %s)", (u, f"ha_{u.hex[:12]}"))
                written.append(str(u))
                time.sleep(0.003)

    first.start(120)
    thread = threading.Thread(target=writer)
    try:
        second.prepare()
        second.spawn()
        wait_for("the second capture says standby", standby_file.exists, 60)
        assert "captured by projectors-capture" in standby_file.read_text()
        assert "standby" in second.address
        lease = Lease(first_settings)
        try:
            assert str(first.pid()) in lease.holder() or "projectors-capture" in lease.holder()
        finally:
            lease.release()
        thread.start()
        wait_for("rows written", lambda: len(written) >= 500, 60)
        time.sleep(3)  # the second capture stays a standby while the first streams
        assert not ready_file.exists() and standby_file.exists() and second.pid() is not None

        os.killpg(first.pid() or 0, signal.SIGKILL)
        killed = time.monotonic()
        wait_for("the first capture is gone", lambda: first.pid() is None, 30)
        first_record = next_published(second_settings, topic, 120)  # nothing is published until the standby
        wait_for("the standby says it streams", ready_file.exists, 60)
        streams_after = first_record - killed
        probe = uuid.uuid4()
        with psycopg.connect(first_settings.pg.conninfo(), autocommit=True) as conn:
            conn.execute("INSERT INTO users (id, handle) VALUES (%s, %s)", (probe, f"probe_{probe.hex[:8]}"))
        seen_probe(second_settings, topic, str(probe), 120)
        probe_after = time.monotonic() - killed
        wait_for("rows written after the takeover", lambda: len(written) >= 2500, 120)
        stop_writer.set()
        thread.join(30)

        wanted = set(written)
        records = read_until(second_settings, [topic], lambda rs: wanted <= {r.key["id"] for r in rs if r.key}, 180)
        creates = Counter(r.key["id"] for r in records if r.key and r.value and r.value["op"] in ("c", "r"))
        missing = wanted - set(creates)
        duplicates = sum(n - 1 for i, n in creates.items() if i in wanted)
        print(
            f"\ntakeover: the standby published its first record {streams_after:.1f}s after the SIGKILL, "
            f"a row written once it was ready reached the topic {probe_after:.1f}s after it (the backlog "
            f"of the outage first); {len(wanted)} rows written, "
            f"{len(missing)} lost, {duplicates} published twice"
        )
        assert not missing, f"{len(missing)} committed inserts never reached the topic"
        assert streams_after < 30, f"the standby streamed {streams_after:.1f}s after the SIGKILL"
    finally:
        stop_writer.set()
        if thread.is_alive():
            thread.join(30)
        second.stop()
        first.stop()
