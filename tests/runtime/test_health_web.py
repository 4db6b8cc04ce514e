"""The one /health and /metrics server, as the workers and capture serve it: readiness decides
/health/ready's status, /health answers 200 while the process lives, anything else is 404."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from projectors.capture.observe import CaptureWeb
from projectors.runtime.observe import HealthServer, Metrics
from projectors.settings import load_settings
from tests.conftest import free_port


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_worker_is_ready_when_every_part_is_and_serves_its_metrics() -> None:
    parts = {"store": True, "consuming": False}
    server = HealthServer(0, Metrics("feed"), lambda: parts)
    server.start()
    try:
        status, body = get(server.port, "/health")
        assert status == 200
        assert json.loads(body) == {"live": True, "ready": False, "state": "running", "parts": parts}
        assert get(server.port, "/health/ready")[0] == 503
        parts["consuming"] = True
        assert get(server.port, "/health/ready") == (200, json.dumps(
            {"live": True, "ready": True, "state": "running", "parts": parts}))
        status, metrics = get(server.port, "/metrics")
        assert status == 200 and 'projectors_events_total{projection="feed"} 0.0' in metrics
        assert get(server.port, "/other") == (404, "not found\n")
    finally:
        server.stop()


def test_a_capture_without_postgresql_is_live_not_ready_and_says_so(tmp_path: Path) -> None:
    settings = load_settings({"PROJECTORS_PG_PORT": str(free_port()), "PROJECTORS_STACK_DIR": str(tmp_path)})
    server = CaptureWeb(settings, 0)
    server.start()
    try:
        status, body = get(server.port, "/health")
        answer: dict[str, Any] = json.loads(body)
        assert status == 200 and answer["live"] and not answer["ready"]
        assert answer["role"] == "starting" and answer["postgres"] is False
        assert get(server.port, "/health/ready")[0] == 503
        status, metrics = get(server.port, "/metrics")
        assert status == 200 and 'projectors_capture_postgres_up{slot="projectors_slot"} 0.0' in metrics
        assert get(server.port, "/other")[0] == 404
    finally:
        server.stop()
