"""Each capture test file gets its own PostgreSQL and broker: a file's captures each hold a
replication slot (the server allows 10), and a snapshot reads every row earlier files wrote."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from projectors.settings import settings_to_env
from tests.conftest import StackHandle, running


@pytest.fixture(scope="module")
def stack() -> Iterator[StackHandle]:
    """PostgreSQL (migrated) and the broker, for one test file. Capture is started per test."""
    with running("projectors-capture-test-", ["postgres", "broker"]) as (settings, env):
        yield StackHandle(settings, {**env, **settings_to_env(settings)})
