"""The `projectors` command: one module per command group, each parsing its arguments, calling one
operation and printing its result. Only the chosen command's module is imported (a worker does not
load the bench, `projectors --help` loads nothing); :data:`COMMANDS` names every command, its help
line and where it is defined. Exit codes: :mod:`projectors.exit_codes`."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from projectors.errors import ConfigurationError, DataLossRisk, PauseTimeout, unanswered
from projectors.exit_codes import ExitCode
from projectors.settings import KAFKA_LOGGER, Settings, SettingsError, load_settings

# command -> (module, function adding its parser, help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "stack": ("stack", "add_stack", "the local stack: up | down | status"),
    "demo": ("stack", "add_demo", "the main job on the local stack"),
    "db": ("source", "add_db", "source database: migrate | roles (least-privilege roles, as the owner)"),
    "sample": ("source", "add_sample", "write sample social activity into PostgreSQL"),
    "topics": ("source", "add_topics", "show the change events on the capture topics"),
    "capture": ("capture", "add_capture", "run the embedded Debezium engine, publishing to Kafka"),
    "connector": ("capture", "add_connector", "render debezium/connector.json for Kafka Connect"),
    "config": ("capture", "add_config", "print the effective settings (secrets masked) and validate the capture "
               "connector's properties with Debezium's own validation"),
    "schemas": ("files", "add_schemas", "JSON Schema of events and projection documents (schemas/)"),
    "generate": ("files", "add_generate", "write every file derived from the projections' descriptors (schemas, "
                 "connector, deploy, docs tables)"),
    "worker": ("worker", "add_worker", "run a faust worker for one projection"),
    "serve": ("serve", "add_serve", "the HTTP read API (PROJECTORS_READ_API_HOST/PORT): feeds, notifications, "
              "counters, search"),
    "verify": ("verify", "add_verify", "compare projections with the spec computed from PostgreSQL"),
    "status": ("operate", "add_status", "per projection and partition: offsets, lag, rate, store, DLQ"),
    "pause": ("operate", "add_pause", "pause a projection's workers through the control topic (wherever they run) "
              "and wait until its consumer group is empty"),
    "resume": ("operate", "add_resume", "let a paused projection's workers consume again"),
    "replay": ("operate", "add_replay", "reprocess a projection from a point in its topics"),
    "rebuild": ("operate", "add_rebuild", "build a projection's store afresh next to the live one, verify it, "
                "swap it in atomically"),
    "dlq": ("operate", "add_dlq", "dead letters: list | show <id> | redrive [--all | <id>...]"),
    "bench": ("bench", "add_bench", "benchmarks and fault drills on a private local stack: results.md, "
              "results.json, results.png"),
    "bench-feed": ("bench", "add_bench_feed", "the feed and counters at a realistic scale on a private local "
                   "stack: feed-results.md"),
    "bench-reads": ("bench", "add_bench_reads", "each ReadClient call's p50/p99 and Cosmos requests at two store "
                    "sizes and under writes, on a private local stack: reads-results.md"),
}

# kept importable from here: tests and scripts use them
EXIT_BROKEN_PIPE = ExitCode.BROKEN_PIPE
EXIT_UNAVAILABLE = ExitCode.UNAVAILABLE


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first word that is one), None when there is none."""
    return next((word for word in argv if word in COMMANDS), None)


def build_parser(only: str | None = None, every: bool = False) -> argparse.ArgumentParser:
    """The parser with every command's name and help; the arguments of ``only`` (or of all, with
    ``every``: the CLI reference) come from importing its module."""
    parser = argparse.ArgumentParser(
        prog="projectors", description="PostgreSQL changes, captured by Debezium, projected into read stores."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, add, help) in COMMANDS.items():
        if every or name == only:
            getattr(importlib.import_module(f"{__name__}.{module}"), add)(sub, help)
        else:
            sub.add_parser(name, help=help)
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
        return ExitCode.BROKEN_PIPE


def run(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(chosen_command(words)).parse_args(words)
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
        return int(handler(args, settings))
    except (SettingsError, ConfigurationError) as exc:
        print(f"projectors: error: {exc}", file=sys.stderr)
        return ExitCode.CONFIGURATION
    except DataLossRisk as exc:
        print(f"projectors: refusing to continue: {exc}", file=sys.stderr)
        return ExitCode.DATA_LOSS_RISK
    except PauseTimeout as exc:
        print(f"projectors: not paused: {exc}", file=sys.stderr)
        return ExitCode.NOT_PAUSED
    except Exception as exc:
        if isinstance(exc, BrokenPipeError) or not unanswered(exc):  # a reader gone away: main's
            raise
        print(f"projectors: error: {did_not_answer(exc)}", file=sys.stderr)
        return ExitCode.UNAVAILABLE


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
