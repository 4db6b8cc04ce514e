"""`projectors stack` on the real processes: up, status, down, and clear messages."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator

from projectors.runtime.observe import pid_alive
from projectors.settings import load_settings
from projectors.stack import local
from projectors.stack.part import port_open
from tests.conftest import StackHandle, free_port, private_dir, stack_env


def test_stack_up_status_down_leaves_no_process() -> None:
    env = stack_env(private_dir("projectors-stack-"))
    handle = StackHandle(load_settings(env), env)
    up = handle.cli("stack", "up", timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        status = handle.cli("stack", "status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        parts = json.loads(status.stdout)
        assert [p["name"] for p in parts] == list(local.ORDER)
        assert all(p["up"] and p["pid"] for p in parts), parts
        pids = [p["pid"] for p in parts]
    finally:
        down = handle.cli("stack", "down")
    assert down.returncode == 0, down.stderr
    assert not [pid for pid in pids if pid_alive(pid)], "stack down left processes behind"
    s = handle.settings
    assert not port_open(s.pg.host, s.pg.port)
    assert not port_open(s.falkordb.host, s.falkordb.port)
    after = handle.cli("stack", "status")
    assert after.returncode == 1 and "down" in after.stdout


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    """A port another process listens on."""
    with socket.socket() as squatter:
        port = free_port()
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        yield port


def test_a_taken_port_is_named_with_its_setting() -> None:
    env = stack_env(private_dir("projectors-port-"))
    with taken_port() as port:
        env["PROJECTORS_FALKORDB_PORT"] = str(port)
        result = StackHandle(load_settings(env), env).cli("stack", "up", "--only", "falkordb")
    assert result.returncode == 2
    assert f"port {port} is already taken" in result.stderr and "PROJECTORS_FALKORDB_PORT" in result.stderr


def test_a_stack_up_that_stops_on_a_taken_port_leaves_nothing_running() -> None:
    env = stack_env(private_dir("projectors-port2-"))
    with taken_port() as port:
        env["PROJECTORS_FALKORDB_PORT"] = str(port)
        handle = StackHandle(load_settings(env), env)
        result = handle.cli("stack", "up", "--only", "postgres,broker,falkordb", timeout=300)
    assert result.returncode == 2 and "PROJECTORS_FALKORDB_PORT" in result.stderr, result.stdout + result.stderr
    s = handle.settings
    host, broker_port = s.kafka.bootstrap_servers.split(":")
    assert not port_open(s.pg.host, s.pg.port), "postgres was left running"
    assert not port_open(host, int(broker_port)), "the broker was left running"


def test_the_kafka_connect_config_in_debezium_is_the_rendered_one(stack: StackHandle) -> None:
    result = stack.cli("connector", "render", "--check", env={})
    assert result.returncode == 0, result.stderr


def test_migrate_is_idempotent(stack: StackHandle) -> None:
    again = stack.cli("db", "migrate")
    assert again.returncode == 0, again.stderr
    assert "applied 0 migration(s)" in again.stdout
    with stack.pg() as conn:
        identity = dict(conn.execute("SELECT relname, relreplident FROM pg_class WHERE relname = ANY(%s)",
                                     (["users", "posts", "replies", "follows"],)).fetchall())
    assert identity == {"users": "d", "posts": "f", "replies": "f", "follows": "d"}
