"""Paths do not depend on the working directory: the stack folder defaults to the project's, a
relative path is refused at start naming its variable, and a reader whose search database does not
exist fails with the path and the setting instead of creating an empty database (no stack needed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from projectors.errors import ConfigurationError
from projectors.read.client import ReadClient
from projectors.settings import SettingsError, load_settings
from projectors.stores.factory import open_raw_store

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The working directory is an empty folder that is not the project."""
    before, folder = Path.cwd(), tmp_path_factory.mktemp("cwd")
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(before)


def test_the_stack_folder_is_the_projects_whatever_the_working_directory(elsewhere: Path) -> None:
    settings = load_settings({})
    assert settings.stack.dir == PROJECT / ".stack"
    assert settings.search_sqlite_path == PROJECT / ".stack" / "search.sqlite3"
    assert settings.capture_state_dir == PROJECT / ".stack" / "capture"


@pytest.mark.parametrize(
    "variable", ["PROJECTORS_STACK_DIR", "PROJECTORS_SEARCH_SQLITE_PATH", "PROJECTORS_CAPTURE_STATE_DIR"]
)
def test_a_relative_data_path_is_refused_naming_its_variable(variable: str) -> None:
    with pytest.raises(SettingsError, match=f"{variable}=.*absolute path"):
        load_settings({variable: "data/here"})


def test_an_absolute_or_home_path_is_taken_as_given(tmp_path: Path) -> None:
    settings = load_settings({"PROJECTORS_STACK_DIR": str(tmp_path), "PROJECTORS_SEARCH_SQLITE_PATH": "~/s.db"})
    assert settings.stack.dir == tmp_path
    assert settings.search_sqlite_path == Path.home() / "s.db"


def test_a_reader_never_creates_the_search_database(tmp_path: Path, elsewhere: Path) -> None:
    root = tmp_path / "stack"
    settings = load_settings({"PROJECTORS_STACK_DIR": str(root)})
    client = ReadClient(settings)
    try:
        with pytest.raises(ConfigurationError) as raised:
            client.search("posts", "anything")
    finally:
        client.close()
    message = str(raised.value)
    assert str(root / "search.sqlite3") in message and "PROJECTORS_SEARCH_SQLITE_PATH" in message
    assert not root.exists() and not list(elsewhere.iterdir())  # no folder, no empty database
    # a writer (worker, rebuild) still creates it, and then the reader opens it
    open_raw_store(settings, "search", 0).close()
    reader = open_raw_store(settings, "search", 0, create=False)
    try:
        assert reader.search("posts", "anything", {}, 5) == []  # type: ignore[attr-defined]
    finally:
        reader.close()
