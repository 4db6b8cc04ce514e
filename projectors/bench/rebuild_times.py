"""Rebuild: a rebuild's build phase three ways: the store's bulk load of items already read, the
build from the source's state, the replay of the topics."""

from __future__ import annotations

import time

import psycopg

from projectors.bench.baselines import bare_consume
from projectors.bench.config import BenchConfig, Say
from projectors.bench.private_stack import fresh_store
from projectors.bench.render import shown
from projectors.bench.report import BuildFigures, RebuildRun, Results, TopicReplay
from projectors.operations.load import bulk_write, load_from_state, spec_items
from projectors.operations.rebuild import Catchup
from projectors.projections import descriptor
from projectors.projections import projection as get_projection
from projectors.settings import Settings


def rebuild_times(settings: Settings, config: BenchConfig, results: Results, say: Say) -> None:
    connect = lambda: psycopg.connect(settings.pg.conninfo(), autocommit=True)  # noqa: E731
    for name in config.rebuild_projections:
        projection = get_projection(name, settings)
        # the baseline: the store's own bulk path writing the same items, read beforehand. Each is
        # run twice, in the order baseline, state, state, baseline (a shared machine drifts), and
        # the faster run of each is kept
        items = list(spec_items(projection, connect))
        bulk_runs, state_runs = [], []
        for order in ("bulk", "state", "state", "bulk"):
            with fresh_store(settings, name) as store:
                if order == "bulk":
                    bulk_runs.append(bulk_write(store, items, 1))
                else:
                    state_runs.append(load_from_state(projection, store, connect))
        bulk_load = min(bulk_runs, key=lambda r: r.seconds)
        from_state = min(state_runs, key=lambda r: r.seconds)
        row = RebuildRun(
            items=len(items),
            bulk_load=BuildFigures.of(bulk_load),
            bulk_load_runs_s=[round(r.seconds, 1) for r in bulk_runs],
            from_state_runs_s=[round(r.seconds, 1) for r in state_runs],
            from_state=BuildFigures.of(from_state),
            ratio_state_vs_bulk=from_state.items_per_s / bulk_load.items_per_s if bulk_load.items_per_s else None,
        )
        del items
        say(f"== rebuild {name} from state: {from_state.items:,} items in {from_state.seconds:.1f}s "
            f"({from_state.items_per_s:,.0f} items/s; the store's bulk load alone {bulk_load.items_per_s:,.0f}/s, "
            f"ratio {shown(row.ratio_state_vs_bulk, 2)})")
        if name in config.rebuild_from_topics:
            expected = bare_consume(settings, descriptor(name).topics(settings), 10**12, idle_s=2.0).events
            with fresh_store(settings, name) as store:
                catchup = Catchup(settings, name, store, 80)
                started = time.monotonic()
                idle_since: float | None = None
                try:
                    while catchup.events < expected and time.monotonic() - started < config.run_limit_s * 5:
                        if catchup.step():
                            idle_since = None
                        elif (idle_since := idle_since or time.monotonic()) and time.monotonic() - idle_since > 5:
                            break
                    seconds = time.monotonic() - started
                finally:
                    catchup.close()
            rate = catchup.events / seconds
            row.from_topics = TopicReplay(events=catchup.events, seconds=seconds, events_per_s=rate)
            row.ratio_topics_vs_state_seconds = seconds / from_state.seconds if from_state.seconds else None
            say(f"== rebuild {name} from the topics: {catchup.events:,} events in {seconds:.1f}s "
                f"({catchup.events / seconds:,.0f} events/s)")
        results.rebuild[name] = row
