"""The batch projector in a child process (the workers' default): a batch crosses as raw records and
is applied by the child on the real source and store; its totals, dead letters and failures come
back to the worker with their severity; it stops when told to and dies with its parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Sequence

import pytest

from projectors.capture.preflight import ensure_topics
from projectors.capture.topics import read_from_start
from projectors.errors import ConfigurationError, Severity, severity
from projectors.model import ApplyResult, ItemKey, Operation
from projectors.runtime.dead_letters import RawRecord, dead_letter_topic
from projectors.runtime.observe import pid_alive
from projectors.runtime.projector_process import ProjectorProcess, ProjectorProcessError
from projectors.runtime.retry import open_store
from projectors.settings import SettingsError, load_settings
from tests.conftest import StackHandle


def user_event(user_id: str, handle: str, lsn: int) -> bytes:
    row = {"id": user_id, "handle": handle, "display_name": "Ada", "bio": "maths"}
    source = {"schema": "public", "table": "users", "lsn": lsn, "txId": 7, "connector": "postgresql"}
    return json.dumps({"op": "c", "before": None, "after": row, "source": source, "ts_ms": 1}).encode()


class MisconfiguredStore:
    """A store whose schema cannot be ensured for a reason no retry fixes (a wrong key)."""

    def ensure_schema(self) -> None:
        raise ConfigurationError("PROJECTORS_TEST_KEY is wrong: the store refused it")


class DownStore:
    """A store that never answers: every write is a transient failure, retried until stopped."""

    def ensure_schema(self) -> None:
        pass

    def apply(self, ops: Sequence[Operation]) -> ApplyResult:
        raise ConnectionError("the store is down")

    def ping(self) -> bool:
        return False

    def close(self) -> None:
        pass


def test_a_batch_is_applied_by_the_child_and_its_totals_and_letters_come_back(stack: StackHandle) -> None:
    settings = stack.settings
    ensure_topics(settings, {dead_letter_topic(settings, "search"): 1})
    user = str(uuid.uuid4())
    handle = f"ada{user[:8]}"
    with stack.pg() as conn:
        conn.execute("INSERT INTO users (id, handle, display_name, bio) VALUES (%s, %s, 'Ada', 'maths')",
                     (user, handle))
    projector = ProjectorProcess(settings, "search")
    try:
        assert projector.pid is not None and projector.pid != os.getpid()
        projector.process([
            RawRecord("social.public.users", 0, 10, user.encode(), user_event(user, handle, 100)),
            RawRecord("social.public.users", 0, 11, user.encode(), None),  # a tombstone: nothing to do
            RawRecord("social.public.users", 0, 12, b"k", b"{not json"),
        ])
        assert projector.stats.events == 3 and projector.stats.batches == 1
        assert projector.stats.dead_letters == 1 and projector.stats.operations == 1
        assert projector.stats.cpu_seconds > 0  # measured in the child, where the work ran
        assert projector.source_counts.queries >= 1 and projector.source_counts.rows >= 1
        assert projector.store.ping() is True
    finally:
        projector.close()
    store = open_store(settings, "search")
    try:
        held = store.read_items([ItemKey("users", user)])
    finally:
        store.close()
    assert held[ItemKey("users", user)]["handle"] == handle
    letters = list(read_from_start(settings, [dead_letter_topic(settings, "search")], timeout_s=30, idle_s=3))
    assert {"topic": "social.public.users", "partition": 0, "offset": 12} in [r.value["origin"] for r in letters]


def test_a_configuration_error_in_the_child_stops_the_worker_at_start_with_its_message(stack: StackHandle) -> None:
    with pytest.raises(ConfigurationError, match="PROJECTORS_TEST_KEY is wrong"):
        ProjectorProcess(stack.settings, "search", MisconfiguredStore)


def test_stop_ends_a_batch_stuck_on_a_down_store_unacknowledged_with_its_severity(stack: StackHandle) -> None:
    settings = stack.settings.model_copy(
        update={"worker": stack.settings.worker.model_copy(update={"retry_max_s": 0.5})})
    user = str(uuid.uuid4())
    with stack.pg() as conn:
        conn.execute("INSERT INTO users (id, handle) VALUES (%s, %s)", (user, f"bo{user[:8]}"))
    projector = ProjectorProcess(settings, "search", DownStore)
    try:
        assert projector.store.ping() is False
        failed: list[BaseException] = []

        def run() -> None:
            try:
                projector.process([RawRecord("social.public.users", 0, 1, None, user_event(user, f"bo{user[:8]}", 5))])
            except BaseException as exc:
                failed.append(exc)

        batch = threading.Thread(target=run)
        batch.start()
        time.sleep(3)
        assert batch.is_alive()  # retrying the down store: the batch is not given up
        projector.stop()
        batch.join(30)
        assert not batch.is_alive()
    finally:
        projector.close()
    assert len(failed) == 1 and isinstance(failed[0], ProjectorProcessError)
    assert severity(failed[0]) is Severity.RETRIABLE and projector.stopping
    assert projector.stats.retries >= 1  # the child's retries came back with the failure


def test_the_child_dies_with_its_parent(stack: StackHandle) -> None:
    """A worker killed with SIGKILL (no handler runs) leaves no projector process behind."""
    script = textwrap.dedent("""
        import sys, time
        from projectors.settings import SettingsError, load_settings
        from projectors.runtime.projector_process import ProjectorProcess
        projector = ProjectorProcess(load_settings(), "search")
        print(projector.pid, flush=True)
        time.sleep(600)
    """)
    env = {**os.environ, **stack.env}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(child, 0)  # running
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid_alive(child):
            time.sleep(0.1)
        assert not pid_alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()


def test_settings_choose_where_batches_are_projected() -> None:
    assert load_settings({}).worker.project_in == "process"
    assert load_settings({"PROJECTORS_WORKER_PROJECT_IN": "thread"}).worker.project_in == "thread"
    with pytest.raises(SettingsError, match="PROJECTORS_WORKER_PROJECT_IN='fork'"):
        load_settings({"PROJECTORS_WORKER_PROJECT_IN": "fork"})
