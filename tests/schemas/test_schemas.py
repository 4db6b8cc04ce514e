"""schemas/ is generated from the models: it must not drift; the projections' documents (from the
spec SQL on real PostgreSQL) validate against their models, and what the stores hold against
schemas/ (tests/schemas/test_stored_items.py; events from real capture in tests/capture)."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import jsonschema
import psycopg
from pydantic import TypeAdapter

from projectors import schemas
from projectors.db.migrate import migrate
from projectors.projections import DESCRIPTORS, PROJECTIONS, Projection, capture_tables
from projectors.projections.feed import FeedProjection
from projectors.source import PostgresSource
from projectors.workload import SocialWorkload
from tests.conftest import StackHandle


def test_schema_files_match_the_models() -> None:
    assert schemas.drift(schemas.SCHEMAS_DIR) == [], "run `projectors schemas write`"


def test_drift_is_detected(tmp_path: Path) -> None:
    schemas.write(tmp_path)
    assert schemas.drift(tmp_path) == []
    (tmp_path / "events" / "posts.json").write_text("{}")
    (tmp_path / "events" / "extra.json").write_text("{}")
    assert schemas.drift(tmp_path) == ["events/extra.json", "events/posts.json"]


def test_every_projected_document_validates_against_its_model(stack: StackHandle) -> None:
    pg = stack.settings.pg.model_copy(update={"database": f"schema_{uuid.uuid4().hex[:10]}"})
    migrate(pg, "schema_pub", capture_tables(stack.settings.capture))
    with psycopg.connect(pg.conninfo()) as conn:
        SocialWorkload(conn, rng=random.Random(4)).run(300)
        seen: set[str] = set()
        # the feed with a low celebrity threshold too, so its fan-out-on-read containers have items
        hybrid: list[Projection] = [*PROJECTIONS.values(), FeedProjection(celebrity_followers=3)]
        for projection in hybrid:
            name = projection.name
            for key, doc in projection.spec_all(PostgresSource(conn)):
                model = DESCRIPTORS[name].documents[key.collection]
                jsonschema.validate(doc, TypeAdapter(model).json_schema(by_alias=True))
                seen.add(f"{name}/{key.collection}")
    assert len(seen) >= 16, seen
    assert {"feed/feedPosts", "feed/feedFollows", "feed/feedAuthors", "notifications/notifications",
            "publicProfiles/publicProfiles"} <= seen
