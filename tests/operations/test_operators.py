"""Operators' tools on the real local stack: status, health and metrics, verify --repair, dead
letters and redrive, replay during writes, a store outage."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from projectors.cli import EXIT_BROKEN_PIPE
from projectors.db.migrate import connect
from projectors.model import table_topic
from projectors.operations.verify import verify_until_clean
from projectors.projections import PROJECTIONS
from projectors.runtime.observe import pid_alive
from projectors.runtime.stats import read_stats
from projectors.settings import load_settings
from projectors.stack import local
from projectors.stack.part import Part
from projectors.stack.servers import FalkorDB
from projectors.stores.factory import open_raw_store
from projectors.workload import SocialWorkload
from tests.conftest import StackHandle, free_port, private_dir, stack_env, worker_part

NAMES = list(PROJECTIONS)
GRACE_S = 5


@pytest.fixture(scope="module")
def ops_stack() -> Iterator[StackHandle]:
    env = stack_env(private_dir("projectors-ops-"))
    env.update({"PROJECTORS_WORKER_BATCH_SIZE": "200", "PROJECTORS_WORKER_BATCH_WITHIN_S": "0.3",
                "PROJECTORS_WORKER_RETRY_MAX_S": "2", "PROJECTORS_WORKER_SHUTDOWN_GRACE_S": str(GRACE_S)})
    settings = load_settings(env)
    handle = StackHandle(settings, env)
    try:
        local.up(settings, local.SERVERS, say=lambda _l: None)
        for name in NAMES:
            port = free_port()
            handle.extra[name] = str(port)
            worker(handle, name).start(60)
        with connect(settings.pg) as conn:
            load = SocialWorkload(conn, rng=random.Random(31))
            load.seed(users=25, posts=30, follows=70)
            load.run(200)
        assert_clean(handle, NAMES)
        yield handle
    finally:
        local.down(settings, local.ORDER, say=lambda _l: None)


def worker(handle: StackHandle, projection: str) -> Part:
    settings = handle.with_env(PROJECTORS_WORKER_WEB_PORT=handle.extra.get(projection, "0"))
    return worker_part(settings, projection)


def assert_clean(handle: StackHandle, names: list[str], wait_s: float = 240) -> None:
    for r in verify_until_clean(handle.settings, names, open_raw_store, wait_s=wait_s):
        assert r.total == 0, json.dumps(r.as_dict())[:2000]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_status_health_and_metrics(ops_stack: StackHandle) -> None:
    done = ops_stack.cli("status", "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {r["projection"]: r for r in json.loads(done.stdout)}
    assert set(rows) == set(NAMES)
    for row in rows.values():
        assert row["store_up"] and row["events"] > 0 and row["workers"] == 1, row
        assert any(p["committed"] is not None for p in row["partitions"]), row  # empty partitions: none
        assert row["last_lsn"] > 0 and row["last_applied_age_s"] is not None
    human = ops_stack.cli("status", "feed")
    assert "feed" in human.stdout and "lag" in human.stdout and "ev/s 60s" in human.stdout
    assert all(row["rate_window_s"] == 60 for row in rows.values())
    # `projectors status | head -3`: the reader goes away; no traceback
    piped = ops_stack.cli_into_closed_pipe("status")
    assert piped.returncode == EXIT_BROKEN_PIPE and "Traceback" not in piped.stderr, piped.stderr
    for name in NAMES:
        status, body = get(f"http://127.0.0.1:{ops_stack.extra[name]}/health/ready")
        assert status == 200 and json.loads(body)["ready"], body
        status, metrics = get(f"http://127.0.0.1:{ops_stack.extra[name]}/metrics")
        assert status == 200
        assert f'projectors_events_total{{projection="{name}"}}' in metrics
        assert "projectors_stage_seconds_bucket" in metrics and "projectors_store_up" in metrics


def test_verify_repair_rewrites_exactly_the_drifted_items(ops_stack: StackHandle) -> None:
    from projectors.stores.cosmos import CosmosStore

    store = open_raw_store(ops_stack.settings, "counters")
    assert isinstance(store, CosmosStore)
    container = store.container("counters")
    query = "SELECT * FROM c WHERE c.deleted = false"
    items = list(container.query_items(query, enable_cross_partition_query=True))
    missing, wrong = items[0], items[1]
    container.delete_item(missing["id"], partition_key=missing["subjectId"])
    wrong["count"] = wrong["count"] + 7
    container.replace_item(wrong["id"], wrong)
    container.create_item({"id": "nobody:likes", "subjectId": "nobody", "kind": "likes", "count": 1,
                           "sourceVersion": 0, "deleted": False})
    store.close()
    check = ops_stack.cli("verify", "counters", "--full", "--json")
    assert check.returncode == 1
    drift = json.loads(check.stdout[: check.stdout.rindex("]") + 1])[0]
    assert (drift["missing"], drift["wrong"], drift["extra"]) == (1, 1, 1)
    fixed = ops_stack.cli("verify", "counters", "--full", "--repair", "--json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    report = json.loads(fixed.stdout[fixed.stdout.rindex("[\n  {") :])[0]
    assert report["drifted"] == 3 and report["driftAfter"] == 0 and report["changed"] == 3, report
    assert ops_stack.cli("verify", "counters", "--full").returncode == 0


def test_a_dead_letter_is_listed_shown_and_redriven_after_a_fix(ops_stack: StackHandle, tmp_path: Path) -> None:
    settings = ops_stack.settings
    with connect(settings.pg) as conn:
        user = conn.execute("SELECT id::text FROM users ORDER BY id LIMIT 1").fetchone()[0]  # type: ignore[index]
    # the search store lost this user (drift), and the event that would fix it arrives broken
    with sqlite3.connect(settings.search_sqlite_path) as db:
        db.execute("DELETE FROM docs WHERE idx = 'users' AND id = ?", (user,))
    assert ops_stack.cli("verify", "search", "--full").returncode == 1
    topic = table_topic(settings.capture.topic_prefix, "users")
    broken = {"op": "u", "after": {"id": user, "handle": "x"}, "source": {"table": "users", "schema": "public"}}
    send(settings, topic, user, broken)
    letter_id = wait_for_letter(ops_stack, "search", topic, lambda _letter: True)
    shown = json.loads(ops_stack.cli("dlq", "show", letter_id).stdout)
    assert shown["origin"]["topic"] == topic and "source.lsn" in shown["reason"]
    # redriven as it is, it fails again and comes back as a new letter (no loop), listed with the
    # first as one dead letter of that origin, waiting for a redrive
    again = ops_stack.cli("dlq", "redrive", letter_id)
    assert again.returncode == 1 and "dead-lettered again" in again.stdout
    listed = [line for line in ops_stack.cli("dlq", "list", "--projection", "search").stdout.splitlines()
              if topic in line]
    assert len(listed) == 1 and "(dead-lettered 2 times)" in listed[0] and "(redriven)" not in listed[0], listed
    assert json.loads(ops_stack.cli("dlq", "show", letter_id).stdout)["ids"][0] == letter_id
    # the fix: the operator supplies the corrected event
    fixed = dict(broken, source={"table": "users", "schema": "public", "lsn": 1})
    (tmp_path / "fixed.json").write_text(json.dumps(fixed))
    done = ops_stack.cli("dlq", "redrive", letter_id, "--value-file", str(tmp_path / "fixed.json"))
    assert done.returncode == 0 and "applied" in done.stdout, done.stdout + done.stderr
    assert ops_stack.cli("verify", "search", "--full").returncode == 0  # the redriven event restored the user
    listed = ops_stack.cli("dlq", "list", "--projection", "search").stdout
    assert "redriveOf" not in listed
    letters = [line for line in listed.splitlines() if topic in line]
    # one dead letter for the origin: the original and the one from the failed redrive; nothing more
    assert len(letters) == 1 and "(dead-lettered 2 times)" in letters[0] and "(redriven)" in letters[0], listed
    # status counts the letters that were written (not the broker's watermark)
    written = re.search(r"; (\d+) written\)", listed)
    assert written is not None, listed
    status = json.loads(ops_stack.cli("status", "--json").stdout)
    search = next(p for p in status if p["projection"] == "search")
    assert search["dead_letters"] == int(written.group(1))


def test_a_rebuild_does_not_dead_letter_an_origin_again(ops_stack: StackHandle) -> None:
    """A rebuild from the topics replays events the worker dead-lettered: they fail again, and no
    second letter is written for any of them."""
    settings = ops_stack.settings
    topic = table_topic(settings.capture.topic_prefix, "users")
    user = str(uuid.uuid4())
    broken = {"op": "u", "after": {"id": user, "handle": "y"}, "source": {"table": "users", "schema": "public"}}
    send(settings, topic, user, broken)  # no source.lsn: a poison event
    letter_id = wait_for_letter(ops_stack, "search", topic, lambda letter: letter["key"] == json.dumps({"id": user}))
    before = ops_stack.cli("dlq", "list", "--projection", "search")
    assert before.returncode == 0, before.stderr
    rebuilt = ops_stack.cli("rebuild", "search", "--from-topics", "--force", "--json", timeout=600)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    after = ops_stack.cli("dlq", "list", "--projection", "search")
    assert after.stdout == before.stdout  # the same dead letters, each written as often as before
    shown = json.loads(ops_stack.cli("dlq", "show", letter_id).stdout)
    assert (shown["times"], shown["ids"]) == (1, [letter_id])


def test_a_large_dead_letter_keeps_its_size_and_is_redriven_from_its_origin(ops_stack: StackHandle) -> None:
    settings = ops_stack.settings
    topic = table_topic(settings.capture.topic_prefix, "users")
    user = str(uuid.uuid4())
    broken = {"op": "u", "after": {"id": user, "handle": "x"}, "source": {"table": "users", "schema": "public"},
              "padding": "p" * 200_000}
    send(settings, topic, user, broken)
    letter_id = wait_for_letter(ops_stack, "graph", topic, lambda letter: bool(letter.get("truncated")))
    shown = json.loads(ops_stack.cli("dlq", "show", letter_id).stdout)
    assert shown["value"] is None and shown["value_bytes"] > 200_000 and len(shown["value_sha256"]) == 64
    # redriven as it is: the value is read from its origin offset, still broken: a letter again
    again = ops_stack.cli("dlq", "redrive", letter_id)
    assert again.returncode == 1 and "dead-lettered again" in again.stdout, again.stdout + again.stderr


def send(settings: Any, topic: str, user: str, value: dict[str, Any]) -> None:
    """A forged record on a capture topic."""
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    producer.produce(topic, key=json.dumps({"id": user}).encode(), value=json.dumps(value).encode())
    assert producer.flush(10) == 0


def wait_for_letter(handle: StackHandle, projection: str, topic: str, accept: Any, timeout_s: float = 90) -> str:
    """The id of the first dead letter of ``projection`` from ``topic`` for a missing source LSN that
    ``accept`` takes (given the letter as `dlq show` prints it)."""
    deadline = time.monotonic() + timeout_s
    listed = ""
    while time.monotonic() < deadline:
        listed = handle.cli("dlq", "list", "--projection", projection).stdout
        for line in listed.splitlines():
            if topic in line and "lsn" in line:
                letter_id = line.split()[0]
                if accept(json.loads(handle.cli("dlq", "show", letter_id).stdout)):
                    return letter_id
        time.sleep(2)
    raise AssertionError(f"no such dead letter of {projection}: {listed}")


def test_a_graph_store_outage_loses_nothing(ops_stack: StackHandle) -> None:
    settings = ops_stack.settings
    falkor = FalkorDB(settings)
    pid = falkor.pid()
    assert pid is not None
    before = {n: sum(s["deadLetters"] for s in read_stats(settings, n)) for n in NAMES}
    os.kill(pid, signal.SIGSTOP)  # unreachable, as in a network partition: requests time out
    stopped_at = time.monotonic()
    try:
        with connect(settings.pg) as conn:
            load = SocialWorkload(conn, rng=random.Random(43))
            load.users = [uuid.UUID(r[0]) for r in conn.execute("SELECT id::text FROM users").fetchall()]
            load.posts = [uuid.UUID(r[0]) for r in conn.execute("SELECT id::text FROM posts").fetchall()]
            load.run(150)
        deadline = time.monotonic() + 60
        status, body = get(f"http://127.0.0.1:{ops_stack.extra['graph']}/health/ready")
        while status != 503 and time.monotonic() < deadline:
            time.sleep(1)
            status, body = get(f"http://127.0.0.1:{ops_stack.extra['graph']}/health/ready")
        assert status == 503 and not json.loads(body)["parts"]["store"], body
        # SIGTERM while its batch cannot be written: the worker leaves within the grace, committing
        # nothing more; the batch goes to the next worker
        graph = worker(ops_stack, "graph")
        graph_pid = graph.pid()
        assert graph_pid is not None
        os.kill(graph_pid, signal.SIGTERM)
        signalled = time.monotonic()
        while pid_alive(graph_pid) and time.monotonic() - signalled < GRACE_S + 30:
            time.sleep(0.2)
        took = time.monotonic() - signalled
        assert not pid_alive(graph_pid), f"the graph worker still runs {took:.0f}s after SIGTERM"
        assert took < GRACE_S + 10, took
        assert "exiting without committing the batch in flight" in graph.log_file.read_text(errors="replace")
        # freshness: the graph has changes waiting (read from the records, not the high watermark)
        assert behind(ops_stack, "graph") > 0
        time.sleep(max(0.0, 20.0 - (time.monotonic() - stopped_at)))  # down for 20 s in all
        status, _ = get(f"http://127.0.0.1:{ops_stack.extra['feed']}/health/ready")
        assert status == 200  # the other projections go on
    finally:
        os.kill(pid, signal.SIGCONT)
    graph.start(90)
    assert_clean(ops_stack, NAMES)
    after = {n: sum(s["deadLetters"] for s in read_stats(settings, n)) for n in NAMES}
    assert after == before
    deadline = time.monotonic() + 90  # the group commits what it applied within its commit interval
    while behind(ops_stack, "graph") > 0 and time.monotonic() < deadline:
        time.sleep(2)
    assert behind(ops_stack, "graph") == 0
    retried: Any = [s["retries"] for s in read_stats(settings, "graph")]
    assert retried


def behind(handle: StackHandle, projection: str) -> float:
    done = handle.cli("status", projection, "--json", timeout=120)
    assert done.returncode in (0, 1), done.stderr
    (row,) = json.loads(done.stdout)
    return float(row["behind_s"])


def test_replay_during_writes_ends_with_zero_drift(ops_stack: StackHandle) -> None:
    settings = ops_stack.settings
    stop = threading.Event()

    def write() -> None:
        with connect(settings.pg) as conn:
            load = SocialWorkload(conn, rng=random.Random(41))
            load.users = [uuid.UUID(r[0]) for r in conn.execute("SELECT id::text FROM users").fetchall()]
            load.posts = [uuid.UUID(r[0]) for r in conn.execute("SELECT id::text FROM posts").fetchall()]
            while not stop.is_set():
                load.run(20)
                time.sleep(0.2)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        refused = ops_stack.cli("replay", "graph")
        assert refused.returncode == 2 and "--force" in refused.stderr
        done = ops_stack.cli("replay", "graph", "--force", "--wait", "180", timeout=400)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "events" in done.stdout and "100.0%" in done.stdout
    finally:
        stop.set()
        writer.join()
    assert_clean(ops_stack, ["graph"])
