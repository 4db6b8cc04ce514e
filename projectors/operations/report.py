"""How an operation tells what it does: it emits lines and progress figures to a :class:`Reporter`
and prints nothing itself. The CLI renders them (a bar redrawn in place on a terminal, a line every
few seconds otherwise); a library caller gets nothing unless it passes a reporter."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass
class Progress:
    done: int
    total: int
    rate: float

    def bar(self, width: int = 30) -> str:
        share = 1.0 if self.total == 0 else min(1.0, self.done / self.total)
        eta = "-" if self.rate <= 0 else f"{max(0.0, (self.total - self.done) / self.rate):.0f}s"
        filled = int(share * width)
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} events "
            f"{share:6.1%}  {self.rate:7.1f} ev/s  ETA {eta}"
        )


class Reporter(Protocol):
    def say(self, line: str) -> None:
        """One event worth a line: a step started or ended, a decision, a warning."""
        ...

    def progress(self, progress: Progress, final: bool = False) -> None:
        """Where a long step stands (called about every second); ``final``: its last figure."""
        ...


class Silent:
    def say(self, line: str) -> None:
        pass

    def progress(self, progress: Progress, final: bool = False) -> None:
        pass


class Lines:
    """Each line to ``write``, and progress as a line every ``every_s`` seconds and at the end."""

    def __init__(self, write: Callable[[str], None], every_s: float = 5.0) -> None:
        self.write = write
        self.every_s = every_s
        self._shown = 0.0

    def say(self, line: str) -> None:
        self.write(line)

    def progress(self, progress: Progress, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self._shown >= self.every_s:
            self._shown = now
            self.write(progress.bar())
