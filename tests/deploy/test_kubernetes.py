"""deploy/: the Kubernetes manifests against the Kubernetes schemas (kubernetes-validate, offline),
their settings against the code's, probes and scrape annotations; the Grafana dashboard's queries
against the metrics the workers export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from projectors.generated import kebab
from projectors.runtime.observe import Metrics
from projectors.settings import known_variables, secret_variables

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
VERSION = "1.31.0"


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_is_valid_kubernetes(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, VERSION, strict=True)


# what each worker may hold: the reader role's password and the Kafka consumer's, then its own
# store's writer credential only; read services get the read-only credentials alone
SHARED = {"PROJECTORS_PG_PASSWORD", "PROJECTORS_KAFKA_SASL_PASSWORD"}
WORKER_SECRETS = {
    "feed": SHARED | {"PROJECTORS_COSMOS_KEY"},
    "counters": SHARED | {"PROJECTORS_COSMOS_KEY"},
    "notifications": SHARED | {"PROJECTORS_COSMOS_KEY"},
    "graph": SHARED | {"PROJECTORS_GRAPH_NEO4J_PASSWORD"},
    "search": SHARED | {"PROJECTORS_SEARCH_MEILI_MASTER_KEY"},
    "public-profiles": SHARED | {"PROJECTORS_COSMOS_KEY"},
    "redis": SHARED | {"PROJECTORS_REDIS_WORKER_PASSWORD"},
}
READ_ONLY = {
    "PROJECTORS_COSMOS_READ_KEY", "PROJECTORS_GRAPH_NEO4J_READ_PASSWORD", "PROJECTORS_SEARCH_MEILI_SEARCH_KEY",
    "PROJECTORS_REDIS_READER_PASSWORD",
}


def secret_key(variable: str) -> str:
    """The key of a secret's file in its Secret: PROJECTORS_GRAPH_NEO4J_PASSWORD -> neo4j-password."""
    name = variable.removeprefix("PROJECTORS_").removeprefix("GRAPH_").removeprefix("SEARCH_")
    return name.lower().replace("_", "-")


def secrets() -> dict[str, set[str]]:
    return {d["metadata"]["name"]: set(d["stringData"]) for d in documents() if d["kind"] == "Secret"}


def test_configmap_sets_every_setting_but_the_secrets_and_nothing_unknown() -> None:
    config = next(d for d in documents() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "projectors-config")
    assert set(config["data"]) == known_variables() - secret_variables()
    assert config["data"]["PROJECTORS_PG_USER"] == "projectors_reader"
    assert all(v == "REPLACE-ME" for d in documents() if d["kind"] == "Secret" for v in d["stringData"].values())
    # every secret has its holders
    assert set().union(*WORKER_SECRETS.values()) | READ_ONLY == secret_variables()


def test_each_worker_gets_only_its_own_stores_secrets() -> None:
    deployments = {
        d["metadata"]["name"].removeprefix("projectors-worker-"): d for d in documents() if d["kind"] == "Deployment"
    }
    assert set(deployments) == set(WORKER_SECRETS)
    for projection, own in WORKER_SECRETS.items():
        pod = deployments[projection]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        files = {k.removesuffix("_FILE"): v for k, v in env.items() if k.endswith("_FILE")}
        assert set(files) == own, projection
        mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
        secret = next(v for v in pod["volumes"] if v["name"] == "secrets")["secret"]["secretName"]
        assert secret == f"projectors-{projection}-secrets"
        assert secrets()[secret] == {secret_key(v) for v in own}, projection
        assert files == {v: f"{mount['mountPath']}/{secret_key(v)}" for v in own}, projection
    assert secrets()["projectors-reader-secrets"] == {secret_key(v) for v in READ_ONLY}


def test_every_worker_has_probes_scrape_annotations_and_resources() -> None:
    deployments = [d for d in documents() if d["kind"] == "Deployment"]
    assert sorted(d["metadata"]["name"] for d in deployments) == [
        f"projectors-worker-{p}"
        for p in ("counters", "feed", "graph", "notifications", "public-profiles", "redis", "search")
    ]
    for d in deployments:
        pod = d["spec"]["template"]
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        container = pod["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert container["args"][0] == "worker"
        assert kebab(container["args"][1]) == d["metadata"]["name"].removeprefix("projectors-worker-")


def test_dashboard_queries_only_metrics_the_workers_export() -> None:
    dashboard = json.loads((K8S.parent / "grafana" / "projectors-dashboard.json").read_text())
    exported = set()
    for metric in Metrics("feed").registry.collect():
        exported |= {s.name for s in metric.samples}
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"projectors_[a-z_]+", target["expr"]))
    assert used and used <= exported, used - exported
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("lag", "throughput", "latency", "dead letters"):
        assert topic in titles
