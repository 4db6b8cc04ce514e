"""`projectors serve`: the HTTP read API."""

from __future__ import annotations

import argparse

from projectors.exit_codes import ExitCode
from projectors.read.api import serve
from projectors.settings import Settings


def add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser], help: str) -> None:
    sub.add_parser("serve", help=help).set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    serve(settings)
    return ExitCode.OK
