"""deploy/k8s/ops: the operator's Job, checked offline: valid Kubernetes, the operator's own Secret
(owner and every store's writer credential), never in the workers' kustomization, and the command
it documents yields a valid Job running that operation."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from projectors.cli import build_parser

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
OPS = K8S / "ops"
OPERATOR_SECRETS = {"PROJECTORS_PG_PASSWORD", "PROJECTORS_KAFKA_SASL_PASSWORD", "PROJECTORS_COSMOS_KEY",
                    "PROJECTORS_GRAPH_NEO4J_PASSWORD", "PROJECTORS_SEARCH_MEILI_MASTER_KEY"}


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((OPS / name).read_text())
    assert isinstance(doc, dict)
    return doc


def test_the_job_and_its_secret_are_valid_kubernetes() -> None:
    for name in ("job.yaml", "secret.example.yaml"):
        kubernetes_validate.validate(load(name), "1.31.0", strict=True)


def test_the_job_holds_the_operators_credentials_from_a_secret_of_its_own() -> None:
    job = load("job.yaml")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    files = {k.removesuffix("_FILE"): v for k, v in env.items() if k.endswith("_FILE")}
    assert set(files) == OPERATOR_SECRETS
    assert env["PROJECTORS_PG_USER"] == "postgres"  # the owner, not the workers' reader role
    (volume,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    assert volume["secret"]["secretName"] == "projectors-operator-secrets"
    keys = set(load("secret.example.yaml")["stringData"])
    assert {Path(p).name for p in files.values()} == keys
    workers = [d for p in K8S.glob("worker-*.yaml") for d in yaml.safe_load_all(p.read_text()) if d]
    assert all("projectors-operator-secrets" not in yaml.safe_dump(w) for w in workers)
    assert pod["automountServiceAccountToken"] is False and job["spec"]["backoffLimit"] == 0


def test_the_job_is_not_part_of_the_workers_kustomization() -> None:
    default = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert not any("ops" in r for r in default["resources"])
    assert yaml.safe_load((OPS / "kustomization.yaml").read_text())["resources"] == ["job.yaml"]


def test_the_documented_edit_runs_the_operation() -> None:
    text = (OPS / "job.yaml").read_text()
    match = re.search(r"sed '(s/.*/)' deploy/k8s/ops/job.yaml", text)
    assert match, "job.yaml documents how to set the operation"
    done = subprocess.run(["sed", match.group(1)], input=text, capture_output=True, text=True, check=True)
    job = yaml.safe_load(done.stdout)
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["replay", "graph", "--force"]
    build_parser(args[0]).parse_args(args)  # an operation the command line knows
    kubernetes_validate.validate(job, "1.31.0", strict=True)


def test_kustomize_renders_the_job() -> None:
    done = subprocess.run(["kubectl", "kustomize", str(OPS)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    (job,) = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "projectors"
