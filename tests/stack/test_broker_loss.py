"""A broker that dies before every event was projected: `stack up` restores what it lost."""

from __future__ import annotations

import os
import signal
import time

from projectors.runtime.observe import pid_alive
from projectors.settings import load_settings
from projectors.stack import local
from tests.conftest import StackHandle, private_dir, stack_env
from tests.operations.test_operators import assert_clean
from tests.stack.common import NAMES, activity, cli_ok


def test_the_broker_lost_unprojected_events_and_stack_up_restores_them() -> None:
    env = stack_env(private_dir("projectors-brokerloss-"))
    handle = StackHandle(load_settings(env), env)
    settings = handle.settings
    try:
        cli_ok(handle, "stack", "up")
        activity(settings, 11, 200, first=True)
        assert_clean(handle, NAMES)
        # the graph's worker stops; more activity reaches the topics only; then the broker dies
        local.down(settings, ["worker-graph"], say=lambda _l: None)
        activity(settings, 12, 200, first=False)
        pid = local.parts(settings, ["broker"])[0].pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # the broker dies without stack down
        deadline = time.monotonic() + 60
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)

        restored = cli_ok(handle, "stack", "up")
        assert "graph: the broker restarted before it had projected every event: restoring" in restored, restored
        assert "graph: restored" in restored, restored
        assert_clean(handle, NAMES)
    finally:
        handle.cli("stack", "down", timeout=300)
