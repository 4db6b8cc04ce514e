"""docs/settings.md, the settings reference, in step with the settings: every setting once, each
with its type, default and a meaning."""

from __future__ import annotations

import re

from projectors import settings_reference
from projectors.settings import known_variables
from tests.conftest import cli


def test_the_reference_is_generated_from_the_settings_and_explains_each() -> None:
    assert not settings_reference.stale(), "docs/settings.md is stale: run `projectors config reference`"
    listed = re.findall(r"^\| `(PROJECTORS_[A-Z0-9_]+)` \|", settings_reference.REFERENCE.read_text(), re.M)
    assert sorted(listed) == sorted(known_variables())
    assert settings_reference.missing_meanings() == []
    for row in settings_reference.REFERENCE.read_text().splitlines():
        if row.startswith("| `PROJECTORS_"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
            assert len(cells) == 4 and all(cells), row


def test_config_reference_check_accepts_the_committed_file() -> None:
    assert cli("config", "reference", "--check").returncode == 0
