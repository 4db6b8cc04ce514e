"""TLS to PostgreSQL with verify-full, on a real PostgreSQL serving a certificate that the test signs
with a CA of its own (openssl): the CA setting is used by the projectors' connections (libpq) and by
capture's connector (Debezium's validation connects through pgjdbc); a wrong CA is refused in one
clear line."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg

from projectors.stack.postgres import Postgres
from tests.conftest import local_stack


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> Path:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=folder)
    return folder / f"{name}.crt"


def make_server_cert(folder: Path, ca: str) -> tuple[Path, Path]:
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
            "-out", "server.csr", cwd=folder)
    openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=folder)
    return folder / "server.crt", folder / "server.key"


def test_verify_full_connects_with_the_ca_setting_and_a_wrong_ca_is_refused(tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "ca")
    wrong = make_ca(tmp_path, "other")
    cert, key = make_server_cert(tmp_path, "ca")
    with local_stack("projectors-tls-", ["postgres"]) as handle:
        server = Postgres(handle.settings)
        data = server.data_dir
        owner = data.stat()
        for source in (cert, key):
            target = data / source.name
            shutil.copy(source, target)
            os.chown(target, owner.st_uid, owner.st_gid)
            target.chmod(0o600)
        with psycopg.connect(handle.settings.pg.conninfo(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET ssl = on")
            conn.execute("ALTER SYSTEM SET ssl_cert_file = 'server.crt'")
            conn.execute("ALTER SYSTEM SET ssl_key_file = 'server.key'")
            conn.execute("SELECT pg_reload_conf()")
        tls = {"PROJECTORS_PG_HOST": "localhost", "PROJECTORS_PG_SSLMODE": "verify-full"}

        settings = handle.with_env(**tls, PROJECTORS_PG_SSLROOTCERT=str(ca))
        with psycopg.connect(settings.pg.conninfo()) as conn:
            row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
            assert row == (True,)
        done = handle.cli("db", "migrate", env={**handle.env, **tls, "PROJECTORS_PG_SSLROOTCERT": str(ca)})
        assert done.returncode == 0, done.stdout + done.stderr

        refused = handle.cli("db", "migrate", env={**handle.env, **tls, "PROJECTORS_PG_SSLROOTCERT": str(wrong)})
        assert refused.returncode == 2, refused.stdout + refused.stderr
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, refused.stderr
        assert "certificate verify failed" in lines[0] and "PROJECTORS_PG_SSLROOTCERT" in lines[0], lines[0]
        assert "Traceback" not in refused.stderr

        # capture: Debezium's own validation connects with the same settings (pgjdbc, verify-full)
        checked = handle.cli("config", "check", env={**handle.env, **tls, "PROJECTORS_PG_SSLROOTCERT": str(ca)},
                             timeout=180)
        assert checked.returncode == 0 and "could not reach PostgreSQL" not in checked.stderr, checked.stderr[-2000:]
        checked_wrong = handle.cli("config", "check",
                                   env={**handle.env, **tls, "PROJECTORS_PG_SSLROOTCERT": str(wrong)}, timeout=180)
        assert "could not reach PostgreSQL" in checked_wrong.stderr and "SSL error" in checked_wrong.stderr, (
            checked_wrong.stderr[-2000:])

        missing = handle.cli("config", "check", "--no-connector",
                             env={**handle.env, "PROJECTORS_PG_SSLROOTCERT": str(tmp_path / "none.crt")})
        assert missing.returncode == 2 and "PROJECTORS_PG_SSLROOTCERT" in missing.stderr, missing.stderr
