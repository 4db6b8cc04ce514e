"""`projectors db`, `projectors sample`, `projectors topics`: the source database and its changes."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from projectors.capture.topics import summarize_topics
from projectors.db.migrate import connect, migrate
from projectors.db.roles import apply_roles
from projectors.exit_codes import ExitCode
from projectors.projections import capture_tables
from projectors.settings import Settings
from projectors.workload import SocialWorkload


def add_db(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    db = sub.add_parser("db", help=help)
    db.add_argument("action", choices=("migrate", "roles"),
                    help="migrate: apply the migrations and the publication; roles: set the least-privilege roles")
    db.add_argument("--capture-role", default="projectors_capture", help="roles: the capture (replication) role")
    db.add_argument("--reader-role", default="projectors_reader", help="roles: the workers' read-only role")
    db.add_argument("--capture-password-file", type=Path, help="roles: the capture role's password")
    db.add_argument("--reader-password-file", type=Path, help="roles: the reader role's password")
    db.set_defaults(func=db_command)


def db_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "roles":
        def secret(path: Path | None) -> str:
            return path.read_text().strip() if path else ""

        capture, reader = args.capture_role, args.reader_role
        apply_roles(settings.pg, settings.capture.publication, capture_tables(settings.capture),
                    secret(args.capture_password_file), secret(args.reader_password_file), capture, reader)
        print(f"roles {capture} (replication, reads the publication) and {reader} (reads the tables) are set")
        return ExitCode.OK
    report = migrate(settings.pg, settings.capture.publication, capture_tables(settings.capture))
    if report.created_database:
        print(f"created database {settings.pg.database}")
    print(f"applied {len(report.applied)} migration(s){': ' + ', '.join(report.applied) if report.applied else ''}")
    print(f"publication {settings.capture.publication}: {', '.join(report.publication_tables)}")
    return ExitCode.OK


def add_sample(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    sample = sub.add_parser(
        "sample", help=help,
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
    sample.set_defaults(func=lambda args, settings: write_sample(settings, args.users, args.operations, args.seed))


def write_sample(settings: Settings, users: int, operations: int, seed: int | None) -> int:
    with connect(settings.pg) as conn:
        load = SocialWorkload(conn, rng=random.Random(seed))
        load.seed(users=users, posts=users, follows=users * 3)
        done = load.run(operations)
    print("wrote sample activity: " + ", ".join(f"{k} {v}" for k, v in sorted(done.items())))
    return ExitCode.OK


def add_topics(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    topics = sub.add_parser("topics", help=help)
    topics.add_argument(
        "--show", type=int, default=5,
        help="events to show, the first of each topic and operation, one line each (operation, table, key, LSN)",
    )
    topics.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the events")
    topics.set_defaults(func=lambda args, settings: print_topics(settings, args.show, args.timeout))


def print_topics(settings: Settings, show: int, timeout_s: float) -> int:
    summarize_topics(settings, max_events=show, timeout_s=timeout_s, out=print)
    return ExitCode.OK
