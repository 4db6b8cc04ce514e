"""Shared fixtures: a real local stack (PostgreSQL, broker, ...) in a private folder on free ports."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from projectors.settings import Settings, load_settings, settings_to_env
from projectors.stack import local
from projectors.stack.commands import Worker
from projectors.stack.local import free_port as free_port  # the tests import it from here
from projectors.stack.local import private_stack_env as stack_env
from projectors.stack.processes import PART_CLASSES

# Every capture a test starts (private stacks take this from the environment, and so do the CLI's
# subprocesses) runs its JVM with the JIT's quick tier only: a test's capture lives seconds to
# minutes, and C2 compiling Debezium's startup code cost it about 40% more CPU (6.8 against 4.1 s in
# its first 25 s) on a machine whose 2 cores the parallel test files share.
os.environ.setdefault("PROJECTORS_CAPTURE_JVM_OPTIONS", "-XX:TieredStopAtLevel=1")


def private_dir(prefix: str) -> Path:
    """A folder under /tmp that the `postgres` OS user can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@dataclass
class StackHandle:
    settings: Settings
    env: dict[str, str]
    extra: dict[str, str] = field(default_factory=dict)

    def with_env(self, **overrides: str) -> Settings:
        return load_settings({**self.env, **overrides})

    def pg(self) -> psycopg.Connection:
        return psycopg.connect(self.settings.pg.conninfo())

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `projectors` command in a child process with this stack's settings."""
        return cli(*args, env=env if env is not None else self.env, timeout=timeout)

    def cli_into_closed_pipe(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return cli_into_closed_pipe(*args, env=self.env, timeout=timeout)


def worker_part(settings: Settings, projection: str, index: int = 1) -> Worker:
    """Worker process ``index`` of ``projection`` on the stack of ``settings``: ``worker-<projection>``
    for the first, ``worker-<projection>-<index>`` (own pid and log file) for the others."""
    cls = PART_CLASSES[f"worker-{projection}"]
    assert issubclass(cls, Worker)
    return cls(settings, index)


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real `projectors` command in a child process with ``env`` as its only settings."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTORS_")}
    child_env.update(env or {})
    with subprocess.Popen(
        [sys.executable, "-m", "projectors.cli", *args],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # SIGTERM first: the command cleans up (a bench stops the stack it started)
            proc.terminate()
            try:
                stdout, stderr = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
            raise AssertionError(  # say where it was, not only that it ran out of time
                f"projectors {' '.join(args)}: still running after {timeout:.0f}s\n--- stdout\n{stdout[-4000:]}"
                f"\n--- stderr\n{stderr[-4000:]}"
            ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def cli_into_closed_pipe(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real `projectors` command with its stdout a pipe whose reader is already gone (as in
    `projectors status | head -0`): its first write fails. ``stdout`` of the result is empty."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTORS_")}
    child_env.update(env or {})
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "projectors.cli", *args],
            env=child_env, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=timeout, check=False,
        )
    finally:
        os.close(write_end)
    return subprocess.CompletedProcess(done.args, done.returncode, "", done.stderr)


@contextlib.contextmanager
def running(prefix: str, parts: list[str]) -> Iterator[tuple[Settings, dict[str, str]]]:
    """The named stack parts, on free ports in a private folder, stopped afterwards."""
    env = stack_env(private_dir(prefix))
    settings = load_settings(env)
    try:
        local.up(settings, parts, say=lambda _line: None)
        yield settings, env
    finally:
        local.down(settings, parts, say=lambda _line: None)


# small, quick batches: a test's few hundred events are applied in several batches
QUICK_BATCHES = {"PROJECTORS_WORKER_BATCH_SIZE": "200", "PROJECTORS_WORKER_BATCH_WITHIN_S": "0.3"}


@contextlib.contextmanager
def local_stack(prefix: str, parts: Sequence[str] = local.ORDER, **env: str) -> Iterator[StackHandle]:
    """The named parts of the local stack (all by default) on free ports in a private folder, with
    ``env`` over the defaults; every part, and any worker started meanwhile, stopped afterwards."""
    full = {**stack_env(private_dir(prefix)), **env}
    settings = load_settings(full)
    try:
        local.up(settings, parts, say=lambda _line: None)
        yield StackHandle(settings, full)
    finally:
        local.down(settings, local.ORDER, say=lambda _line: None)


@pytest.fixture(scope="session")
def stack() -> Iterator[StackHandle]:
    """PostgreSQL (migrated) and the broker, for the whole session. Capture is started per test."""
    with running("projectors-test-", ["postgres", "broker"]) as (settings, env):
        yield StackHandle(settings, {**env, **settings_to_env(settings)})


@pytest.fixture(scope="session")
def store_servers() -> Iterator[StackHandle]:
    """FalkorDB, Redis and the Cosmos REST server, for the store contract suites."""
    with running("projectors-stores-", ["falkordb", "redis", "cosmos"]) as (settings, env):
        yield StackHandle(settings, env)


# The test files that take longest (minutes each, measured on a full run), started first: with
# ``--dist loadfile`` each runner takes whole files in this order, so the runners end together
# instead of one running a long file alone at the end. Any file not named keeps its place after these.
LONGEST_FIRST = (
    "bench/test_harness.py", "bench/test_harness_state.py", "operations/test_operators.py", "pipeline/test_pipeline.py",
    "capture/test_capture.py", "bench/test_drills.py", "operations/test_rebuild.py",
    "capture/test_slot_recovery.py", "stack/test_restart.py", "pipeline/test_notifications.py",
    "projections/test_redis_views.py", "stack/test_store_isolation.py", "read/test_api.py",
    "stack/test_broker_loss.py", "bench/test_reads_bench.py", "operations/test_verify_incremental.py",
    "bench/test_feed_bench.py", "operations/test_control.py", "read/test_fallback.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = Path(__file__).parent

    def rank(item: pytest.Item) -> int:
        name = item.path.relative_to(tests).as_posix() if item.path.is_relative_to(tests) else ""
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the tests of a file keep their order
