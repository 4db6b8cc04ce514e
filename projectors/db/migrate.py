"""Idempotent schema migrations and the capture publication for the source database."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from projectors.errors import ConfigurationError
from projectors.settings import PostgresSettings

HEARTBEAT_TABLE = "projectors_heartbeat"

log = logging.getLogger(__name__)
_LOCK_KEY = 0x50524F4A  # advisory lock: one migrator at a time


@dataclass(frozen=True)
class MigrationReport:
    created_database: bool
    applied: list[str]
    publication_tables: list[str]


def connect(
    pg: PostgresSettings, database: str | None = None, autocommit: bool = False, **options: Any
) -> psycopg.Connection:
    """Open a connection (``options``: further libpq parameters), turning the usual failures into a
    message that names the setting."""
    try:
        return psycopg.connect(pg.conninfo(database), autocommit=autocommit, **options)
    except psycopg.OperationalError as exc:
        text = " ".join(str(exc).split())  # one line
        if "certificate" in text or "SSL" in text:
            hint = ("check PROJECTORS_PG_SSLROOTCERT (the CA that signed the server's certificate), "
                    "PROJECTORS_PG_SSLMODE and PROJECTORS_PG_HOST (the name the certificate is for)")
        elif "password authentication failed" in text:
            hint = "check PROJECTORS_PG_USER / PROJECTORS_PG_PASSWORD"
        elif "does not exist" in text and "database" in text:
            hint = "run `projectors db migrate` (it creates the database) or check PROJECTORS_PG_DATABASE"
        else:
            hint = "is PostgreSQL running? check PROJECTORS_PG_HOST / PROJECTORS_PG_PORT (`projectors stack status`)"
        raise ConfigurationError(f"cannot connect to PostgreSQL at {pg.host}:{pg.port}: {text} ({hint})") from exc


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("projectors.db") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (folder / name).read_text()) for name in names]


def ensure_database(pg: PostgresSettings) -> bool:
    with connect(pg, database="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (pg.database,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(pg.database)))
        log.info("created database %s", pg.database)
        return True


def migrate(pg: PostgresSettings, publication: str, tables: list[str]) -> MigrationReport:
    """Create the database if needed, apply pending migrations, and make the publication hold exactly
    ``tables`` plus the heartbeat table (``ALTER PUBLICATION ... SET TABLE`` when it differs).

    The heartbeat table is published but not captured (not in ``table.include.list``): its writes
    reach Debezium as WAL positions, which is what lets the slot advance on a quiet database
    (PostgreSQL 15's pgoutput skips transactions that touch no published table)."""
    created = ensure_database(pg)
    applied: list[str] = []
    with connect(pg) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, text in migration_files():
            if version in done:
                continue
            conn.execute(text.encode())
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
            log.info("applied migration %s", version)
        published = [*tables, HEARTBEAT_TABLE]
        ensure_publication(conn, publication, published)
        conn.commit()
    return MigrationReport(created, applied, published)


def ensure_publication(conn: psycopg.Connection, publication: str, tables: list[str]) -> None:
    idents = sql.SQL(", ").join(sql.Identifier("public", t) for t in tables)
    exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,)).fetchone()
    if exists:
        current = sorted(publication_tables(conn, publication))
        if current != sorted(tables):
            conn.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(sql.Identifier(publication), idents))
    else:
        conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(sql.Identifier(publication), idents))


def publication_tables(conn: psycopg.Connection, publication: str) -> list[str]:
    rows = conn.execute(
        "SELECT tablename FROM pg_publication_tables WHERE pubname = %s AND schemaname = 'public'", (publication,)
    ).fetchall()
    return [r[0] for r in rows]
