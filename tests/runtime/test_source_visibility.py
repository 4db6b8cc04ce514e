"""A batch's source reads see every transaction of its changes.

PostgreSQL hands a transaction to logical decoding once its commit record is flushed, and only
afterwards removes it from the running transactions that new snapshots leave out. On a loaded
machine a worker can take a change within milliseconds and read the source in between: the rows
read then lack the change (seen: posts created by one transaction missing from the graph and the
search index, posts deleted by it left there). Here a transaction still open stands for one in that
window: the read waits until a snapshot sees it."""

from __future__ import annotations

import threading
import time
import uuid

from projectors.source import PostgresSource
from tests.conftest import StackHandle


def read_user(conn: object, user: str, must_see: list[int]) -> tuple[bool, PostgresSource]:
    source = PostgresSource(conn, must_see=must_see)  # type: ignore[arg-type]
    with source.read():
        found = source.rows("SELECT 1 FROM users WHERE id = %s::uuid", [user])
    return bool(found), source


def test_a_read_waits_until_a_snapshot_sees_the_batchs_transactions(stack: StackHandle) -> None:
    user = str(uuid.uuid4())
    with stack.pg() as writer, stack.pg() as reader:
        reader.autocommit = True
        writer.execute("INSERT INTO users (id, handle, display_name) VALUES (%s, %s, 'V')", [user, f"v{user[:8]}"])
        xid = int(writer.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0])  # type: ignore[index]
        # without the transaction named, the read does not wait and misses the row
        found, _ = read_user(reader, user, [])
        assert not found
        results: list[tuple[bool, PostgresSource, float]] = []

        def read() -> None:
            started = time.monotonic()
            found, source = read_user(reader, user, [xid & 0xFFFFFFFF])  # Debezium's txId: 32 bits
            results.append((found, source, time.monotonic() - started))

        thread = threading.Thread(target=read)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive() and not results  # still waiting for the transaction
        writer.commit()
        thread.join(10)
        assert results, "the read did not end after the commit"
        found, source, waited = results[0]
        assert found and waited >= 0.5 and source.counts.visibility_waits > 0, (found, waited, source.counts)


def test_transactions_long_visible_do_not_wait(stack: StackHandle) -> None:
    """Old ids, a full 64-bit one, and ids from another epoch's past: seen at once."""
    with stack.pg() as reader:
        reader.autocommit = True
        current = int(reader.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0])  # type: ignore[index]
        ids = [3, current - 1, current, (1 << 32) + 3, 0xFFFFFFFF]
        _, source = read_user(reader, str(uuid.uuid4()), ids)
        assert source.counts.visibility_waits == 0
