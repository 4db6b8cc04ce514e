"""Nothing taken is lost: members of one consumer group run the workers' agent on a real broker
while a producer writes, and are killed (SIGKILL, or SIGTERM) and replaced every few seconds, eight times; every
offset produced must have been written by some member (a batch acknowledged before it was written
would be committed and lost with the member that held it)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import running
from tests.runtime.delivery_member import TOPICS

pytestmark = pytest.mark.stack


def produce_until(bootstrap: str, stop: threading.Event, produced: dict[tuple[str, int], set[int]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "enable.idempotence": True, "acks": "all"})

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        produced.setdefault((msg.topic(), msg.partition()), set()).add(msg.offset())

    i = 0
    while not stop.is_set():
        for _ in range(10):  # flushed batches of 10, as capture publishes
            producer.produce(TOPICS[i % len(TOPICS)], key=str(i).encode(), value=b"v", on_delivery=delivered)
            i += 1
        producer.flush(10)
        time.sleep(0.01)
    assert producer.flush(30) == 0


@contextlib.contextmanager
def broker_with_topics(prefix: str) -> Iterator[str]:
    """A private broker holding the members' topics; its bootstrap address."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    with running(prefix, ["broker"]) as (settings, _env):
        bootstrap = settings.kafka.bootstrap_servers
        admin = AdminClient({"bootstrap.servers": bootstrap})  # held: its futures die with it
        for future in admin.create_topics([NewTopic(t, 3, 1) for t in TOPICS]).values():
            future.result(30)
        yield bootstrap


def start_member(bootstrap: str, group: str, folder: Path, index: int, hand_over: str,
                 within_s: float = 0.1) -> subprocess.Popen[bytes]:
    """A member process writing ``member-<index>.out`` (and its log) in ``folder``."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.runtime.delivery_member", bootstrap, group,
         str(folder / f"member-{index}.out"), hand_over, str(within_s)],
        stdout=subprocess.DEVNULL, stderr=(folder / f"member-{index}.log").open("w"), start_new_session=True)


def written(folder: Path) -> dict[tuple[str, int], set[int]]:
    seen: dict[tuple[str, int], set[int]] = {}
    for path in folder.glob("member-*.out"):
        for line in path.read_text().splitlines():
            topic, partition, offset = line.split()
            seen.setdefault((topic, int(partition)), set()).add(int(offset))
    return seen


@pytest.mark.parametrize("hand_over", ["natural", "timer"])
def test_members_killed_mid_stream_lose_no_event(hand_over: str, tmp_path: Path) -> None:
    with broker_with_topics(f"projectors-delivery-{hand_over}-") as bootstrap:
        started = 0

        def member() -> subprocess.Popen[bytes]:
            nonlocal started
            started += 1
            return start_member(bootstrap, "delivery", tmp_path, started, hand_over)

        members = [member(), member()]
        produced: dict[tuple[str, int], set[int]] = {}
        stop = threading.Event()
        producer = threading.Thread(target=produce_until, args=(bootstrap, stop, produced))
        producer.start()
        rng, kills = random.Random(hand_over), 0
        try:
            while kills < 8:
                time.sleep(rng.uniform(1.5, 4))
                victim = members.pop(rng.randrange(len(members)))
                os.killpg(victim.pid, signal.SIGKILL if rng.random() < 0.7 else signal.SIGTERM)
                victim.wait(30)
                kills += 1
                members.append(member())
            stop.set()
            producer.join(60)
            deadline = time.monotonic() + 120
            missing: dict[tuple[str, int], set[int]] = {}
            while time.monotonic() < deadline:
                seen = written(tmp_path)
                missing = {tp: offsets - seen.get(tp, set()) for tp, offsets in produced.items()}
                if not any(missing.values()):
                    break
                time.sleep(1)
        finally:
            stop.set()
            for m in members:
                os.killpg(m.pid, signal.SIGKILL)
                m.wait(30)
        total = sum(map(len, produced.values()))
        assert total > 5_000, total
        lost = {tp: sorted(offsets)[:10] for tp, offsets in missing.items() if offsets}
        assert not lost, f"{sum(map(len, missing.values()))} of {total} events never written: {lost}"


def test_the_natural_hand_over_does_not_wait_for_the_timer(tmp_path: Path) -> None:
    """With a 60 s timer, a change alone still reaches the writer at once: handed over because
    the consumer holds nothing more (the timer would next fire a minute after the last batch)."""
    from confluent_kafka import Producer

    with broker_with_topics("projectors-hand-over-") as bootstrap:
        member = start_member(bootstrap, "hand-over", tmp_path, 1, "natural", within_s=60)
        producer = Producer({"bootstrap.servers": bootstrap})

        def write_one(i: int, within_s: float) -> float:
            producer.produce(TOPICS[0], key=str(i).encode(), value=b"v")
            producer.flush(10)
            sent, deadline = time.monotonic(), time.monotonic() + within_s
            while sum(map(len, written(tmp_path).values())) <= i:
                assert time.monotonic() < deadline, f"record {i} not written in {within_s:.0f}s"
                time.sleep(0.05)
            return time.monotonic() - sent

        try:
            write_one(0, 90)  # includes the group's join
            took = [write_one(i, 10) for i in range(1, 4)]
        finally:
            os.killpg(member.pid, signal.SIGKILL)
            member.wait(30)
        assert max(took) < 10, took
