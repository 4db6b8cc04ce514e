"""docs/settings.md: every ``PROJECTORS_*`` setting with its type, default and meaning, generated
from the settings groups (``settings_connections.py``, ``settings_processes.py``: the comment above a
field, or after it, is its meaning) by ``projectors config reference``; a test keeps the file in
step with the code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_core import PydanticUndefined

from projectors.settings import SECTIONS, Section

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "settings.md"

# the meaning of the settings whose field has no comment
MEANINGS = {
    "PG_HOST": "PostgreSQL host (the source database)",
    "PG_PORT": "PostgreSQL port",
    "PG_USER": "PostgreSQL role: the reader role for workers, the owner for migrations and operations",
    "PG_PASSWORD": "that role's password",
    "PG_DATABASE": "the source database",
    "PG_SSLCERT": "client certificate (PEM), where the server asks for one",
    "PG_SSLKEY": "the client certificate's key (PEM)",
    "KAFKA_BOOTSTRAP_SERVERS": "the broker's host:port list, for every client",
    "KAFKA_TOPIC_PARTITIONS": "partitions of the topics capture and the workers create",
    "KAFKA_REPLICATION_FACTOR": "replicas of the topics created",
    "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, for every client",
    "KAFKA_SASL_MECHANISM": "SASL mechanism",
    "KAFKA_SASL_USERNAME": "SASL user",
    "KAFKA_SASL_PASSWORD": "SASL password",
    "KAFKA_SSL_CA_LOCATION": "the CA file that signed the broker's certificate",
    "CAPTURE_TOPIC_PREFIX": "the one topic prefix: capture publishes `<prefix>.public.<table>` and the "
    "workers read it; also names the control topic `<prefix>.projectors-control`",
    "CAPTURE_SLOT_NAME": "the logical replication slot capture reads",
    "CAPTURE_PUBLICATION": "the publication of the captured tables",
    "CAPTURE_TABLES": "the captured tables, comma-separated",
    "CAPTURE_HEARTBEAT_INTERVAL_MS": "Debezium heartbeats (they let the slot advance while the tables are quiet)",
    "CAPTURE_OFFSET_FLUSH_INTERVAL_MS": "how often embedded capture saves its offsets",
    "CAPTURE_MAX_BATCH_SIZE": "Debezium's largest batch of changes",
    "FALKORDB_HOST": "FalkorDB host (the local graph backend)",
    "FALKORDB_PORT": "FalkorDB port",
    "FALKORDB_GRAPH": "the graph's name (a rebuild writes `<name>-g<n>`)",
    "COSMOS_ENDPOINT": "the Cosmos DB account of the feed",
    "COSMOS_DATABASE": "the Cosmos DB database",
    "COSMOS_VERIFY_TLS": "verify the Cosmos DB endpoint's certificate (false only for the emulator)",
    "COSMOS_NOTIFICATIONS_ENDPOINT": "the Cosmos DB account of the notifications (default: the feed's)",
    "FEED_CELEBRITY_FOLLOWERS": "authors with at least this many followers are fanned out on read",
    "GRAPH_BACKEND": "neo4j or falkordb",
    "GRAPH_NEO4J_URI": "Neo4j Bolt URI (neo4j+s:// for TLS)",
    "GRAPH_NEO4J_USER": "the Neo4j writer user",
    "GRAPH_NEO4J_PASSWORD": "its password",
    "GRAPH_NEO4J_DATABASE": "the Neo4j database",
    "GRAPH_NEO4J_READ_PASSWORD": "the Neo4j reader user's password (read services)",
    "SEARCH_BACKEND": "meilisearch or sqlite",
    "SEARCH_MEILI_URL": "Meilisearch URL",
    "SEARCH_MEILI_MASTER_KEY": "the Meilisearch key that writes (workers, operations)",
    "SEARCH_MEILI_SEARCH_KEY": "the search-only key (read services)",
    "WORKER_BATCH_SIZE": "the largest batch of events a worker applies at once",
    "WORKER_COMMIT_INTERVAL_S": "how often a worker commits the offsets of what it applied",
    "WORKER_DEAD_LETTER_PREFIX": "dead letter topics: `<prefix>.<projection>`",
    "WORKER_RETRY_INITIAL_S": "first wait before retrying a source or store call",
    "WORKER_RETRY_MAX_S": "longest wait between retries",
    "WORKER_SHUTDOWN_GRACE_S": "on SIGTERM (or a pause), how long the batch in flight may take to finish",
    "STACK_START_TIMEOUT_S": "the local stack: how long a part may take to start",
    "READ_MAX_BEHIND_CHECK_S": "how often read services re-check how far behind a projection is",
}


def _comments(cls: type[Section]) -> dict[str, str]:
    """Each field's comment: the ``#`` lines just above it, else the one after it on its line."""
    out: dict[str, str] = {}
    above: list[str] = []
    for line in inspect.getsource(cls).splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").strip())
            continue
        match = re.match(r"^\s{4}([a-z_][a-z0-9_]*)\s*:", line)
        if match:
            inline = line.split("  # ", 1)[1].strip() if "  # " in line else ""
            out[match.group(1)] = " ".join(above) or inline
        above = []
    return out


def _type(annotation: Any) -> str:
    if annotation is SecretStr:
        return "secret"
    text = str(annotation).replace("typing.", "").replace("pathlib.", "").replace("<class '", "").replace("'>", "")
    return text.replace("NoneType", "None")


def _default(info: Any) -> str:
    if info.default_factory is not None:
        return "(computed)"
    value = info.default
    if value is PydanticUndefined or value is None:
        return "(none)"
    if isinstance(value, SecretStr):
        return "(set it)" if value.get_secret_value() else "(none)"
    return str(value) if str(value) != "" else "(empty)"


def render() -> str:
    lines = [
        "# Settings reference",
        "",
        "Generated from `projectors/settings_*.py` by `projectors config reference`; do not edit by hand.",
        "Every setting is an environment variable; a secret may instead be given as a file in `<NAME>_FILE`.",
        "An invalid or unknown `PROJECTORS_*` variable stops every command at start, naming it.",
        "",
    ]
    for cls in SECTIONS.values():
        doc = (cls.__doc__ or "").strip().splitlines()
        lines += [f"## `PROJECTORS_{cls.env_section}*`", ""]
        if doc and not doc[0].startswith(cls.__name__):
            lines += [doc[0], ""]
        lines += ["| setting | type | default | meaning |", "|---|---|---|---|"]
        comments = _comments(cls)
        for name, info in cls.model_fields.items():
            var = cls.env_name(name)
            meaning = (comments.get(name) or MEANINGS.get(var.removeprefix("PROJECTORS_"), "")).replace("|", "\\|")
            kind = _type(info.annotation).replace("|", "\\|")
            lines.append(f"| `{var}` | {kind} | `{_default(info)}` | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def missing_meanings() -> list[str]:
    """Settings the reference cannot explain (no comment on its field, no entry above)."""
    return [cls.env_name(n) for cls in SECTIONS.values() for n in cls.model_fields
            if not _comments(cls).get(n) and cls.env_name(n).removeprefix("PROJECTORS_") not in MEANINGS]


def stale() -> bool:
    return not REFERENCE.exists() or REFERENCE.read_text() != render()


def write() -> Path:
    REFERENCE.write_text(render())
    return REFERENCE
