"""The `projectors` command. Thin: parse, load settings once, call into the parts, print."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from projectors.bench.config import PHASES as BENCH_PHASES
from projectors.errors import ConfigurationError, DataLossRisk, unanswered
from projectors.operations.pause import PauseTimeout
from projectors.operations.report import Progress, Reporter
from projectors.projections import DESCRIPTORS
from projectors.settings import KAFKA_LOGGER, Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from projectors.operations.verify import Drift

EXIT_CONFIG = 2
EXIT_DATA_LOSS_RISK = 3
EXIT_BROKEN_PIPE = 128 + 13  # as a shell reports a process ended by SIGPIPE
EXIT_UNAVAILABLE = 69  # sysexits' EX_UNAVAILABLE: a store, the source or the broker did not answer
EXIT_NOT_PAUSED = 4  # pause, replay, rebuild: the consumer group still had members at the bound


def _stack(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.stack import local

    names = args.only.split(",") if getattr(args, "only", None) else list(local.ORDER)
    if args.action == "up":
        print(f"starting the local stack in {settings.stack.dir.absolute()}")
        started = time.monotonic()
        local.up(settings, names)
        print(f"stack up in {time.monotonic() - started:.1f}s; logs in {settings.stack.dir.absolute() / 'logs'}")
    elif args.action == "down":
        local.down(settings, names)
    else:
        rows = local.status(settings)
        if args.json:
            print(
                json.dumps(
                    [{"name": r.name, "up": r.up, "address": r.address, "pid": r.pid, "log": str(r.log)} for r in rows],
                    indent=2,
                )
            )
        else:
            for line in local.status_lines(rows):
                print(line)
        return 0 if all(r.up for r in rows) else 1
    return 0


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.db.migrate import migrate

    if args.action == "roles":
        from projectors.db.roles import apply_roles

        def secret(path: Path | None) -> str:
            return path.read_text().strip() if path else ""

        capture, reader = args.capture_role, args.reader_role
        apply_roles(settings.pg, settings.capture.publication, settings.capture.table_list,
                    secret(args.capture_password_file), secret(args.reader_password_file), capture, reader)
        print(f"roles {capture} (replication, reads the publication) and {reader} (reads the tables) are set")
        return 0
    report = migrate(settings.pg, settings.capture.publication, settings.capture.table_list)
    if report.created_database:
        print(f"created database {settings.pg.database}")
    print(f"applied {len(report.applied)} migration(s){': ' + ', '.join(report.applied) if report.applied else ''}")
    print(f"publication {settings.capture.publication}: {', '.join(report.publication_tables)}")
    return 0


def _capture(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.capture.runner import reset_capture, supervise_capture

    if args.reset:
        for line in reset_capture(settings) or ["nothing to reset"]:
            print(line)
        return 0
    supervise_capture(settings)
    return 0


def _connector(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.capture.connector import connect_file_path, render_connect_file

    text = render_connect_file(settings.capture)
    path = connect_file_path()
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(
                f"{path} differs from the rendered connector config: run `projectors connector render`", file=sys.stderr
            )
            return 1
        print(f"{path} is up to date")
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0


def _schemas(args: argparse.Namespace, settings: Settings) -> int:
    from projectors import schemas

    root = Path(args.dir) if args.dir else schemas.SCHEMAS_DIR
    if args.action == "check":
        stale = schemas.drift(root)
        for name in stale:
            print(f"{root / name} differs from the models: run `projectors schemas write`", file=sys.stderr)
        return 1 if stale else 0
    for name in schemas.write(root) or ["(all up to date)"]:
        print(f"wrote {root / name}" if not name.startswith("(") else name)
    return 0


def _sample(args: argparse.Namespace, settings: Settings) -> int:
    import random

    from projectors.db.migrate import connect
    from projectors.workload import SocialWorkload

    with connect(settings.pg) as conn:
        load = SocialWorkload(conn, rng=random.Random(args.seed))
        load.seed(users=args.users, posts=args.users, follows=args.users * 3)
        done = load.run(args.operations)
    print("wrote sample activity: " + ", ".join(f"{k} {v}" for k, v in sorted(done.items())))
    return 0


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.capture.topics import summarize_topics

    summarize_topics(settings, max_events=args.show, timeout_s=args.timeout, out=print)
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.stack import local

    print("== 1. local stack: PostgreSQL, broker, FalkorDB, one Cosmos REST server per Cosmos projection, capture, "
          f"a worker per projection ({len(DESCRIPTORS)})")
    started = time.monotonic()
    local.up(settings)
    print(f"   stack up in {time.monotonic() - started:.1f}s")
    print("== 2. sample social activity into PostgreSQL")
    args.seed, args.users, args.operations = None, 30, 400
    _sample(args, settings)
    print("== 3. change events on the topics")
    args.show, args.timeout = 6, 60.0
    _topics(args, settings)
    print("== 4. the projections, verified against PostgreSQL")
    args.projection, args.wait, args.json, args.repair = [], 180.0, False, False
    args.sample = args.seed = None
    args.full = False
    status = _verify(args, settings)
    print("== 5. what read services see")
    _show_reads(settings)
    print("\nThe stack is still running: `projectors stack status`, `projectors stack down`.")
    return status


def _show_reads(settings: Settings) -> None:
    from projectors.read.showcase import showcase

    for line in showcase(settings):
        print(line)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    if args.no_control:
        from projectors.runtime.worker import run_worker

        run_worker(settings, args.projection, loglevel="debug" if args.verbose else "info", client_id=args.client_id)
        return 0
    from projectors.runtime.supervisor import supervise

    return supervise(settings, args.projection, verbose=args.verbose)


def _pause(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.operations.pause import pause, resume

    if args.command == "pause":
        pause(settings, args.projection, args.timeout, print)
    else:
        resume(settings, args.projection, print)
    return 0


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.operations.verify import RECHECK_PAUSE_S, Sample, describe_diff, verify_until_clean
    from projectors.projections import PROJECTIONS
    from projectors.runtime.store_factory import open_raw_store

    names = args.projection or list(PROJECTIONS)
    sample = None
    if args.sample is not None:
        seed = args.seed if args.seed is not None else secrets.randbelow(1_000_000)
        sample = Sample(args.sample, seed)
    elif args.seed is not None:
        raise ConfigurationError("--seed chooses the keys of a --sample")

    last_shown = [0.0]
    deadline = time.monotonic() + args.wait

    def show(results: list[Drift]) -> None:
        clean = all(r.total == 0 for r in results)
        if args.json or (not clean and time.monotonic() - last_shown[0] < 15.0):
            return  # while waiting, one progress report every 15 s
        last_shown[0] = time.monotonic()
        for r in results:
            state = "ok" if r.total == 0 else f"DRIFT missing={r.missing} extra={r.extra} wrong={r.wrong}"
            print(f"  {r.projection:<{NAME_WIDTH}} checked {r.checked:>7}  held {r.held:>7}  {state}")
        left = deadline - time.monotonic()
        if not clean and left > 0:
            print(f"verify: changes may still be on their way through the pipeline: re-checking the drifted "
                  f"item(s) every {RECHECK_PAUSE_S:.0f}s until clean, for up to {left:.0f}s more")

    def waiting(line: str) -> None:
        if not args.json:
            print(f"verify: {line}")

    try:
        results = verify_until_clean(
            settings, names, open_raw_store, wait_s=args.wait, on_attempt=show, sample=sample, on_wait=waiting,
            incremental=sample is None and not args.full, record=sample is None,
        )
    except (ConfigurationError, DataLossRisk, BrokenPipeError):
        raise
    except Exception as exc:  # a store or the source that does not answer: not drift, no verdict
        reason = str(exc).splitlines()[0] if str(exc) else ""
        print(f"verify: could not check ({type(exc).__name__}: {reason[:300]})", file=sys.stderr)
        return EXIT_COULD_NOT_CHECK
    if args.repair and any(r.total for r in results):
        return _repair(settings, [r for r in results if r.total], args.json)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for r in results:
            for item in r.samples:
                differs = f"  {describe_diff(item['differs'])}" if "differs" in item else ""
                print(f"  {r.projection}: {item['kind']:<7} {item['collection']}/{item['id']}{differs}")
        for line in verify_notes(results):
            print(line)
    drift = sum(r.total for r in results)
    if not args.json:  # with --json, stdout is the JSON alone
        print("verify: zero drift" if drift == 0 else f"verify: {drift} drifted item(s)")
    return 0 if drift == 0 else 1


def verify_notes(results: list[Drift]) -> list[str]:
    """What each verdict rests on: the pipeline wait, the store items read, the budget, the sample."""
    lines = []
    for r in results:
        if r.mode == "incremental" and r.checkpoint is not None:
            c = r.checkpoint
            lines.append(
                f"  {r.projection:<{NAME_WIDTH}} incremental since the clean verify of {c.as_dict()['at']} "
                f"({c.age_s():.0f}s ago, generation {c.generation}): {r.events} event(s) read, "
                + (f"{r.store_changes} item(s) in the store's change feed, " if r.store_changes else "")
                + f"{r.checked} key(s) checked"
            )
        elif r.full_because is not None:
            lines.append(f"  {r.projection:<{NAME_WIDTH}} full check ({r.full_because})")
        if r.pipeline is not None:
            p = r.pipeline
            state = "caught up" if p.caught_up else f"NOT caught up (lag {p.lag}, capture {p.capture})"
            lines.append(
                f"  {r.projection:<{NAME_WIDTH}} pipeline {state} in {p.waited_s:.0f}s (start LSN {p.start_lsn})"
            )
        budget = f", {r.budget_wait_s:.0f}s of it pacing to the read budget" if r.budget_wait_s >= 0.5 else ""
        lines.append(
            f"  {r.projection:<{NAME_WIDTH}} read {r.items_read} store item(s): {r.full_reads} whole-store read(s), "
            f"{r.attempts} attempt(s){budget}" + (f", {r.request_units:,.0f} RU" if r.request_units else "")
            + (f", {r.digests_read} range digest(s) computed by the store" if r.digests_read else "")
        )
        if r.sample is not None:
            lines.append(
                f"  {r.projection:<{NAME_WIDTH}} sample {r.sample.fraction:.4g} seed {r.sample.seed}: {r.checked} of "
                f"{r.spec_items} spec items checked"
            )
    if any(r.sample is not None for r in results):
        lines.append(
            "  a sample compares only spec keys: items the store holds and the spec has not (extra) are not "
            "detected, and a clean sample bounds the drift rate only statistically (no drift in n sampled "
            "items: under 3/n at 95% confidence); run without --sample for a full check"
        )
    if any(r.mode == "incremental" for r in results):
        lines.append(
            "  an incremental verify checks only the items events touched since the last clean verify: an "
            "item changed or deleted directly in the store, with no event, is not seen; --full checks all"
        )
    return lines


def _repair(settings: Settings, drifted: list[Drift], as_json: bool) -> int:
    """Rewrite the keys the verify found drifted, then check exactly those keys again."""
    from projectors.operations.repair import repair_drifted

    reports = repair_drifted(settings, drifted)
    if as_json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    for r in reports if not as_json else []:
        d = r.as_dict()
        print(
            f"  {d['projection']:<{NAME_WIDTH}} repaired {d['drifted']} drifted item(s): {d['rewritten']} rewritten, "
            f"{d['removed']} removed, {d['changed']} changed; drift after repair: {d['driftAfter']}"
        )
    return 0 if all(r.clean for r in reports) else 1


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.operations.status import gather, render
    from projectors.stack.local import LocalDeployment

    rows = gather(settings, args.projection or None, LocalDeployment(settings))
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print("\n".join(render(rows)))
    return 0 if all(r.store_up for r in rows) else 1


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
    from projectors.operations.report import Lines

    return TerminalProgress() if sys.stdout.isatty() else Lines(print)


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.operations.replay import replay

    progress = replay(
        settings, args.projection, args.start, force=args.force, wait_s=args.wait, report=terminal(),
        pause_timeout_s=args.pause_timeout,
    )
    return 0 if progress.done >= progress.total or args.wait == 0 else 1


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.errors import RebuildAbandoned
    from projectors.operations.rebuild import rebuild
    from projectors.operations.report import Silent

    try:
        report = rebuild(
            settings, args.projection, force=args.force, verify_wait_s=args.verify_wait,
            report=Silent() if args.json else terminal(),
            from_topics=args.from_topics, pause_timeout_s=args.pause_timeout,
        )
    except RebuildAbandoned as exc:
        print(f"projectors: rebuild abandoned: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    return 0


def choices(flag: str, value: str | None, known: Sequence[str]) -> tuple[str, ...] | None:
    """A comma-separated ``--flag`` value, each part one of ``known`` (None: not given)."""
    if value is None:
        return None
    chosen = tuple(p.strip() for p in value.split(",") if p.strip())
    unknown = [p for p in chosen if p not in known]
    if unknown or not chosen:
        raise ConfigurationError(f"{flag}: unknown {', '.join(unknown) or '(none given)'} (known: {', '.join(known)})")
    return chosen


def _bench_feed(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.bench import feed

    scenarios = choices("--scenarios", args.scenarios, feed.SCENARIOS) or feed.SCENARIOS
    config = feed.TINY if args.tiny else feed.FeedBenchConfig()
    if args.before:
        feed.run(config, args.out / "before", before=args.before, scenarios=scenarios)
    feed.run(config, args.out, scenarios=scenarios)
    return 0


def _bench_reads(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    from projectors.bench import reads

    config = reads.TINY if args.tiny else reads.ReadsBenchConfig()
    measured = choices("--calls", args.calls, reads.CALLS)
    reads.run(dataclasses.replace(config, measured=measured) if measured else config, args.out)
    return 0


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    from projectors.bench.harness import PHASES, TINY, BenchConfig, run

    config = TINY if args.tiny else BenchConfig()
    overrides: dict[str, Any] = {k: v for k, v in (("events", args.events), ("rebuild_events", args.rebuild_events),
                                   ("users", args.users), ("run_limit_s", args.run_limit),
                                   ("phases", choices("--phases", args.phases, PHASES)),
                                   ("projections", choices("--projections", args.projections, PROJECTION_NAMES)))
                                 if v is not None}
    users = overrides.get("users", config.users)
    if users < 2:
        raise ConfigurationError(f"--users: at least 2, not {users}")
    if config.celebrity_followers > users // 2:  # a small population: its celebrities scale with it
        overrides["celebrity_followers"] = users // 2
        print(f"bench: the {config.celebrities} celebrities get {users // 2} followers each (half of --users {users})")
    if "projections" in overrides:  # the rebuild phase builds the same ones
        overrides["rebuild_projections"] = tuple(p for p in config.rebuild_projections if p in overrides["projections"])
    run(dataclasses.replace(config, **overrides), args.out)
    return 0


def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.errors import RetriableError

    try:
        return _dlq_action(args, settings)
    except RetriableError as exc:  # the dead-letter topics were not read to their end in time
        print(f"projectors: dlq {args.action}: {exc}", file=sys.stderr)
        return 1


def _dlq_action(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.operations import dlq

    if args.action == "list":
        found = dlq.letters(settings, args.projection)
        for letter in found:
            print(letter.summary())
        print(f"{len(found)} dead letter(s) (one per origin; {sum(x.times for x in found)} written), "
              f"{sum(not x.redriven for x in found)} not redriven")
        return 0
    if args.action == "show":
        if not args.ids:
            raise ConfigurationError("dlq show needs a dead letter id (see `projectors dlq list`)")
        for letter in dlq.choose(settings, args.ids):
            print(dlq.as_json(letter))
        return 0
    if args.all:
        chosen = [x for x in dlq.letters(settings, args.projection) if not x.redriven]
    elif args.ids:
        chosen = dlq.choose(settings, args.ids)  # two ids of one origin: redriven once
    else:
        raise ConfigurationError("dlq redrive needs --all or dead letter ids")
    override = Path(args.value_file).read_bytes() if args.value_file else None
    if override is not None and len(chosen) != 1:
        raise ConfigurationError("--value-file corrects one dead letter: give exactly one id")
    results = dlq.redrive(settings, chosen, override)
    for letter_id, result in results.items():
        print(f"{letter_id}: {result}")
    return 0 if all(r == "applied" for r in results.values()) else 1


def _config(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.settings import SECTIONS

    if args.action == "reference":
        from projectors import settings_reference

        if args.check:
            if settings_reference.stale():
                print(f"{settings_reference.REFERENCE} is stale: run `projectors config reference`", file=sys.stderr)
                return 1
            print(f"{settings_reference.REFERENCE} is up to date")
            return 0
        print(f"wrote {settings_reference.write()}")
        return 0
    for name, cls in SECTIONS.items():
        section = getattr(settings, name)
        for field in cls.model_fields:
            value = getattr(section, field)
            shown = "**********" if hasattr(value, "get_secret_value") else value
            print(f"{cls.env_name(field)}={shown}")
    if args.no_connector:
        return 0
    from projectors.capture.connector import DEBEZIUM_VERSION, describe_errors, validation_errors
    from projectors.capture.runner import effective_properties

    errors = validation_errors(effective_properties(settings))
    # the connection test is reported on database.hostname: PostgreSQL may just not be up yet
    unreachable = errors.pop("database.hostname", None)
    if unreachable:
        print(f"projectors: note: the connector could not reach PostgreSQL ({'; '.join(unreachable)})", file=sys.stderr)
    if errors:
        print(f"projectors: the Debezium {DEBEZIUM_VERSION} connector rejects its settings:\n{describe_errors(errors)}",
              file=sys.stderr)
        return 2
    print(f"# the Debezium {DEBEZIUM_VERSION} PostgreSQL connector accepts its properties")
    return 0


PROJECTION_NAMES = tuple(DESCRIPTORS)
NAME_WIDTH = max(map(len, PROJECTION_NAMES))  # projection names in a column
EXIT_COULD_NOT_CHECK = 3  # verify: exit 0 zero drift, 1 drift, 2 a bad setting, 3 a store or the source did not answer


def projection_name(value: str) -> str:
    """argparse type (``choices`` with ``nargs="*"`` rejects an empty list on Python 3.11)."""
    if value not in PROJECTION_NAMES:
        raise argparse.ArgumentTypeError(f"unknown projection {value!r} (choose from {', '.join(PROJECTION_NAMES)})")
    return value


def sample_fraction(value: str) -> float:
    from projectors.operations.verify import parse_fraction

    try:
        return parse_fraction(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="projectors", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="the local stack: up | down | status")
    stack.add_argument("action", choices=("up", "down", "status"))
    stack.add_argument("--only", help="comma-separated parts (postgres,broker,falkordb,cosmos,cosmos-counters,...)")
    stack.add_argument("--json", action="store_true", help="status as JSON")
    stack.set_defaults(func=_stack)

    db = sub.add_parser("db", help="source database: migrate | roles (least-privilege roles, as the owner)")
    db.add_argument("action", choices=("migrate", "roles"))
    db.add_argument("--capture-role", default="projectors_capture")
    db.add_argument("--reader-role", default="projectors_reader")
    db.add_argument("--capture-password-file", type=Path, help="roles: the capture role's password")
    db.add_argument("--reader-password-file", type=Path, help="roles: the reader role's password")
    db.set_defaults(func=_db)

    capture = sub.add_parser("capture", help="run the embedded Debezium engine, publishing to Kafka")
    capture.add_argument(
        "--reset", action="store_true", help="forget offsets and drop the slot: the next start takes a new snapshot"
    )
    capture.set_defaults(func=_capture)

    connector = sub.add_parser("connector", help="render debezium/connector.json for Kafka Connect")
    connector.add_argument("action", choices=("render",))
    connector.add_argument("--check", action="store_true", help="fail if the file differs from the rendering")
    connector.set_defaults(func=_connector)

    schemas_cmd = sub.add_parser("schemas", help="JSON Schema of events and projection documents (schemas/)")
    schemas_cmd.add_argument("action", choices=("write", "check"))
    schemas_cmd.add_argument("--dir", default=None, help="default: the repository's schemas/")
    schemas_cmd.set_defaults(func=_schemas)

    sample = sub.add_parser(
        "sample", help="write sample social activity into PostgreSQL",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Seed USERS users, as many posts and 3 follows per user (a few popular users get most "
        "follows, a power law), then OPERATIONS random operations of the app (posts, edits, replies, reactions, "
        "follows, blocks, ...). Fan-out grows faster than the numbers: a post is written to its author's feed and "
        "to every follower's, half the posts are by the most followed users, and their follower counts grow with "
        "USERS, so doubling --users about quadruples the feed items (until an author passes "
        "PROJECTORS_FEED_CELEBRITY_FOLLOWERS followers: such posts are stored once).",
    )
    sample.add_argument("--users", type=int, default=30, help="users in the seed (posts: as many; follows: 3 per user)")
    sample.add_argument("--operations", type=int, default=400, help="random operations after the seed")
    sample.add_argument("--seed", type=int, default=None, help="random seed (default: %(default)s, a new one each run)")
    sample.set_defaults(func=_sample)

    topics = sub.add_parser("topics", help="show the change events on the capture topics")
    topics.add_argument(
        "--show", type=int, default=5,
        help="events to show, the first of each topic and operation, one line each (operation, table, key, LSN)",
    )
    topics.add_argument("--timeout", type=float, default=30.0)
    topics.set_defaults(func=_topics)

    demo = sub.add_parser("demo", help="the main job on the local stack")
    demo.set_defaults(func=_demo)

    worker = sub.add_parser("worker", help="run a faust worker for one projection")
    worker.add_argument("projection", choices=PROJECTION_NAMES)
    # the faust worker itself, as the process following the control topic runs it
    worker.add_argument("--no-control", action="store_true", help=argparse.SUPPRESS)
    worker.add_argument("--client-id", default=None, help=argparse.SUPPRESS)
    worker.set_defaults(func=_worker)

    for verb, text in (("pause", "pause a projection's workers through the control topic (wherever they run) "
                        "and wait until its consumer group is empty"),
                       ("resume", "let a paused projection's workers consume again")):
        control = sub.add_parser(verb, help=text)
        control.add_argument("projection", choices=PROJECTION_NAMES)
        if verb == "pause":
            control.add_argument("--timeout", type=float, default=60.0,
                                 help="wait up to N seconds for the group to be empty (default %(default)s)")
        control.set_defaults(func=_pause)

    verify = sub.add_parser("verify", help="compare projections with the spec computed from PostgreSQL")
    verify.add_argument("projection", nargs="*", type=projection_name, help="default: all")
    verify.add_argument(
        "--wait", type=float, default=0.0,
        help="first wait up to N seconds for the pipeline to apply what PostgreSQL holds now, then re-check "
        "the drifted keys until clean or the time is up",
    )
    verify.add_argument(
        "--sample", type=sample_fraction, default=None, metavar="SHARE",
        help="check a seeded random share of the spec's keys (1%% or 0.01) by point reads",
    )
    verify.add_argument("--seed", type=int, default=None, help="the sample's seed (default: a new one, printed)")
    verify.add_argument("--json", action="store_true")
    verify.add_argument("--repair", action="store_true", help="rewrite exactly the drifted items from the spec")
    verify.add_argument(
        "--full", action="store_true",
        help="check every item (default: only what events touched since the last clean verify, when there was one)",
    )
    verify.set_defaults(func=_verify)

    status_cmd = sub.add_parser("status", help="per projection and partition: offsets, lag, rate, store, DLQ")
    status_cmd.add_argument("projection", nargs="*", type=projection_name, help="default: all")
    status_cmd.add_argument("--json", action="store_true")
    status_cmd.set_defaults(func=_status)

    replay_cmd = sub.add_parser("replay", help="reprocess a projection from a point in its topics")
    replay_cmd.add_argument("projection", choices=PROJECTION_NAMES)
    replay_cmd.add_argument(
        "--from", dest="start", default="earliest", help="earliest | ISO time | topic:partition:offset,..."
    )
    replay_cmd.add_argument("--force", action="store_true",
                            help="pause the workers through the control topic, reset, resume them")
    replay_cmd.add_argument("--pause-timeout", type=float, default=60.0,
                            help="wait up to N seconds for the paused group to be empty")
    replay_cmd.add_argument("--wait", type=float, default=600.0, help="follow the progress for up to N seconds")
    replay_cmd.set_defaults(func=_replay)

    rebuild_cmd = sub.add_parser(
        "rebuild", help="build a projection's store afresh next to the live one, verify it, swap it in atomically"
    )
    rebuild_cmd.add_argument("projection", choices=PROJECTION_NAMES)
    rebuild_cmd.add_argument(
        "--force", action="store_true", help="pause the workers of the projection for the swap (seconds), "
        "through the control topic"
    )
    rebuild_cmd.add_argument("--pause-timeout", type=float, default=60.0,
                             help="wait up to N seconds for the paused group to be empty")
    rebuild_cmd.add_argument(
        "--verify-wait", type=float, default=120.0, help="keep catching up and verifying for up to N seconds"
    )
    rebuild_cmd.add_argument(
        "--from-topics", action="store_true",
        help="fill the new store by replaying the topics from the beginning (default: from the source's state, "
        "then catch up from the topics)",
    )
    rebuild_cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    rebuild_cmd.set_defaults(func=_rebuild)

    bench = sub.add_parser(
        "bench", help="benchmarks and fault drills on a private local stack: results.md, results.json, results.png"
    )
    bench.add_argument("--tiny", action="store_true", help="a tiny input (a smoke run of the harness)")
    bench.add_argument("--events", type=int, help="change events after the seed (default 200000)")
    bench.add_argument("--rebuild-events", type=int, help="events in the topics for the rebuild (default 1000000)")
    bench.add_argument("--users", type=int, help="users in the seed (default 20000)")
    bench.add_argument("--run-limit", type=float, help="seconds a throughput run may take (default 180)")
    bench.add_argument("--out", type=Path, default=Path("bench-results"), help="where the reports go")
    bench.add_argument("--phases", help="comma-separated parts to run (default: all of "
                       f"{','.join(BENCH_PHASES)}; the load always runs)")
    bench.add_argument("--projections", help="comma-separated projections whose throughput and rebuild are "
                       "measured (default: all four; the scale phase measures graph and search among them)")
    bench.set_defaults(func=_bench)

    bench_feed = sub.add_parser(
        "bench-feed", help="the feed and counters at a realistic scale on a private local stack: feed-results.md"
    )
    bench_feed.add_argument("--tiny", action="store_true", help="a tiny input (a smoke run)")
    bench_feed.add_argument("--before", help="also run every scenario with the workers of this git revision")
    bench_feed.add_argument("--scenarios", help="comma-separated scenarios (default: all of "
                            "random,fanout,follow,requests,drill)")
    bench_feed.add_argument("--out", type=Path, default=Path("bench-results"), help="where the reports go")
    bench_feed.set_defaults(func=_bench_feed)

    bench_reads = sub.add_parser(
        "bench-reads", help="each ReadClient call's p50/p99 and Cosmos requests at two store sizes and under "
        "writes, on a private local stack: reads-results.md"
    )
    bench_reads.add_argument("--tiny", action="store_true", help="a tiny input (a smoke run)")
    bench_reads.add_argument("--out", type=Path, default=Path("bench-results"), help="where the reports go")
    bench_reads.add_argument("--calls", help="comma-separated calls to measure (default: all); only the workers "
                             "of their projections run")
    bench_reads.set_defaults(func=_bench_reads)

    dlq_cmd = sub.add_parser("dlq", help="dead letters: list | show <id> | redrive [--all | <id>...]")
    dlq_cmd.add_argument("action", choices=("list", "show", "redrive"))
    dlq_cmd.add_argument("ids", nargs="*", help="dead letter ids: <projection>:<partition>:<offset>")
    dlq_cmd.add_argument("--projection", choices=PROJECTION_NAMES)
    dlq_cmd.add_argument("--all", action="store_true", help="redrive every dead letter not redriven yet")
    dlq_cmd.add_argument("--value-file", help="redrive one letter with this corrected value (JSON file)")
    dlq_cmd.set_defaults(func=_dlq)

    config = sub.add_parser("config", help="print the effective settings (secrets masked) and validate the "
                            "capture connector's properties with Debezium's own validation")
    config.add_argument("action", choices=("check", "reference"),
                        help="check: validate; reference: write docs/settings.md (--check: fail if stale)")
    config.add_argument("--check", action="store_true", help="reference: fail if docs/settings.md is stale")
    config.add_argument("--no-connector", action="store_true",
                        help="skip the connector validation (it starts a JVM: a few seconds)")
    config.set_defaults(func=_config)
    return parser


def quiet_libraries() -> None:
    """The azure SDK logs every HTTP request and its headers at INFO: far too much, and slow.
    librdkafka's notices (a broker connection closed, a queue purged on close) are no news either."""
    for name in ("azure", "azure.core.pipeline.policies.http_logging_policy", "urllib3", "neo4j", KAFKA_LOGGER):
        logging.getLogger(name).setLevel(logging.WARNING)
    # its background health check logs a traceback when it runs after its client closed
    logging.getLogger("azure.cosmos._GlobalEndpointManager").setLevel(logging.CRITICAL)


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """The entry point of every command. A reader that goes away (``projectors status | head -3``)
    ends the command quietly, with the exit status of a process ended by SIGPIPE."""
    try:
        code = run(argv)
        sys.stdout.flush()  # here, not at interpreter exit, where a closed pipe is reported
        return code
    except BrokenPipeError:
        # what is still buffered for stdout cannot be written: point stdout at /dev/null so that the
        # interpreter's last flush has nowhere to fail
        with contextlib.suppress(OSError, ValueError):  # a stdout without a file descriptor
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return EXIT_BROKEN_PIPE


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    quiet_libraries()
    # SIGTERM ends a command the way Ctrl-C does: its cleanup runs (a bench stops the stack it
    # started). The worker installs faust's own handlers over this one.
    signal.signal(signal.SIGTERM, _terminated)
    handler: Callable[[argparse.Namespace, Settings], int] = args.func
    try:
        settings = load_settings()
        return handler(args, settings)
    except (SettingsError, ConfigurationError) as exc:
        print(f"projectors: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except DataLossRisk as exc:
        print(f"projectors: refusing to continue: {exc}", file=sys.stderr)
        return EXIT_DATA_LOSS_RISK
    except PauseTimeout as exc:
        print(f"projectors: not paused: {exc}", file=sys.stderr)
        return EXIT_NOT_PAUSED
    except Exception as exc:
        if isinstance(exc, BrokenPipeError) or not unanswered(exc):  # a reader gone away: main's
            raise
        print(f"projectors: error: {did_not_answer(exc)}", file=sys.stderr)
        return EXIT_UNAVAILABLE


def did_not_answer(exc: BaseException) -> str:
    """One line for a store, the source or the broker that did not answer: the error's own first
    line (it names the projection or the address), and its cause's when that says more."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    cause = exc.__cause__
    if cause is not None and str(cause).strip() and str(cause).strip().splitlines()[0] not in first:
        first += f" ({type(cause).__name__}: {str(cause).strip().splitlines()[0]})"
    if "did not answer" not in first and "does not answer" not in first:
        first = f"a store, the source or the broker did not answer: {first}"
    return first[:600]


if __name__ == "__main__":
    sys.exit(main())
