"""`projectors worker <projection>`: one faust worker of one projection."""

from __future__ import annotations

import argparse

from projectors.exit_codes import ExitCode
from projectors.projections import PROJECTION_NAMES
from projectors.runtime.worker import run_worker
from projectors.settings import Settings


def add_worker(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    worker = sub.add_parser("worker", help=help)
    worker.add_argument("projection", choices=PROJECTION_NAMES, help="the projection this worker projects")
    worker.set_defaults(func=worker_command)


def worker_command(args: argparse.Namespace, settings: Settings) -> int:
    run_worker(settings, args.projection, loglevel="debug" if args.verbose else "info")
    return ExitCode.OK
