"""What several command modules share: projection arguments, comma lists, progress on a terminal."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from projectors.errors import ConfigurationError
from projectors.operations.report import Lines, Progress, Reporter
from projectors.operations.verify import parse_fraction
from projectors.projections import PROJECTION_NAMES

NAME_WIDTH = max(map(len, PROJECTION_NAMES))  # projection names in a column


def projection_name(value: str) -> str:
    """argparse type (``choices`` with ``nargs="*"`` rejects an empty list on Python 3.11)."""
    if value not in PROJECTION_NAMES:
        raise argparse.ArgumentTypeError(f"unknown projection {value!r} (choose from {', '.join(PROJECTION_NAMES)})")
    return value


def sample_fraction(value: str) -> float:
    try:
        return parse_fraction(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def choices(flag: str, value: str | None, known: Sequence[str]) -> tuple[str, ...] | None:
    """A comma-separated ``--flag`` value, each part one of ``known`` (None: not given)."""
    if value is None:
        return None
    chosen = tuple(p.strip() for p in value.split(",") if p.strip())
    unknown = [p for p in chosen if p not in known]
    if unknown or not chosen:
        raise ConfigurationError(f"{flag}: unknown {', '.join(unknown) or '(none given)'} (known: {', '.join(known)})")
    return chosen


class TerminalProgress:
    """Progress as a bar redrawn in place (at most twice a second), lines as they come."""

    def __init__(self) -> None:
        self._drawn = 0.0

    def say(self, line: str) -> None:
        print(line)

    def progress(self, progress: Progress, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self._drawn >= 0.5:
            self._drawn = now
            sys.stdout.write("\r" + progress.bar() + ("\n" if final else ""))
            sys.stdout.flush()


def terminal() -> Reporter:
    """What an operation reports, for a person: a live bar on a terminal, a line every 5 s otherwise."""
    return TerminalProgress() if sys.stdout.isatty() else Lines(print)
