"""Typed settings, read once from the environment and validated at start-up.

Every setting is an environment variable named ``PROJECTORS_<SECTION>_<FIELD>``; a secret may
instead be given as a file path in ``<NAME>_FILE`` (Docker and Kubernetes secrets). A bad value
stops the process with a message that names the variable (:class:`SettingsError`).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr

from projectors.settings_base import ENV_PREFIX, Section, SettingsError, default_stack_dir
from projectors.settings_connections import (
    KAFKA_LOGGER,
    CosmosSettings,
    FalkorSettings,
    GraphSettings,
    KafkaSettings,
    PostgresSettings,
    RedisSettings,
    SearchSettings,
)
from projectors.settings_processes import (
    CaptureSettings,
    FeedSettings,
    ReadSettings,
    StackSettings,
    VerifySettings,
    WorkerSettings,
)

# the groups live in settings_connections.py and settings_processes.py; every name is imported from here
__all__ = [
    "ENV_PREFIX", "KAFKA_LOGGER", "SECTIONS", "CaptureSettings", "CosmosSettings", "FalkorSettings", "FeedSettings",
    "GraphSettings", "KafkaSettings", "PostgresSettings", "ReadSettings", "RedisSettings", "SearchSettings",
    "Section", "Settings", "SettingsError", "StackSettings", "VerifySettings", "WorkerSettings",
    "default_stack_dir", "known_variables", "load_settings", "secret_variables", "settings_to_env",
]


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    pg: PostgresSettings
    kafka: KafkaSettings
    capture: CaptureSettings
    falkordb: FalkorSettings
    cosmos: CosmosSettings
    redis: RedisSettings = RedisSettings()
    feed: FeedSettings = FeedSettings()
    graph: GraphSettings
    search: SearchSettings
    worker: WorkerSettings
    stack: StackSettings
    verify: VerifySettings = VerifySettings()
    read: ReadSettings = ReadSettings()

    @cached_property
    def capture_state_dir(self) -> Path:
        return (self.capture.state_dir or self.stack.dir / "capture").absolute()

    @cached_property
    def search_sqlite_path(self) -> Path:
        return (self.search.sqlite_path or self.stack.dir / "search.sqlite3").absolute()


SECTIONS: dict[str, type[Section]] = {
    "pg": PostgresSettings,
    "kafka": KafkaSettings,
    "capture": CaptureSettings,
    "falkordb": FalkorSettings,
    "cosmos": CosmosSettings,
    "redis": RedisSettings,
    "feed": FeedSettings,
    "graph": GraphSettings,
    "search": SearchSettings,
    "worker": WorkerSettings,
    "stack": StackSettings,
    "verify": VerifySettings,
    "read": ReadSettings,
}


def known_variables() -> set[str]:
    """Every environment variable the settings read (without the ``_FILE`` variants)."""
    return {cls.env_name(f) for cls in SECTIONS.values() for f in cls.model_fields}


def secret_variables() -> set[str]:
    """The variables that hold secrets (given as ``<NAME>_FILE`` in deployments)."""
    fields = [(cls, f, info) for cls in SECTIONS.values() for f, info in cls.model_fields.items()]
    return {cls.env_name(f) for cls, f, info in fields if info.annotation is SecretStr}


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read and validate every setting once; unknown ``PROJECTORS_*`` variables are an error too."""
    env = dict(os.environ if environ is None else environ)
    known = known_variables()
    unknown = sorted(
        k for k in env if k.startswith(ENV_PREFIX) and k not in known and k.removesuffix("_FILE") not in known
    )
    if unknown:
        raise SettingsError(f"unknown setting {', '.join(unknown)} (known: see `projectors config check`)")
    sections = {name: cls.from_env(env) for name, cls in SECTIONS.items()}
    return Settings(**sections)


def settings_to_env(settings: Settings) -> dict[str, str]:
    """The environment that reproduces ``settings`` in a child process (secrets included)."""
    env: dict[str, str] = {}
    for name, cls in SECTIONS.items():
        section = getattr(settings, name)
        for field in cls.model_fields:
            value = getattr(section, field)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[cls.env_name(field)] = str(value)
    return env
