"""The control plane on the real stack, with workers started as a pod would run them: plain
processes, no pid files, nothing of the local stack's process control. `replay` and `rebuild` pause
them through the control topic, move or build, resume them, and verify is clean; a worker started
while its projection is paused stays paused; a pause with a worker that does not answer ends within
its bound, naming it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from projectors.db.migrate import connect
from projectors.exit_codes import ExitCode
from projectors.operations.pause import members
from projectors.projections import descriptor
from projectors.stores.factory import current_generation
from projectors.workload import SocialWorkload
from tests.conftest import QUICK_BATCHES, StackHandle, free_port, local_stack
from tests.operations.test_operators import assert_clean

PARTS = ("postgres", "broker", "falkordb", "capture")


class PodWorker:
    """`projectors worker <projection>` in a process of its own, as a container runs it."""

    def __init__(self, handle: StackHandle, projection: str, log_dir: Path) -> None:
        self.projection, self.port = projection, free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTORS_")}
        env.update(handle.env)
        env["PROJECTORS_WORKER_WEB_PORT"] = str(self.port)
        self.log = log_dir / f"pod-{projection}-{uuid.uuid4().hex[:6]}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "projectors.cli", "worker", projection],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def health(self) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health/ready", timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read())
            except http.client.HTTPException:  # the body cut short: print what the worker did
                print(f"probe: {exc.code} with a cut body; the worker's log:\n{self.log.read_text()[-3000:]}")
                return 0, {}
        except OSError:
            return 0, {}

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def wait_state(self, state: str, timeout_s: float = 120) -> dict[str, object]:
        deadline = time.monotonic() + timeout_s
        body: dict[str, object] = {}
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-3000:]
            status, body = self.health()
            if status == 200 and body.get("state") == state:
                return body
            time.sleep(0.5)
        raise AssertionError(f"{self.projection} worker not {state}: {body}\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="module")
def control_stack() -> Iterator[StackHandle]:
    with local_stack("projectors-control-", PARTS, **QUICK_BATCHES, PROJECTORS_WORKER_SHUTDOWN_GRACE_S="5") as handle:
        with connect(handle.settings.pg) as conn:
            load = SocialWorkload(conn, rng=random.Random(61))
            load.seed(users=20, posts=20, follows=50)
            load.run(100)
        yield handle


@pytest.fixture
def pods(control_stack: StackHandle) -> Iterator[list[PodWorker]]:
    started: list[PodWorker] = []
    yield started
    for pod in started:
        pod.stop()


def more_writes(handle: StackHandle, seed: int, operations: int = 60) -> None:
    with connect(handle.settings.pg) as conn:
        load = SocialWorkload(conn, rng=random.Random(seed))
        load.users = [uuid.UUID(r[0]) for r in conn.execute("SELECT id::text FROM users").fetchall()]
        load.posts = [uuid.UUID(r[0]) for r in conn.execute("SELECT id::text FROM posts").fetchall()]
        load.run(operations)


def group_members(handle: StackHandle, projection: str, count: int, timeout_s: float = 120) -> list[str]:
    deadline = time.monotonic() + timeout_s
    found = members(handle.settings, descriptor(projection).group)
    while len(found) != count and time.monotonic() < deadline:
        time.sleep(1)
        found = members(handle.settings, descriptor(projection).group)
    assert len(found) == count, found
    return found


def test_replay_and_rebuild_pause_workers_they_did_not_start(
    control_stack: StackHandle, pods: list[PodWorker], tmp_path: Path
) -> None:
    pods += [PodWorker(control_stack, "search", tmp_path) for _ in range(2)]
    for pod in pods:
        pod.wait_state("running")
    assert_clean(control_stack, ["search"])
    found = group_members(control_stack, "search", 2)
    assert all(f"@{os.uname().nodename}:" in m for m in found), found  # each names its host and pid
    refused = control_stack.cli("replay", "search")
    assert refused.returncode == 2 and "--force" in refused.stderr and "projectors-search@" in refused.stderr

    more_writes(control_stack, 62)
    done = control_stack.cli("replay", "search", "--force", "--wait", "180", timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "search: paused: group projectors-search is empty" in done.stdout, done.stdout
    assert "resume requested" in done.stdout and "100.0%" in done.stdout, done.stdout
    for pod in pods:
        assert pod.proc.poll() is None  # paused and resumed, never stopped
        log = pod.log.read_text(errors="replace")
        assert "paused (the worker left its group" in log and "resumed by" in log, log[-3000:]
        pod.wait_state("running")
    assert_clean(control_stack, ["search"])

    more_writes(control_stack, 63)
    rebuilt = control_stack.cli("rebuild", "search", "--force", "--json", timeout=600)
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:] + rebuilt.stderr[-3000:]
    assert json.loads(rebuilt.stdout)["newGeneration"] == current_generation(control_stack.settings, "search")
    assert all(pod.proc.poll() is None for pod in pods)
    more_writes(control_stack, 64)  # the resumed workers write the new generation
    group_members(control_stack, "search", 2)
    assert_clean(control_stack, ["search"])


def test_a_worker_started_while_paused_stays_paused(
    control_stack: StackHandle, pods: list[PodWorker], tmp_path: Path
) -> None:
    paused = control_stack.cli("pause", "graph")
    assert paused.returncode == 0, paused.stdout + paused.stderr
    pods.append(PodWorker(control_stack, "graph", tmp_path))
    body = pods[0].wait_state("paused")
    assert body["live"] is True
    assert 'projectors_paused{projection="graph"} 1.0' in pods[0].metrics()
    more_writes(control_stack, 65)
    time.sleep(8)  # long enough for a worker that ignored the pause to have joined
    assert members(control_stack.settings, descriptor("graph").group) == []
    status = control_stack.cli("status", "graph", "--json")
    (row,) = json.loads(status.stdout)
    assert row["control"]["state"] == "paused" and row["control"]["by"], row
    assert "paused by" in control_stack.cli("status", "graph").stdout

    resumed = control_stack.cli("resume", "graph")
    assert resumed.returncode == 0, resumed.stderr
    pods[0].wait_state("running")
    assert 'projectors_paused{projection="graph"} 0.0' in pods[0].metrics()
    group_members(control_stack, "graph", 1)
    assert_clean(control_stack, ["graph"])


def test_a_pause_with_a_worker_that_does_not_answer_names_it(
    control_stack: StackHandle, pods: list[PodWorker], tmp_path: Path
) -> None:
    pods.append(PodWorker(control_stack, "graph", tmp_path))
    pods[0].wait_state("running")
    group_members(control_stack, "graph", 1)
    os.kill(pods[0].proc.pid, signal.SIGSTOP)  # it reads the control topic no more; its consumer still runs
    started = time.monotonic()
    try:
        done = control_stack.cli("pause", "graph", "--timeout", "8", timeout=120)
    finally:
        os.kill(pods[0].proc.pid, signal.SIGCONT)
    took = time.monotonic() - started
    assert done.returncode == ExitCode.NOT_PAUSED, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"projectors-graph@{os.uname().nodename}:{pods[0].proc.pid}" in lines[0], lines
    assert "still in consumer group projectors-graph after 8s" in lines[0]
    assert took < 60, took
    # once it answers again it obeys the pause that still stands
    pods[0].wait_state("paused")
    assert control_stack.cli("resume", "graph").returncode == 0
    pods[0].wait_state("running")


def test_a_worker_whose_topics_do_not_exist_says_so_at_start(control_stack: StackHandle) -> None:
    """Capture publishes under `social`; a worker told another prefix stops with the reason."""
    started = time.monotonic()
    elsewhere = {"PROJECTORS_CAPTURE_TOPIC_PREFIX": "elsewhere", "PROJECTORS_WORKER_TOPICS_WAIT_S": "3"}
    done = control_stack.cli("worker", "feed", env={**control_stack.env, **elsewhere}, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert "none of its topics exist after 3s" in line and "elsewhere.public.posts" in line, done.stderr
    assert "under the prefix(es) social" in line and "PROJECTORS_CAPTURE_TOPIC_PREFIX=elsewhere" in line, line
    assert time.monotonic() - started < 60
