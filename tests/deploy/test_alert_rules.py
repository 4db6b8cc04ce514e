"""The capture alert rules: promtool's own check and unit tests (deploy/alerts), the Kubernetes
PrometheusRule holding the same groups, and every metric a rule reads exported by capture."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from projectors.capture import observe
from projectors.capture.wal import SlotWal
from projectors.settings import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "alerts" / "projectors-rules.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: scripts/setup installs Debian's prometheus package"
    return path


def test_promtool_checks_the_rules_and_their_unit_tests_pass(promtool: str) -> None:
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "4 rules found" in check.stdout, check.stdout + check.stderr
    tests = subprocess.run(
        [promtool, "test", "rules", "projectors-rules.test.yml"],
        capture_output=True, text=True, timeout=60, cwd=RULES.parent,
    )
    assert tests.returncode == 0 and "SUCCESS" in tests.stdout, tests.stdout + tests.stderr


def test_the_prometheus_rule_holds_the_same_groups() -> None:
    plain = yaml.safe_load(RULES.read_text())
    rule = yaml.safe_load((DEPLOY / "k8s" / "prometheus-rule.yaml").read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"] == plain
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert "prometheus-rule.yaml" in kustomization["resources"]


def test_every_metric_a_rule_reads_is_exported_by_capture(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load_settings({"PROJECTORS_STACK_DIR": str(tmp_path)})
    (tmp_path / "capture").mkdir()
    (tmp_path / "capture" / "ready").write_text("running\n")
    (tmp_path / "capture" / "position.json").write_text("{}")
    wal = SlotWal(settings.capture.slot_name, True, True, "reserved", None, 1000, 10)
    monkeypatch.setattr(observe, "read_slot", lambda _settings: wal)
    exported = {s.name for family in observe.CaptureCollector(settings).collect() for s in family.samples}
    used = set()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            used |= set(re.findall(r"projectors_[a-z_]+", rule["expr"]))
    assert used and used <= exported, used - exported
