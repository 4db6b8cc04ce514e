"""The local stack's PostgreSQL: a private cluster with logical decoding."""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
from pathlib import Path

from projectors.errors import ConfigurationError
from projectors.runtime.observe import pid_alive
from projectors.stack.part import Part, port_open, require_binary, tail

PG_OS_USER = "postgres"  # PostgreSQL refuses to run as root

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
        self.refuse_a_taken_port()
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
                    f"-p {self.host_port[1]}",
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
