"""`projectors bench --tiny --phases drills`: each fault drill under load ends with zero drift and
every poison event in the dead letters of every projection."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import cli


def test_the_fault_drills_end_with_zero_drift(tmp_path: Path) -> None:
    done = cli("bench", "--tiny", "--phases", "drills", "--out", str(tmp_path), timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    drills = json.loads((tmp_path / "results.json").read_text())["drills"]
    said = "\n".join(line for line in done.stdout.splitlines() if line.startswith(("==", "   ")))
    assert len(drills) == 4 and all(set(d["drift_after"].values()) == {0} for d in drills), said
    assert drills[-1]["dead_letters"] == drills[-1]["expected_dead_letters"], said
    report = (tmp_path / "results.md").read_text()
    assert "## Fault drills" in report and "SIGKILL the graph worker" in report
