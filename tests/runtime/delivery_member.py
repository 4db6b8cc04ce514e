"""One member of the delivery test's consumer group: the workers' app class and agent
(``worker_parts.add_agent``: batches taken unacknowledged, each acknowledged once written), with a
batch writer that appends every event's ``topic partition offset`` to a file before it returns.

``python -m tests.runtime.delivery_member BOOTSTRAP GROUP OUT HAND_OVER [WITHIN_S]``"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
import types
from typing import Any

TOPICS = ("d0", "d1", "d2")


def main(bootstrap: str, group: str, out: str, hand_over: str, within_s: str = "0.1") -> None:
    from projectors.runtime.clock import Taken
    from projectors.runtime.faust_app import app_class
    from projectors.runtime.worker_parts import BatchGuard, add_agent

    app = app_class(100, 100)(
        group, broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False, autodiscover=False,
        consumer_auto_offset_reset="earliest", topic_partitions=3, stream_wait_empty=True,
        datadir=tempfile.mkdtemp(prefix="delivery-"), broker_commit_interval=0.1, broker_session_timeout=6,
        broker_heartbeat_interval=1.2,
    )
    source = app.topic(*TOPICS, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def write(taken: Taken) -> None:
        lines = "".join(f"{e.message.topic} {e.message.partition} {e.message.offset}\n" for e in taken.events)
        time.sleep(random.uniform(0.05, 0.3))  # a store's round trips: most kills land mid-batch
        os.write(fd, lines.encode())

    worker: Any = types.SimpleNamespace(batch_size=200, batch_within_s=float(within_s), batches_in_flight=2,
                                        hand_over=hand_over)
    guard = BatchGuard(types.SimpleNamespace(stopping=False), 10)  # type: ignore[arg-type]
    add_agent(app, source, "delivery", types.SimpleNamespace(worker=worker), write, guard,  # type: ignore[arg-type]
              clocked=False)
    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main(*sys.argv[1:6])
