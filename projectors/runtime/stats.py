"""What each worker process publishes about itself: its running totals, as a JSON file per process
under ``<stack dir>/run/stats`` (read by ``projectors status``, the tests and the benchmarks)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from projectors.model import CountsRequests
from projectors.runtime.batch import Projector
from projectors.runtime.observe import pid_alive
from projectors.settings import Settings


def stats_folder(settings: Settings) -> Path:
    return settings.stack.dir.absolute() / "run" / "stats"


def stats_path(settings: Settings, name: str) -> Path:
    """Each worker process publishes its running totals here (status, tests, benchmarks)."""
    return stats_folder(settings) / f"{name}-{os.getpid()}.json"


def request_counts(store: object) -> Callable[[], Mapping[str, float]] | None:
    """What reads ``store``'s requests by kind so far (stores that count them: Cosmos), else None."""
    return store.requests.snapshot if isinstance(store, CountsRequests) else None


def store_requests(projector: Projector) -> dict[str, float]:
    """The store's requests by kind so far (stores that count them: Cosmos), else nothing."""
    counts = request_counts(projector.store)
    return dict(counts()) if counts is not None else {}


RATE_WINDOW_S = 60.0  # `projectors status` shows the events/s over the last minute
RATE_STEP_S = 5.0


def add_rate_sample(
    samples: list[tuple[float, int]], at: float, events: int, window_s: float = RATE_WINDOW_S,
    step_s: float = RATE_STEP_S,
) -> None:
    """Record that ``events`` were applied by ``at``, keeping what measures the rate over the last
    ``window_s`` at any later time: samples ``step_s`` apart, the newest always the latest (it
    replaces the one before until that is ``step_s`` past the one before it) and, of the samples
    older than the window, only the newest."""
    if len(samples) >= 2 and samples[-1][0] - samples[-2][0] < step_s:
        samples[-1] = (at, events)
    else:
        samples.append((at, events))
    while len(samples) >= 2 and samples[1][0] <= at - window_s:
        del samples[0]


def recent_rate(samples: list[tuple[float, int]], events: int, now: float, window_s: float = RATE_WINDOW_S) -> float:
    """Events/s over about the last ``window_s`` before ``now``: since the newest sample at least that
    old (or since the first one, for a worker younger than the window). A worker that wrote nothing
    since (idle) had ``events`` then as now."""
    if not samples:
        return 0.0
    base = samples[0]
    for sample in samples:
        if sample[0] > now - window_s:
            break
        base = sample
    return max(0, events - base[1]) / max(1.0, now - base[0])


def write_stats(
    path: Path, projector: Projector, started_at: float = 0.0, recent: list[tuple[float, int]] | None = None
) -> None:
    s = projector.stats
    data = {
        "projection": projector.projection.name,
        "pid": os.getpid(),
        "startedAt": started_at,
        "events": s.events,
        "batches": s.batches,
        "operations": s.operations,
        "changed": s.changed,
        "skippedStale": s.skipped_stale,
        "deadLetters": s.dead_letters,
        "retries": s.retries,
        "lastLsn": s.last_lsn,
        "lastAppliedAt": s.last_applied_at,
        "stageSeconds": s.stage_seconds,
        "cpuSeconds": s.cpu_seconds,
        "storeRequests": store_requests(projector),
        "sourceQueries": projector.source_counts.queries,
        "sourceRows": projector.source_counts.rows,
        # ticket queries repeated because a change's transaction was not visible to snapshots yet
        "sourceVisibilityWaits": projector.source_counts.visibility_waits,
        "recentEvents": [list(sample) for sample in recent or []],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_stats(settings: Settings, name: str) -> list[dict[str, Any]]:
    """Every worker's published totals (``alive``: the process still runs)."""
    folder = stats_folder(settings)
    out = []
    for path in sorted(folder.glob(f"{name}-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        data["alive"] = pid_alive(int(data["pid"]))
        out.append(data)
    return out
