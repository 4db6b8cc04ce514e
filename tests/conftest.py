"""Shared fixtures: a real local stack (PostgreSQL, broker, ...) in a private folder on free ports."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from projectors.settings import Settings, load_settings, settings_to_env
from projectors.stack import local


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real `projectors` command in a child process with ``env`` as its only settings."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTORS_")}
    child_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "projectors.cli", *args],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stack_env(root: Path) -> dict[str, str]:
    return {
        "PROJECTORS_STACK_DIR": str(root),
        "PROJECTORS_PG_PORT": str(free_port()),
        "PROJECTORS_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "PROJECTORS_FALKORDB_PORT": str(free_port()),
        "PROJECTORS_COSMOS_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "PROJECTORS_CAPTURE_HEARTBEAT_INTERVAL_MS": "1000",
        "PROJECTORS_KAFKA_TOPIC_PARTITIONS": "3",
    }


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


@pytest.fixture(scope="session")
def stack() -> Iterator[StackHandle]:
    """PostgreSQL (migrated) and the broker, for the whole session. Capture is started per test."""
    with running("projectors-test-", ["postgres", "broker"]) as (settings, env):
        yield StackHandle(settings, {**env, **settings_to_env(settings)})


@pytest.fixture(scope="session")
def store_servers() -> Iterator[StackHandle]:
    """FalkorDB and the Cosmos REST server, for the store contract suites."""
    with running("projectors-stores-", ["falkordb", "cosmos"]) as (settings, env):
        yield StackHandle(settings, env)
