"""Debezium's own validation of the properties capture would start the connector with."""

from __future__ import annotations

from dataclasses import dataclass, field

from projectors.capture.connector import DEBEZIUM_VERSION, describe_errors, validation_errors
from projectors.capture.runner import effective_properties
from projectors.settings import Settings


@dataclass
class ConnectorCheck:
    """What the connector's validation said: ``errors`` by property; ``unreachable``: its connection
    test, kept apart (PostgreSQL may just not be up yet)."""

    errors: dict[str, list[str]] = field(default_factory=dict)
    unreachable: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return describe_errors(self.errors).splitlines()


def check_connector(settings: Settings) -> ConnectorCheck:
    """Run the Debezium connector's validation (a JVM starts: a few seconds)."""
    errors = validation_errors(effective_properties(settings), settings.capture.jvm_opts)
    unreachable = errors.pop("database.hostname", None) or []
    return ConnectorCheck(errors, list(unreachable))


__all__ = ["DEBEZIUM_VERSION", "ConnectorCheck", "check_connector"]
