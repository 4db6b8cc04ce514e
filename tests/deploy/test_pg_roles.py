"""The least-privilege roles of the source database (projectors/db/roles.sql), on the real local
PostgreSQL: the reader runs the projections' spec reads and writes nothing; capture replicates and
reads the published tables and writes nothing but the heartbeat row."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import errors, sql
from pydantic import SecretStr

from projectors.capture.connector import connector_settings
from projectors.db.migrate import migrate
from projectors.db.roles import apply_roles
from projectors.model import ItemKey
from projectors.projections import PROJECTIONS, capture_tables, projection
from projectors.settings import PostgresSettings
from projectors.source import PostgresSource
from tests.conftest import StackHandle


@dataclass
class Roles:
    owner: PostgresSettings
    capture: PostgresSettings
    reader: PostgresSettings
    user: str
    post: str


@pytest.fixture()
def roles(stack: StackHandle) -> Iterator[Roles]:
    """A fresh migrated database with some activity, and the two roles (names of this test's own)."""
    owner = stack.settings.pg.model_copy(update={"database": f"roles_{uuid.uuid4().hex[:10]}"})
    tables = capture_tables(stack.settings.capture)
    migrate(owner, "roles_pub", tables)
    tag = uuid.uuid4().hex[:8]
    capture_role, reader_role = f"capture_{tag}", f"reader_{tag}"
    apply_roles(owner, "roles_pub", tables, "capture-pw", "reader pw 'quoted'", capture_role, reader_role)
    user, other, post = (str(uuid.uuid4()) for _ in range(3))
    with psycopg.connect(owner.conninfo()) as conn:
        conn.execute("INSERT INTO users (id, handle) VALUES (%s, 'ann'), (%s, 'bob')", (user, other))
        conn.execute(
            "INSERT INTO posts (id, author_id, body, topics) VALUES (%s, %s, 'hello', '{kafka}')", (post, user)
        )
        conn.execute("INSERT INTO follows (follower_id, followee_id) VALUES (%s, %s)", (other, user))
        conn.execute("INSERT INTO reactions (post_id, user_id, kind) VALUES (%s, %s, 'like')", (post, other))
    yield Roles(
        owner,
        owner.model_copy(update={"user": capture_role, "password": SecretStr("capture-pw")}),
        owner.model_copy(update={"user": reader_role, "password": SecretStr("reader pw 'quoted'")}),
        user,
        post,
    )
    with psycopg.connect(owner.conninfo(), autocommit=True) as conn:
        for role in (capture_role, reader_role):
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


WRITES = [
    "INSERT INTO users (id, handle) VALUES (gen_random_uuid(), 'mallory')",
    "UPDATE users SET bio = 'owned'",
    "DELETE FROM follows",
    "INSERT INTO reactions SELECT id, author_id, 'love' FROM posts",
    "TRUNCATE mutes",
    "CREATE TABLE intruder (id int)",
    "SELECT setval('projectors_read_ticket', 1)",
]


def refused(settings: PostgresSettings, statement: str) -> bool:
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        try:
            conn.execute(statement)
        except errors.InsufficientPrivilege:
            return True
    return False


def test_the_reader_runs_every_projections_spec_reads(stack: StackHandle, roles: Roles) -> None:
    with psycopg.connect(roles.owner.conninfo()) as conn:
        as_owner = {name: dict(projection(name, stack.settings).spec_all(PostgresSource(conn))) for name in PROJECTIONS}
    with psycopg.connect(roles.reader.conninfo()) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        as_reader = {
            name: dict(projection(name, stack.settings).spec_all(PostgresSource(conn))) for name in PROJECTIONS
        }
    assert as_reader == as_owner
    assert ItemKey("User", roles.user) in as_reader["graph"] and ItemKey("Topic", "kafka") in as_reader["graph"]
    with psycopg.connect(roles.reader.conninfo(), autocommit=True) as conn:
        source = PostgresSource(conn)
        with source.read() as ticket:  # what a worker does for a batch: a ticket, then its snapshot
            assert ticket > 0
            keys = {ItemKey("User", roles.user), ItemKey("Post", roles.post)}
            assert set(projection("graph", stack.settings).spec_for(keys, source)) == keys


def test_the_reader_cannot_write(roles: Roles) -> None:
    for statement in WRITES:
        assert refused(roles.reader, statement), statement
    assert refused(roles.reader, "SELECT pg_create_logical_replication_slot('reader_slot', 'pgoutput')")


def test_capture_replicates_and_reads_the_publication_and_writes_only_the_heartbeat(
    stack: StackHandle, roles: Roles
) -> None:
    for statement in WRITES:
        assert refused(roles.capture, statement), statement
    assert refused(roles.capture, "SELECT nextval('projectors_read_ticket')")
    slot = f"roles_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(roles.capture.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (2,)
        conn.execute(connector_settings(stack.settings.capture)["heartbeat.action.query"])
    with psycopg.connect(roles.owner.conninfo()) as conn:
        row = conn.execute(
            "SELECT rolreplication, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = %s",
            (roles.capture.user,),
        ).fetchone()
    assert row == (True, False, False, False)


def test_applying_the_roles_again_takes_back_a_privilege_granted_since(stack: StackHandle, roles: Roles) -> None:
    with psycopg.connect(roles.owner.conninfo()) as conn:
        conn.execute(sql.SQL("GRANT INSERT ON users TO {}").format(sql.Identifier(roles.reader.user)))
    assert not refused(roles.reader, "INSERT INTO users (id, handle) VALUES (gen_random_uuid(), 'granted')")
    apply_roles(
        roles.owner, "roles_pub", capture_tables(stack.settings.capture), "capture-pw", "reader pw 'quoted'",
        roles.capture.user, roles.reader.user,
    )
    assert refused(roles.reader, "INSERT INTO users (id, handle) VALUES (gen_random_uuid(), 'again')")
