"""The files derived from the projections' descriptors are committed as the descriptors give them:
a projection added, removed or changed without `projectors generate` fails here."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from projectors import generated
from projectors.projections import DESCRIPTORS
from tests.conftest import cli


def test_the_committed_generated_files_are_what_the_descriptors_give() -> None:
    done = cli("generate", "--check")
    assert done.returncode == 0, done.stderr


def copy_of_the_generated(tmp_path: Path) -> Path:
    shutil.copytree(generated.K8S, tmp_path / "deploy" / "k8s")
    shutil.copy(generated.COMPOSE, tmp_path / "docker-compose.yml")
    (tmp_path / "docs").mkdir()
    for doc in ("projections.md", "cli.md", "settings.md"):
        shutil.copy(generated.ROOT / "docs" / doc, tmp_path / "docs" / doc)
    return tmp_path


def test_a_new_or_changed_descriptor_makes_the_files_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = copy_of_the_generated(tmp_path)
    assert generated.stale(root) == []
    extra = replace(DESCRIPTORS["counters"], name="orderTotals")
    monkeypatch.setitem(DESCRIPTORS, "orderTotals", extra)
    assert generated.stale(root) == [
        "deploy/k8s/kustomization.yaml", "deploy/k8s/secret-workers.example.yaml",
        "deploy/k8s/worker-order-totals.yaml", "docker-compose.yml", "docs/projections.md",
    ]
    generated.write(root)
    assert generated.stale(root) == []
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    assert compose["services"]["worker-order-totals"]["command"] == ["worker", "orderTotals"]
    kustomization = yaml.safe_load((root / "deploy" / "k8s" / "kustomization.yaml").read_text())
    assert "worker-order-totals.yaml" in kustomization["resources"]
    monkeypatch.delitem(DESCRIPTORS, "orderTotals")
    assert generated.stale(root) == [  # the projection is gone: its manifest is left behind
        "deploy/k8s/kustomization.yaml", "deploy/k8s/secret-workers.example.yaml",
        "deploy/k8s/worker-order-totals.yaml", "docker-compose.yml", "docs/projections.md",
    ]


def test_a_compose_file_without_the_markers_is_refused(tmp_path: Path) -> None:
    root = copy_of_the_generated(tmp_path)
    compose = root / "docker-compose.yml"
    compose.write_text(compose.read_text().replace(generated.BEGIN, ""))
    with pytest.raises(ValueError, match="markers are missing"):
        generated.stale(root)


def test_every_command_and_flag_has_an_entry_with_a_meaning_in_the_cli_reference() -> None:
    import argparse

    from projectors.cli import COMMANDS, build_parser

    reference = (generated.ROOT / "docs" / "cli.md").read_text()
    assert reference == generated.cli_reference()  # committed as the parser gives it
    sub = next(a for a in build_parser(every=True)._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(COMMANDS)
    for name, command in sub.choices.items():
        section = reference.split(f"## `projectors {name}`\n", 1)[1].split("\n## ", 1)[0]
        for action in command._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            shown = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest}`"
            row = next((line for line in section.splitlines() if line.startswith(f"| {shown}")), None)
            assert row is not None, (name, shown)
            assert row.rsplit("|", 2)[1].strip(), f"projectors {name} {shown} has no meaning in its help"
