"""deploy/: the Kubernetes manifests against the Kubernetes schemas (kubernetes-validate, offline),
their settings against the code's, probes and scrape annotations; the Grafana dashboard's queries
against the metrics the workers export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
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


# custom resources (the Prometheus Operator's PrometheusRule) are not in the Kubernetes schemas:
# tests/deploy/test_alert_rules.py checks that one
CUSTOM = ("monitoring.coreos.com/",)


@pytest.mark.parametrize(
    "doc",
    [d for d in documents() if not d["apiVersion"].startswith(CUSTOM)],
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
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
READ_ONLY = {"PROJECTORS_COSMOS_READ_KEY", "PROJECTORS_GRAPH_NEO4J_READ_PASSWORD", "PROJECTORS_SEARCH_MEILI_SEARCH_KEY",
             "PROJECTORS_READ_CURSOR_KEY", "PROJECTORS_REDIS_READER_PASSWORD"}
READER_SECRETS = SHARED | READ_ONLY  # the reader role's and the consumer's, and the read-only ones


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


def worker_deployments() -> list[dict[str, Any]]:
    return [
        d for d in documents()
        if d["kind"] == "Deployment" and d["metadata"]["labels"]["app.kubernetes.io/name"] == "projectors-worker"
    ]


def test_each_worker_gets_only_its_own_stores_secrets() -> None:
    deployments = {d["metadata"]["name"].removeprefix("projectors-worker-"): d for d in worker_deployments()}
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
    assert secrets()["projectors-reader-secrets"] == {secret_key(v) for v in READER_SECRETS}


def test_the_read_api_has_read_only_credentials_probes_a_service_and_an_autoscaler() -> None:
    by_kind = {d["kind"]: d for d in documents() if d["metadata"]["name"] == "projectors-reader"}
    assert set(by_kind) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"}
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["serve"]
    files = {e["name"].removesuffix("_FILE") for e in container["env"] if e["name"].endswith("_FILE")}
    assert files == READER_SECRETS and not files & {"PROJECTORS_COSMOS_KEY", "PROJECTORS_GRAPH_NEO4J_PASSWORD",
                                                    "PROJECTORS_SEARCH_MEILI_MASTER_KEY"}
    secret = next(v for v in pod["volumes"] if v["name"] == "secrets")["secret"]["secretName"]
    assert secret == "projectors-reader-secrets"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    labels = by_kind["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert by_kind["Service"]["spec"]["selector"].items() <= labels.items()
    assert by_kind["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == "projectors-reader"


def test_every_worker_has_probes_scrape_annotations_and_resources() -> None:
    deployments = worker_deployments()
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


def rendered() -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/k8s`` (offline), as the objects it renders."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing: scripts/setup installs Debian's kubectl"
    done = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def test_kustomize_renders_every_manifest_and_each_object_validates() -> None:
    objects = rendered()
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == sorted({"Namespace", "ConfigMap", "Job", "Deployment", "PrometheusRule", "PodDisruptionBudget",
                            "Service", "HorizontalPodAutoscaler",
                            "NetworkPolicy"}), kinds
    for o in objects:
        assert o["kind"] == "Namespace" or o["metadata"]["namespace"] == "projectors", o["metadata"]["name"]
        if not o["apiVersion"].startswith(CUSTOM):
            kubernetes_validate.validate(o, VERSION, strict=True)


def test_capture_runs_two_replicas_with_its_own_role_probes_and_budgets() -> None:
    objects = rendered()
    capture = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "projectors-capture")
    assert capture["spec"]["replicas"] == 2
    pod = capture["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["capture"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PROJECTORS_PG_USER"] == "projectors_capture"
    assert set(env) - {"PROJECTORS_PG_USER"} == {"PROJECTORS_PG_PASSWORD_FILE", "PROJECTORS_KAFKA_SASL_PASSWORD_FILE"}
    assert next(v for v in pod["volumes"] if v["name"] == "secrets")["secret"]["secretName"] == (
        "projectors-capture-secrets")
    assert secrets()["projectors-capture-secrets"] == {"pg-password", "kafka-sasl-password"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert capture["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    assert config["data"]["PROJECTORS_CAPTURE_WEB_PORT"] == "8080"

    budgets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PodDisruptionBudget"}
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert set(budgets) == {d["metadata"]["name"] for d in deployments}
    for d in deployments:
        budget = budgets[d["metadata"]["name"]]["spec"]
        assert budget["minAvailable"] == 1 and budget["selector"]["matchLabels"] == d["spec"]["selector"]["matchLabels"]

    jobs = {
        o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0] for o in objects if o["kind"] == "Job"
    }
    assert jobs["projectors-migrate"]["args"] == ["db", "migrate"]
    assert jobs["projectors-db-roles"]["args"][:2] == ["db", "roles"]
    assert secrets()["projectors-owner-secrets"] == {"pg-password", "pg-capture-password", "pg-reader-password"}


def test_network_policies_deny_by_default_and_open_only_what_each_part_needs() -> None:
    policies = {o["metadata"]["name"]: o["spec"] for o in rendered() if o["kind"] == "NetworkPolicy"}
    deny = policies.pop("projectors-default-deny")
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in deny

    def ports(rules: list[dict[str, Any]]) -> set[int]:
        return {p["port"] for r in rules for p in r["ports"]} - {53}

    stores = {"feed": {443}, "counters": {443}, "notifications": {443}, "graph": {7687}, "search": {7700}}
    for projection, store in stores.items():
        spec = policies[f"projectors-worker-{projection}"]
        assert ports(spec["egress"]) == {9092, 5432} | store, projection
        assert [p["port"] for r in spec["ingress"] for p in r["ports"]] == [8080], projection  # metrics only
    capture = policies["projectors-capture"]
    assert ports(capture["egress"]) == {5432, 9092}
    reader = policies["projectors-reader"]  # read services reach it; it reaches every store and the fallback
    assert reader["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "projectors-reader"}
    assert ports(reader["egress"]) == {5432, 9092, 443, 7687, 7700, 6379}
    assert [p["port"] for r in reader["ingress"] for p in r["ports"]] == [8080]
    assert "ingress" not in policies["projectors-jobs"] and ports(policies["projectors-jobs"]["egress"]) == {5432}
