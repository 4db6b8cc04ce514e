"""`projectors` commands run as parts of the local stack: capture, the workers and the read API,
each with the stack's settings in its environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

from projectors.errors import ConfigurationError
from projectors.settings import Settings, settings_to_env
from projectors.stack.part import STOP_TIMEOUT_S, Part, require_binary, tail
from projectors.stack.servers import Broker


class ProjectorsProcess(Part):
    """A `projectors` subcommand run as a stack part, with the stack's settings in its environment."""

    @property
    def host_port(self) -> tuple[str, int]:
        return Broker(self.settings).host_port  # listens on nothing; it talks to the broker

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTORS_")}
        env.update(settings_to_env(self.settings))
        env["PROJECTORS_STACK_DIR"] = str(self.root)
        return env

    def exited(self, proc: subprocess.Popen[bytes]) -> ConfigurationError:
        self.pid_file.unlink(missing_ok=True)
        return ConfigurationError(
            f"{self.name} exited with code {proc.returncode}; see {self.log_file}:\n" + tail(self.log_file)
        )


class Capture(ProjectorsProcess):
    """`projectors capture`: the embedded Debezium engine publishing to the broker."""

    name = "capture"
    setting = "PROJECTORS_CAPTURE_STATE_DIR"

    @property
    def address(self) -> str:
        state = self.settings.capture_state_dir
        waiting, standby = state / "reconnecting", state / "standby"
        note = f", reconnecting: {waiting.read_text().strip()[:200]}" if waiting.exists() else ""
        if standby.exists():  # another capture holds the slot's lease
            note += f", {standby.read_text().strip()[:200]}"
        return f"-> {self.settings.kafka.bootstrap_servers} (state {state}{note})"

    def prepare(self) -> None:
        require_binary(
            "java", "the embedded Debezium engine", "install a Java 17 runtime (apt-get install openjdk-17-jre)"
        )

    def command(self) -> list[str]:
        return [sys.executable, "-m", "projectors.cli", "capture"]

    @property
    def stopping(self) -> str:
        return f"SIGTERM: Debezium stops and commits its offsets, up to {STOP_TIMEOUT_S:.0f}s"

    def start(self, timeout: float) -> None:
        if self.pid() is not None:
            return
        self.prepare()
        ready = self.settings.capture_state_dir / "ready"
        ready.unlink(missing_ok=True)
        proc = self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready.exists():
                return
            if proc.poll() is not None:
                raise self.exited(proc)
            time.sleep(0.2)
        raise ConfigurationError(f"capture not ready after {timeout:.0f}s; see {self.log_file}")

    def healthy(self) -> bool:
        return (self.settings.capture_state_dir / "ready").exists()


class Worker(ProjectorsProcess):
    """`projectors worker <projection>`: one faust worker process of one projection. The processes
    of a projection (``PROJECTORS_STACK_WORKERS``) share its partitions in its consumer group; the
    first is ``worker-<projection>``, the others ``worker-<projection>-<n>``."""

    projection = ""
    setting = "PROJECTORS_WORKER_*"

    def __init__(self, settings: Settings, index: int = 1) -> None:
        super().__init__(settings)
        self.index = index
        self.name = f"worker-{self.projection}" if index == 1 else f"worker-{self.projection}-{index}"

    @property
    def address(self) -> str:
        return f"group projectors-{self.projection}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "projectors.cli", "worker", self.projection]

    @property
    def stop_timeout_s(self) -> float:
        """The worker's own shutdown grace for its batch in flight, and a few seconds to leave its
        group: killed sooner, a batch it would have finished is redelivered instead."""
        return self.settings.worker.shutdown_grace_s + 5.0

    @property
    def stopping(self) -> str:
        return f"SIGTERM: it finishes its batch in flight, up to {self.stop_timeout_s:.0f}s"

    def stop(self, timeout: float | None = None) -> None:
        super().stop(self.stop_timeout_s if timeout is None else timeout)

    def start(self, timeout: float) -> None:
        if self.pid() is not None:
            return
        proc = self.spawn()
        time.sleep(1.0)
        if proc.poll() is not None:
            raise self.exited(proc)

    def healthy(self) -> bool:
        return self.pid() is not None


class Reader(ProjectorsProcess):
    """`projectors serve`: the HTTP read API, with the read-only credentials of read services."""

    name = "reader"
    setting = "PROJECTORS_READ_API_PORT"

    @property
    def host_port(self) -> tuple[str, int]:
        return self.settings.read.api_host, self.settings.read.api_port

    @property
    def address(self) -> str:
        host, port = self.host_port
        return f"http://{host}:{port}/v1/"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "projectors.cli", "serve"]

    def healthy(self) -> bool:
        host, port = self.host_port
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2) as answer:
                return int(answer.status) == 200
        except (OSError, urllib.error.URLError):
            return False
