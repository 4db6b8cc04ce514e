"""The capture and reader roles of the source database (``roles.sql``), created or brought back to
exactly their privileges, with their passwords, by the database owner."""

from __future__ import annotations

from importlib import resources

from psycopg import sql

from projectors.db.migrate import HEARTBEAT_TABLE, connect, publication_tables
from projectors.errors import ConfigurationError
from projectors.settings import PostgresSettings
from projectors.source import TICKET_SEQUENCE

CAPTURE_ROLE = "projectors_capture"
READER_ROLE = "projectors_reader"


def apply_roles(
    owner: PostgresSettings,
    publication: str,
    captured: list[str],
    capture_password: str,
    reader_password: str,
    capture_role: str = CAPTURE_ROLE,
    reader_role: str = READER_ROLE,
) -> None:
    """Create the roles if missing and set their privileges on ``owner.database``: ``capture_role``
    may replicate and read the tables of ``publication``; ``reader_role`` may read ``captured``."""
    if not capture_password or not reader_password:
        raise ConfigurationError("the capture and reader roles need a password each")
    text = (resources.files("projectors.db") / "roles.sql").read_text()
    with connect(owner) as conn:
        published = publication_tables(conn, publication)
        if not published:
            raise ConfigurationError(f"publication {publication!r} has no tables: run `projectors db migrate` first")
        for role in (capture_role, reader_role):
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))

        def tables(names: list[str]) -> sql.Composable:
            return sql.SQL(", ").join(sql.Identifier("public", t) for t in names)

        conn.execute(
            sql.SQL(text).format(
                capture=sql.Identifier(capture_role),
                reader=sql.Identifier(reader_role),
                capture_password=sql.Literal(capture_password),
                reader_password=sql.Literal(reader_password),
                database=sql.Identifier(owner.database),
                published=tables(published),
                heartbeat=sql.Identifier("public", HEARTBEAT_TABLE),
                captured=tables(captured),
                ticket=sql.Identifier("public", TICKET_SEQUENCE),
            )
        )
        conn.commit()
