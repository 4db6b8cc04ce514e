"""``projectors bench --before REV``: the same bench with every process it starts (capture, workers,
the bare faust agent) running the code of another commit, so before and after come from one run on
one machine.

The processes run from a checkout of ``REV`` (first on their ``PYTHONPATH``) with that code's own
defaults: of the settings this run passes them, they get only those the other code knows and that
differ from this code's defaults (the stack's ports, folders and the bench's own choices), so a
default changed since (a wait, a batch size) is measured as it was.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from projectors.bench import baselines
from projectors.bench.feed import known_settings, worktree
from projectors.settings import Settings, load_settings, settings_to_env
from projectors.stack import commands


def environment_for(known: frozenset[str], defaults: dict[str, str]) -> Callable[[Settings], dict[str, str]]:
    """A ``settings_to_env`` for processes of other code: ``known`` variables not at this code's default."""

    def to_env(settings: Settings) -> dict[str, str]:
        return {k: v for k, v in settings_to_env(settings).items() if k in known and defaults.get(k) != v}

    return to_env


def this_code_defaults() -> dict[str, str]:
    """This code's default settings as environment variables (the stack folder left out)."""
    defaults = settings_to_env(load_settings({}))
    defaults.pop("PROJECTORS_STACK_DIR", None)
    return defaults


@contextlib.contextmanager
def running(rev: str) -> Iterator[Path]:
    """While open, the processes the bench starts run the code of ``rev`` (a checkout beside this one)."""
    with worktree(rev) as code:
        to_env = environment_for(known_settings(code), this_code_defaults())
        path = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = str(code)
        # the two places that give a started process its settings
        originals: list[tuple[Any, Any]] = [(m, m.settings_to_env) for m in (commands, baselines)]
        for module, _ in originals:
            module.settings_to_env = to_env
        try:
            yield code
        finally:
            for module, original in originals:
                module.settings_to_env = original
            if path is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = path
