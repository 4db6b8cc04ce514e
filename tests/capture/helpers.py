"""What the capture tests share: a capture of its own on a file's stack (topic prefix, slot and state
directory named alike), reading its topics, and WAL written until PostgreSQL drops a slot."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg

from projectors.capture.topics import TopicRecord, read_from_start
from projectors.model import table_topic
from projectors.settings import Settings
from projectors.stack.commands import Capture
from tests.conftest import StackHandle


def capture_settings(stack: StackHandle, name: str) -> Settings:
    root = stack.settings.stack.dir
    return stack.with_env(
        PROJECTORS_CAPTURE_TOPIC_PREFIX=name,
        PROJECTORS_CAPTURE_SLOT_NAME=f"{name}_slot",
        PROJECTORS_CAPTURE_STATE_DIR=str(root / name),
    )


def capture_env(stack: StackHandle, name: str) -> dict[str, str]:
    """The environment of a `projectors` command run with :func:`capture_settings`."""
    return {
        **stack.env,
        "PROJECTORS_CAPTURE_TOPIC_PREFIX": name,
        "PROJECTORS_CAPTURE_SLOT_NAME": f"{name}_slot",
        "PROJECTORS_CAPTURE_STATE_DIR": str(stack.settings.stack.dir / name),
    }


def read_until(settings: Settings, topics: list[str], done: Any, timeout_s: float = 90) -> list[TopicRecord]:
    return list(read_from_start(settings, topics, timeout_s=timeout_s, until=done))


def run_capture(stack: StackHandle, env: dict[str, str], *args: str, code: int) -> subprocess.CompletedProcess[str]:
    """`projectors capture <args>` with ``env``, asserted to exit with ``code``."""
    done = stack.cli("capture", *args, env=env)
    assert done.returncode == code, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def streamed_and_stopped(stack: StackHandle, name: str) -> tuple[Settings, dict[str, str], Capture]:
    """Capture ``name`` started, seen publishing a user inserted then, and stopped (its slot and
    state kept): its settings, its command's environment and its part."""
    settings = capture_settings(stack, name)
    capture = Capture(settings)
    capture.start(120)
    first = uuid.uuid4()
    with stack.pg() as conn:
        conn.execute("INSERT INTO users (id, handle) VALUES (%s, %s)", (first, f"{name[0]}_{first.hex[:10]}"))
    read_until(settings, [table_topic(name, "users")], lambda rs: any(r.key["id"] == str(first) for r in rs))
    capture.stop()
    return settings, capture_env(stack, name), capture


def burn_wal(settings: Settings, megabytes: int) -> None:
    """Write about ``megabytes`` of WAL in a table no capture reads."""
    with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS wal_ballast (n int, pad text)")
        for _ in range(megabytes):
            conn.execute("INSERT INTO wal_ballast SELECT g, repeat('x', 900) FROM generate_series(1, 1000) g")
        conn.execute("TRUNCATE wal_ballast")


@contextlib.contextmanager
def slot_lost(settings: Settings, slot: str) -> Iterator[None]:
    """``max_slot_wal_keep_size`` set to 32MB and WAL written (segments switched, checkpoints)
    until PostgreSQL invalidates ``slot`` (asserted); the setting is reset on leaving."""
    with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '32MB'")
        conn.execute("SELECT pg_reload_conf()")
    try:
        status = ""
        for _ in range(10):
            burn_wal(settings, 20)
            with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
                conn.execute("SELECT pg_switch_wal()")
                conn.execute("CHECKPOINT")
                row = conn.execute("SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s",
                                   (slot,)).fetchone()
                status = str(row[0]) if row else "gone"
            if status == "lost":
                break
        assert status == "lost", status
        yield
    finally:
        with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
            conn.execute("SELECT pg_reload_conf()")
