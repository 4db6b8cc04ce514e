"""What a bench run measures and how much: the phases and their sizes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from projectors.errors import ConfigurationError

Say = Callable[[str], None]  # where progress lines go

PHASES = ("throughput", "scale", "rebuild", "lag", "fanout", "verify", "drills")


@dataclass(frozen=True)
class BenchConfig:
    users: int = 20_000
    celebrities: int = 2
    celebrity_followers: int = 10_000
    events: int = 200_000  # change events written after the seed, for throughput
    rebuild_events: int = 1_000_000  # topics are topped up to this many events for the rebuild
    rebuild_projections: tuple[str, ...] = ("graph", "search", "feed", "counters")  # built from state
    rebuild_from_topics: tuple[str, ...] = ("graph", "search")  # also replayed from the topics
    run_limit_s: float = 180.0  # a throughput run stops here (the Cosmos REST server is slow)
    lag_rates: tuple[int, ...] = (200, 1000)
    lag_seconds: float = 30.0
    fanout_followers: tuple[int, ...] = (10, 100, 1000, 10_000)
    graph_stop_s: float = 30.0
    poison_events: int = 1000
    drill_rate: float = 10.0  # the feed on the Cosmos REST server (~200 items/s) must keep up
    verify_wait_s: float = 900.0
    verify_grow_events: int = 100_000  # change events written between the verify phase's two store sizes
    verify_touch_events: int = 100  # change events an incremental verify reads
    verify_budget_items_s: float = 2000.0  # the read budget of the verifies beside a worker (second run)
    seed_value: int = 11
    phases: tuple[str, ...] = PHASES  # which parts run (the load always does)
    projections: tuple[str, ...] = ("feed", "counters", "graph", "search")  # whose throughput is measured
    scale_projections: tuple[str, ...] = ("graph", "search")  # thread against child process, one worker against two
    scale_rounds: int = 2  # each shape runs this many times, interleaved

    def sized(self, **overrides: Any) -> tuple[BenchConfig, list[str]]:
        """This config with ``overrides`` (None: keep), kept coherent, and what was adjusted: a
        small population's celebrities get half of its users as followers; the rebuild phase builds
        only the projections measured."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        notes: list[str] = []
        users = changes.get("users", self.users)
        if users < 2:
            raise ConfigurationError(f"--users: at least 2, not {users}")
        if self.celebrity_followers > users // 2:
            changes["celebrity_followers"] = users // 2
            notes.append(
                f"the {self.celebrities} celebrities get {users // 2} followers each (half of --users {users})"
            )
        if "projections" in changes:
            changes["rebuild_projections"] = tuple(p for p in self.rebuild_projections if p in changes["projections"])
        return dataclasses.replace(self, **changes), notes


TINY = BenchConfig(
    users=150, celebrities=1, celebrity_followers=60, events=800, rebuild_events=0, run_limit_s=20.0,
    lag_rates=(50,), lag_seconds=3.0, fanout_followers=(5, 50), graph_stop_s=3.0, poison_events=20,
    drill_rate=5.0, verify_wait_s=600.0, verify_grow_events=400, verify_touch_events=20,
    scale_projections=("graph",), scale_rounds=1,
)
