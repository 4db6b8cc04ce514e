"""`projectors bench | bench-feed | bench-reads`: benchmarks on a private local stack."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from projectors.bench import feed, reads
from projectors.bench.compare import write_comparison
from projectors.bench.config import PHASES, TINY, BenchConfig
from projectors.bench.harness import run
from projectors.cli.common import choices
from projectors.errors import ConfigurationError
from projectors.exit_codes import ExitCode
from projectors.projections import PROJECTION_NAMES
from projectors.settings import Settings


def add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    bench = sub.add_parser("bench", help=help)
    bench.add_argument("--tiny", action="store_true", help="a tiny input (a smoke run of the harness)")
    bench.add_argument("--events", type=int, help="change events after the seed (default 200000)")
    bench.add_argument("--rebuild-events", type=int, help="events in the topics for the rebuild (default 1000000)")
    bench.add_argument("--users", type=int, help="users in the seed (default 20000)")
    bench.add_argument("--run-limit", type=float, help="seconds a throughput run may take (default 180)")
    bench.add_argument("--out", type=Path, default=Path("bench-results"), help="where the reports go")
    bench.add_argument("--phases", help="comma-separated parts to run (default: all of "
                       f"{','.join(PHASES)}; the load always runs)")
    bench.add_argument("--projections", help="comma-separated projections whose throughput and rebuild are "
                       "measured (default: feed, counters, graph, search; the scale phase measures graph and search "
                       "among them)")
    bench.add_argument("--before", help="first run the same phases with every process the bench starts running "
                       "this git revision (reports in OUT/before, a comparison in OUT/comparison.md)")
    bench.set_defaults(func=bench_command)


def bench_command(args: argparse.Namespace, settings: Settings) -> int:
    config, notes = (TINY if args.tiny else BenchConfig()).sized(
        events=args.events, rebuild_events=args.rebuild_events, users=args.users, run_limit_s=args.run_limit,
        phases=choices("--phases", args.phases, PHASES),
        projections=choices("--projections", args.projections, PROJECTION_NAMES),
    )
    for note in notes:
        print(f"bench: {note}")
    if args.before:
        before = run(config, args.out / "before", before=args.before)
        after = run(config, args.out)
        print(write_comparison(before, after, args.before, args.out))
        return ExitCode.OK
    run(config, args.out)
    return ExitCode.OK


def add_bench_feed(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    bench_feed = sub.add_parser("bench-feed", help=help)
    bench_feed.add_argument("--tiny", action="store_true", help="a tiny input (a smoke run)")
    bench_feed.add_argument("--before", help="also run every scenario with the workers of this git revision")
    bench_feed.add_argument("--scenarios", help="comma-separated scenarios (default: all of "
                            "random,fanout,follow,requests,drill)")
    bench_feed.add_argument("--out", type=Path, default=Path("bench-results"), help="where the reports go")
    bench_feed.set_defaults(func=bench_feed_command)


def bench_feed_command(args: argparse.Namespace, settings: Settings) -> int:
    scenarios = choices("--scenarios", args.scenarios, feed.SCENARIOS) or feed.SCENARIOS
    config = feed.TINY if args.tiny else feed.FeedBenchConfig()
    if args.before:
        feed.run(config, args.out / "before", before=args.before, scenarios=scenarios)
    feed.run(config, args.out, scenarios=scenarios)
    return ExitCode.OK


def add_bench_reads(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    bench_reads = sub.add_parser("bench-reads", help=help)
    bench_reads.add_argument("--tiny", action="store_true", help="a tiny input (a smoke run)")
    bench_reads.add_argument("--out", type=Path, default=Path("bench-results"), help="where the reports go")
    bench_reads.add_argument("--calls", help="comma-separated calls to measure (default: all); only the workers "
                             "of their projections run")
    bench_reads.add_argument("--sizes", help="users of the two store sizes, SMALL,LARGE (default 1000,10000)")
    bench_reads.set_defaults(func=bench_reads_command)


def bench_reads_command(args: argparse.Namespace, settings: Settings) -> int:
    config = reads.TINY if args.tiny else reads.ReadsBenchConfig()
    measured = choices("--calls", args.calls, reads.CALLS)
    if measured:
        config = dataclasses.replace(config, measured=measured)
    if args.sizes is not None:
        config = dataclasses.replace(config, sizes=sizes_of(args.sizes))
    reads.run(config, args.out)
    return ExitCode.OK


def sizes_of(value: str) -> tuple[int, int]:
    """``--sizes SMALL,LARGE``: two user counts, the second larger."""
    try:
        small, large = (int(v) for v in value.split(","))
    except ValueError:
        raise ConfigurationError(f"--sizes: two user counts SMALL,LARGE, not {value!r}") from None
    if not 10 <= small < large:
        raise ConfigurationError(f"--sizes: SMALL at least 10 and below LARGE, not {value!r}")
    return small, large
