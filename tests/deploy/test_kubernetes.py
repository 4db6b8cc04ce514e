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

from projectors.runtime.observe import Metrics
from projectors.settings import known_variables

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


def test_configmap_sets_every_setting_and_nothing_unknown() -> None:
    config = next(d for d in documents() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "projectors-config")
    names = {k.removesuffix("_FILE") for k in config["data"]}
    assert names == known_variables()
    secret_paths = {v for k, v in config["data"].items() if k.endswith("_FILE")}
    secret = next(d for d in documents() if d["kind"] == "Secret")
    assert {f"/etc/projectors/secrets/{key}" for key in secret["stringData"]} == secret_paths
    assert all(v == "REPLACE-ME" for v in secret["stringData"].values())  # no real secret in the repo


def test_every_worker_has_probes_scrape_annotations_and_resources() -> None:
    deployments = [d for d in documents() if d["kind"] == "Deployment"]
    assert sorted(d["metadata"]["name"] for d in deployments) == [
        f"projectors-worker-{p}" for p in ("counters", "feed", "graph", "search")
    ]
    for d in deployments:
        pod = d["spec"]["template"]
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        container = pod["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert container["args"][0] == "worker" and container["args"][1] in d["metadata"]["name"]


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
