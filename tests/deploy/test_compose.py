"""docker-compose.yml, .env.example and the Dockerfile, checked without a container engine: the
compose file against the Compose Specification schema, and every setting the code reads declared
in both places (and nothing else)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from projectors.settings import known_variables, secret_variables

ROOT = Path(__file__).resolve().parents[2]
SECRET_WORDS = ("PASSWORD", "KEY")


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def declared(names: set[str]) -> set[str]:
    return {n.removesuffix("_FILE") for n in names}


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads((ROOT / "deploy" / "schemas" / "compose_spec.json").read_text())
    jsonschema.Draft201909Validator(schema).validate(compose())


# the secrets each service may hold: every worker the reader role's password and the Kafka
# consumer's, then its own store's writer credential only; migrations run as the database owner
SHARED = {"PROJECTORS_PG_PASSWORD", "PROJECTORS_KAFKA_SASL_PASSWORD"}
OWN_SECRETS = {
    "worker-feed": SHARED | {"PROJECTORS_COSMOS_KEY"},
    "worker-counters": SHARED | {"PROJECTORS_COSMOS_KEY"},
    "worker-notifications": SHARED | {"PROJECTORS_COSMOS_KEY"},
    "worker-graph": SHARED | {"PROJECTORS_GRAPH_NEO4J_PASSWORD"},
    "worker-search": SHARED | {"PROJECTORS_SEARCH_MEILI_MASTER_KEY"},
    "worker-public-profiles": SHARED | {"PROJECTORS_COSMOS_KEY"},
    "worker-redis": SHARED | {"PROJECTORS_REDIS_WORKER_PASSWORD"},
    "migrate": {"PROJECTORS_PG_PASSWORD"},
    "pg-roles": {"PROJECTORS_PG_PASSWORD"},
}


def test_every_setting_is_set_for_the_workers_and_none_unknown() -> None:
    services = compose()["services"]
    workers = [name for name in services if name.startswith("worker-")]
    assert sorted(workers) == [
        "worker-counters", "worker-feed", "worker-graph", "worker-notifications", "worker-public-profiles",
        "worker-redis", "worker-search",
    ]
    for name, own in OWN_SECRETS.items():
        env = set(services[name]["environment"])
        projectors_env = {k for k in env if k.startswith("PROJECTORS_")}
        assert declared(projectors_env) == (known_variables() - secret_variables()) | own, name


def test_each_service_holds_only_its_own_secrets() -> None:
    services = compose()["services"]
    for name, own in OWN_SECRETS.items():
        env = services[name]["environment"]
        files = {k.removesuffix("_FILE"): v for k, v in env.items() if k.endswith("_FILE")}
        assert set(files) == own, name
        mounted = {f"/run/secrets/{secret}" for secret in services[name]["secrets"]}
        used = set(files.values()) | {a for a in services[name].get("command", []) if a.startswith("/run/secrets/")}
        assert used == mounted, name  # nothing mounted that it has no use for
    projections = ("feed", "counters", "graph", "search", "notifications", "public-profiles", "redis")
    workers = [services[f"worker-{p}"] for p in projections]
    assert all(w["environment"]["PROJECTORS_PG_USER"] == "${PG_READER_USER:-projectors_reader}" for w in workers)
    assert all({"pg_password", "pg_capture_password"}.isdisjoint(w["secrets"]) for w in workers)
    assert services["migrate"]["environment"]["PROJECTORS_PG_USER"] == "${PG_USER:-postgres}"
    assert services["connect"]["environment"]["PROJECTORS_PG_USER"] == "projectors_capture"
    assert services["pg-roles"]["command"][:2] == ["db", "roles"]


def test_env_example_declares_every_setting_and_nothing_else() -> None:
    names = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^(PROJECTORS_[A-Z0-9_]+)=", line)
        if match:
            names.add(match.group(1))
    assert declared(names) == known_variables()


def test_no_secret_is_written_in_the_compose_file() -> None:
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in SECRET_WORDS) and not key.endswith("_FILE"):
                assert str(value).startswith("${"), f"{name}: {key} must come from .env or a secret file"


def test_services_wait_for_healthy_dependencies_and_keep_data_in_named_volumes() -> None:
    data = compose()
    services = data["services"]
    for name in ("postgres", "kafka", "connect", "neo4j", "meilisearch", "cosmos", "worker-feed"):
        assert "healthcheck" in services[name], name
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert rule["condition"] in ("service_healthy", "service_completed_successfully"), (name, dependency)
    for name in ("postgres", "kafka", "neo4j", "meilisearch", "cosmos"):
        mounts = [v.split(":")[0] for v in services[name]["volumes"]]
        assert all(m in data["volumes"] for m in mounts), name
    assert services["migrate"]["command"] == ["db", "migrate"]
    assert "register-connector" in services["register-connector"]["entrypoint"][0]


def test_dockerfile_runs_as_a_non_root_user_with_pinned_dependencies() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER 10001", text, re.M)
    assert "slim" in text and "HEALTHCHECK" in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"dependencies = \[(.*?)\]", pyproject, re.S)
    assert deps
    for line in re.findall(r'"([^"]+)"', deps.group(1)):
        assert "==" in line, f"unpinned dependency {line}"
