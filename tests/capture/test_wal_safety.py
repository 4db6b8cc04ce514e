"""WAL safety on the real stack: the slot's retained WAL measured by capture's /metrics grows while
no capture streams, and the alert's own expression (deploy/alerts, evaluated by promtool) is true
on the scraped values; a slot PostgreSQL invalidated (small max_slot_wal_keep_size) is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from projectors.capture.lease import Lease
from projectors.capture.status_lines import capture_lines
from projectors.model import table_topic
from projectors.stack.commands import Capture
from tests.capture.helpers import burn_wal, capture_env, capture_settings, read_until, slot_lost
from tests.conftest import StackHandle, free_port

RULES = Path(__file__).resolve().parents[2] / "deploy" / "alerts" / "projectors-rules.yml"


def scrape(port: int) -> dict[str, float]:
    """The capture's metrics: ``name{status}`` (wal_status) or ``name`` -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            status = sample.labels.get("status")
            out[f"{sample.name}{{{status}}}" if status else sample.name] = sample.value
    return out


def get_json(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def alert_expression(name: str) -> str:
    rules = yaml.safe_load(RULES.read_text())
    return next(r["expr"] for g in rules["groups"] for r in g["rules"] if r.get("alert") == name)


def promtool_evaluates(tmp_path: Path, series: dict[str, list[float]], expr: str, expected: list[dict[str, object]],
                       at: str) -> subprocess.CompletedProcess[str]:
    """``promtool test rules``: ``expr`` over ``series`` (one sample a minute) at ``at`` gives ``expected``."""
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": s, "values": " ".join(repr(v) for v in vs)} for s, vs in series.items()],
            "promql_expr_test": [{"expr": expr, "eval_time": at, "exp_samples": expected}],
        }],
    }
    path = tmp_path / "scraped.test.yml"
    path.write_text(yaml.safe_dump(test))
    return subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module", autouse=True)
def promtool() -> None:
    assert shutil.which("promtool"), "promtool is missing: scripts/setup installs Debian's prometheus package"


def test_retained_wal_grows_while_no_capture_streams_and_the_alert_expression_is_true(
    stack: StackHandle, tmp_path: Path
) -> None:
    port = free_port()
    settings = stack.with_env(
        PROJECTORS_CAPTURE_TOPIC_PREFIX="walx",
        PROJECTORS_CAPTURE_SLOT_NAME="walx_slot",
        PROJECTORS_CAPTURE_STATE_DIR=str(stack.settings.stack.dir / "walx"),
        PROJECTORS_CAPTURE_WEB_PORT=str(port),
        PROJECTORS_CAPTURE_WAL_ALERT_BYTES=str(16 * 1024**2),
        PROJECTORS_CAPTURE_SNAPSHOT_MODE="no_data",  # streams at once, whatever other tests left in users
    )
    capture = Capture(settings)
    capture.start(120)
    holder = Lease(settings)
    try:
        row = uuid.uuid4()
        with stack.pg() as conn:
            conn.execute("INSERT INTO users (id, handle) VALUES (%s, %s)", (row, f"w_{row.hex[:10]}"))
        read_until(settings, [table_topic("walx", "users")], lambda rs: any(r.key["id"] == str(row) for r in rs))
        active = scrape(port)
        assert active["projectors_capture_active"] == 1 and active["projectors_capture_slot_active"] == 1
        assert active["projectors_capture_slot_wal_status{reserved}"] == 1
        assert active["projectors_capture_position_age_seconds"] < 60
        assert get_json(f"http://127.0.0.1:{port}/health/ready")[1]["role"] == "active"
        capture.stop()

        # the stream stops: another holder keeps the lease, so the capture started again is a standby
        # (still serving /metrics), and nothing confirms positions while writes go on
        assert holder.acquire(threading.Event())
        capture.prepare()
        capture.spawn()
        deadline = time.monotonic() + 60
        while not (settings.capture_state_dir / "standby").exists():
            assert time.monotonic() < deadline, "the capture did not wait as a standby"
            time.sleep(0.2)
        code, body = get_json(f"http://127.0.0.1:{port}/health/ready")
        assert code == 200 and body["role"] == "standby"
        samples = [scrape(port)]
        for _ in range(3):
            burn_wal(settings, 8)
            samples.append(scrape(port))
        retained = [s["projectors_capture_slot_retained_wal_bytes"] for s in samples]
        print(f"\nretained WAL while no capture streams: {[int(r) for r in retained]} bytes")
        assert retained == sorted(retained) and retained[-1] - retained[0] > 20 * 1024**2, retained
        last = samples[-1]
        assert last["projectors_capture_active"] == 0 and last["projectors_capture_standby"] == 1
        assert last["projectors_capture_slot_active"] == 0
        assert "projectors_capture_position_age_seconds" not in last  # only the active capture says it
        assert any("retained WAL" in line and "INACTIVE" in line for line in capture_lines(settings))

        # the alert's expression on these scraped values (one scrape a minute, the last one held)
        slot = '{slot="walx_slot"}'
        limit = last["projectors_capture_retained_wal_alert_bytes"]
        series = {
            f"projectors_capture_slot_retained_wal_bytes{slot}": retained + [retained[-1]] * 6,
            f"projectors_capture_retained_wal_alert_bytes{slot}": [limit] * 10,
            f"projectors_capture_active{slot}": [s["projectors_capture_active"] for s in samples] + [0.0] * 6,
        }
        wal = promtool_evaluates(tmp_path, series, alert_expression("ProjectorsCaptureWalRetained"),
                                 [{"labels": slot, "value": retained[-1]}], "5m")
        assert wal.returncode == 0, wal.stdout + wal.stderr
        down = promtool_evaluates(tmp_path, series, alert_expression("ProjectorsCaptureDown"),
                                  [{"labels": slot, "value": 0}], "5m")
        assert down.returncode == 0, down.stdout + down.stderr
        # and not true on the first scrape (below the limit): the check can fail
        early = promtool_evaluates(tmp_path, series, alert_expression("ProjectorsCaptureWalRetained"), [], "0m")
        assert retained[0] < limit and early.returncode == 0, early.stdout + early.stderr
    finally:
        holder.release()
        capture.stop()


def test_a_slot_invalidated_by_max_slot_wal_keep_size_is_refused(stack: StackHandle) -> None:
    settings = capture_settings(stack, "lostwal")
    env = capture_env(stack, "lostwal")
    capture = Capture(settings)
    capture.start(120)
    capture.stop()
    try:
        with slot_lost(settings, "lostwal_slot"):
            refused = stack.cli("capture", env=env)
            assert refused.returncode == 3, refused.stderr
            assert "invalidated" in refused.stderr and "projectors capture --recover-slot" in refused.stderr
            assert "max_slot_wal_keep_size is 32.0 MB" in refused.stderr  # what preflight said at start
    finally:
        with psycopg.connect(settings.pg.conninfo(), autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot('lostwal_slot')")
