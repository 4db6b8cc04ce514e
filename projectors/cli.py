"""The `projectors` command. Thin: parse, load settings once, call into the parts, print."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from projectors.errors import ConfigurationError, DataLossRisk
from projectors.settings import Settings, SettingsError, load_settings

EXIT_CONFIG = 2
EXIT_DATA_LOSS_RISK = 3


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
            for r in rows:
                print(f"  {r.name:<9} {'up  ' if r.up else 'down'} {r.address}  pid={r.pid or '-'}  log={r.log}")
        return 0 if all(r.up for r in rows) else 1
    return 0


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.db.migrate import migrate

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

    print("== 1. local stack: PostgreSQL, broker, FalkorDB, Cosmos REST server, capture, four workers")
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
    status = _verify(args, settings)
    print("== 5. what read services see")
    _show_reads(settings)
    print("\nThe stack is still running: `projectors stack status`, `projectors stack down`.")
    return status


def _show_reads(settings: Settings) -> None:
    from projectors.db.migrate import connect
    from projectors.read.client import ReadClient

    with connect(settings.pg) as conn:
        row = conn.execute(
            "SELECT f.follower_id::text, count(*) FROM follows f GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
        ).fetchone()
        post = conn.execute(
            "SELECT p.id::text, p.author_id::text FROM posts p LEFT JOIN reactions r ON r.post_id = p.id "
            "GROUP BY 1, 2 ORDER BY count(r.*) DESC LIMIT 1"
        ).fetchone()
        word = conn.execute("SELECT split_part(body, ' ', 1) FROM posts LIMIT 1").fetchone()
    reader = ReadClient(settings)
    try:
        if row:
            page = reader.feed_page(row[0], limit=5)
            print(f"-- feed of user {row[0]} (latest {len(page)} of 50-item page):")
            for item in page:
                print(
                    f"   {item['createdAt']}  post {item['postId']} by {item['authorId']}: {item['bodyPreview'][:40]}"
                )
            print(f"-- suggestions for user {row[0]} (friends of friends):")
            for s in reader.suggestions(row[0], limit=5):
                print(f"   {s['handle']} ({s['mutual']} mutual)")
        if post:
            print(f"-- counters: {json.dumps(reader.counters([post[0], post[1]]))}")
        if word:
            hits = reader.search("posts", word[0], {}, limit=3)
            print(f"-- search posts for {word[0]!r}: {len(hits)} hit(s)")
            for hit in hits:
                print(f"   {hit['id']}: {hit['body'][:60]}")
    finally:
        reader.close()


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.runtime.worker import run_worker

    run_worker(settings, args.projection, loglevel="debug" if args.verbose else "info")
    return 0


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.operations.verify import Drift, verify_until_clean
    from projectors.projections import PROJECTIONS
    from projectors.runtime.stores import open_raw_store

    names = args.projection or list(PROJECTIONS)

    last_shown = [0.0]

    def show(results: list[Drift]) -> None:
        clean = all(r.total == 0 for r in results)
        if args.json or (not clean and time.monotonic() - last_shown[0] < 15.0):
            return  # while waiting, one progress report every 15 s
        last_shown[0] = time.monotonic()
        for r in results:
            state = "ok" if r.total == 0 else f"DRIFT missing={r.missing} extra={r.extra} wrong={r.wrong}"
            print(f"  {r.projection:<9} checked {r.checked:>7}  held {r.held:>7}  {state}")

    try:
        results = verify_until_clean(settings, names, open_raw_store, wait_s=args.wait, on_attempt=show)
    except (ConfigurationError, DataLossRisk):
        raise
    except Exception as exc:  # a store or the source that does not answer: not drift, no verdict
        reason = str(exc).splitlines()[0] if str(exc) else ""
        print(f"verify: could not check ({type(exc).__name__}: {reason[:300]})", file=sys.stderr)
        return EXIT_COULD_NOT_CHECK
    if args.repair and any(r.total for r in results):
        return _repair(settings, [r.projection for r in results if r.total], args.json)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for r in results:
            for item in r.samples:
                print(f"  {r.projection}: {item['kind']:<7} {item['collection']}/{item['id']}")
    drift = sum(r.total for r in results)
    if not args.json:  # with --json, stdout is the JSON alone
        print("verify: zero drift" if drift == 0 else f"verify: {drift} drifted item(s)")
    return 0 if drift == 0 else 1


def _repair(settings: Settings, names: list[str], as_json: bool) -> int:
    from projectors.operations.repair import drifted_keys, repair
    from projectors.operations.verify import verify_projection
    from projectors.runtime.stores import open_raw_store

    status = 0
    report = []
    for name in names:
        store = open_raw_store(settings, name)
        try:
            keys = drifted_keys(settings, name, store)
            done = repair(settings, name, store, keys)
            after = verify_projection(settings, name, store)
        finally:
            store.close()
        status |= 1 if after.total or done.result.failures else 0
        line = {
            "projection": name, "drifted": done.drifted, "rewritten": done.written, "removed": done.removed,
            "changed": done.result.changed, "failures": len(done.result.failures), "driftAfter": after.total,
        }
        report.append(line)
        if not as_json:
            print(
                f"  {name:<9} repaired {done.drifted} drifted item(s): {done.written} rewritten, "
                f"{done.removed} removed, {done.result.changed} changed; drift after repair: {after.total}"
            )
    if as_json:
        print(json.dumps(report, indent=2))
    return status


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.operations.status import gather, render

    rows = gather(settings, args.projection or None)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print("\n".join(render(rows)))
    return 0 if all(r.store_up for r in rows) else 1


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.operations.replay import replay

    progress = replay(settings, args.projection, args.start, force=args.force, wait_s=args.wait)
    return 0 if progress.done >= progress.total or args.wait == 0 else 1


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.errors import RebuildAbandoned
    from projectors.operations.rebuild import rebuild

    say: Callable[[str], None] = (lambda _line: None) if args.json else print
    try:
        report = rebuild(settings, args.projection, force=args.force, verify_wait_s=args.verify_wait, out=say)
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


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    from projectors.bench.harness import PHASES, TINY, BenchConfig, run

    config = TINY if args.tiny else BenchConfig()
    overrides: dict[str, Any] = {k: v for k, v in (("events", args.events), ("rebuild_events", args.rebuild_events),
                                   ("users", args.users), ("run_limit_s", args.run_limit),
                                   ("phases", choices("--phases", args.phases, PHASES)),
                                   ("projections", choices("--projections", args.projections, PROJECTION_NAMES)))
                                 if v is not None}
    run(dataclasses.replace(config, **overrides), args.out)
    return 0


def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from projectors.operations import dlq

    if args.action == "list":
        found = list(dlq.letters(settings, args.projection))
        for letter in found:
            print(letter.summary())
        print(f"{len(found)} dead letter(s), {sum(not x.redriven for x in found)} not redriven")
        return 0
    if args.action == "show":
        if not args.ids:
            raise ConfigurationError("dlq show needs a dead letter id (see `projectors dlq list`)")
        for letter_id in args.ids:
            print(dlq.as_json(dlq.find(settings, letter_id)))
        return 0
    if args.all:
        chosen = [x for x in dlq.letters(settings, args.projection) if not x.redriven]
    elif args.ids:
        chosen = [dlq.find(settings, letter_id) for letter_id in args.ids]
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

    for name, cls in SECTIONS.items():
        section = getattr(settings, name)
        for field in cls.model_fields:
            value = getattr(section, field)
            shown = "**********" if hasattr(value, "get_secret_value") else value
            print(f"{cls.env_name(field)}={shown}")
    return 0


PROJECTION_NAMES = ("feed", "counters", "graph", "search")
EXIT_COULD_NOT_CHECK = 3  # verify: exit 0 zero drift, 1 drift, 2 a bad setting, 3 a store or the source did not answer


def projection_name(value: str) -> str:
    """argparse type (``choices`` with ``nargs="*"`` rejects an empty list on Python 3.11)."""
    if value not in PROJECTION_NAMES:
        raise argparse.ArgumentTypeError(f"unknown projection {value!r} (choose from {', '.join(PROJECTION_NAMES)})")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="projectors", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="the local stack: up | down | status")
    stack.add_argument("action", choices=("up", "down", "status"))
    stack.add_argument("--only", help="comma-separated parts (postgres,broker,falkordb,cosmos,capture)")
    stack.add_argument("--json", action="store_true", help="status as JSON")
    stack.set_defaults(func=_stack)

    db = sub.add_parser("db", help="source database: migrate")
    db.add_argument("action", choices=("migrate",))
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

    sample = sub.add_parser("sample", help="write sample social activity into PostgreSQL")
    sample.add_argument("--users", type=int, default=30)
    sample.add_argument("--operations", type=int, default=400)
    sample.add_argument("--seed", type=int, default=None, help="random seed (default: a new one each run)")
    sample.set_defaults(func=_sample)

    topics = sub.add_parser("topics", help="show the change events on the capture topics")
    topics.add_argument("--show", type=int, default=5, help="events to print in full")
    topics.add_argument("--timeout", type=float, default=30.0)
    topics.set_defaults(func=_topics)

    demo = sub.add_parser("demo", help="the main job on the local stack")
    demo.set_defaults(func=_demo)

    worker = sub.add_parser("worker", help="run a faust worker for one projection")
    worker.add_argument("projection", choices=("feed", "counters", "graph", "search"))
    worker.set_defaults(func=_worker)

    verify = sub.add_parser("verify", help="compare projections with the spec computed from PostgreSQL")
    verify.add_argument("projection", nargs="*", type=projection_name, help="default: all")
    verify.add_argument("--wait", type=float, default=0.0, help="re-check drifted projections for up to N seconds")
    verify.add_argument("--json", action="store_true")
    verify.add_argument("--repair", action="store_true", help="rewrite exactly the drifted items from the spec")
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
    replay_cmd.add_argument("--force", action="store_true", help="stop the local workers, reset, restart them")
    replay_cmd.add_argument("--wait", type=float, default=600.0, help="follow the progress for up to N seconds")
    replay_cmd.set_defaults(func=_replay)

    rebuild_cmd = sub.add_parser(
        "rebuild", help="build a projection's store afresh next to the live one, verify it, swap it in atomically"
    )
    rebuild_cmd.add_argument("projection", choices=PROJECTION_NAMES)
    rebuild_cmd.add_argument(
        "--force", action="store_true", help="pause the local workers of the projection for the swap (seconds)"
    )
    rebuild_cmd.add_argument(
        "--verify-wait", type=float, default=120.0, help="keep catching up and verifying for up to N seconds"
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
                       "throughput,rebuild,lag,fanout,drills; the load always runs)")
    bench.add_argument("--projections", help="comma-separated projections whose throughput is measured "
                       "(default: all four)")
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

    dlq_cmd = sub.add_parser("dlq", help="dead letters: list | show <id> | redrive [--all | <id>...]")
    dlq_cmd.add_argument("action", choices=("list", "show", "redrive"))
    dlq_cmd.add_argument("ids", nargs="*", help="dead letter ids: <projection>:<partition>:<offset>")
    dlq_cmd.add_argument("--projection", choices=PROJECTION_NAMES)
    dlq_cmd.add_argument("--all", action="store_true", help="redrive every dead letter not redriven yet")
    dlq_cmd.add_argument("--value-file", help="redrive one letter with this corrected value (JSON file)")
    dlq_cmd.set_defaults(func=_dlq)

    config = sub.add_parser("config", help="print the effective settings (secrets masked)")
    config.add_argument("action", choices=("check",))
    config.set_defaults(func=_config)
    return parser


def quiet_libraries() -> None:
    """The azure SDK logs every HTTP request and its headers at INFO: far too much, and slow."""
    for name in ("azure", "azure.core.pipeline.policies.http_logging_policy", "urllib3", "neo4j"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    quiet_libraries()
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


if __name__ == "__main__":
    sys.exit(main())
