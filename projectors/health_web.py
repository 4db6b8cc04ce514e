"""The HTTP server of a process's ``/health`` and ``/metrics``, shared by the workers
(``runtime/observe.py``) and capture (``capture/observe.py``).

- ``/metrics``: the Prometheus text of :meth:`HealthWeb.registry`;
- ``/health``: 200 while the process lives, with :meth:`HealthWeb.health`'s JSON body;
- ``/health/ready``: the same body, 503 while its ``ready`` is false;
- anything else: 404.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class HealthWeb(ABC):
    """Listens on every address at ``port`` (0: a free one), served on a daemon thread once started."""

    thread_name = "health"

    def __init__(self, port: int) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    self._send(200, generate_latest(server.registry()), CONTENT_TYPE_LATEST)
                elif self.path.startswith("/health"):
                    body = server.health()
                    status = 503 if self.path.startswith("/health/ready") and not body["ready"] else 200
                    self._send(status, json.dumps(body).encode(), "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("0.0.0.0", port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=self.thread_name, daemon=True)

    @abstractmethod
    def registry(self) -> CollectorRegistry:
        """The metrics ``/metrics`` serves, read at each scrape."""

    @abstractmethod
    def health(self) -> dict[str, Any]:
        """The body of ``/health``, with ``ready`` (a bool) among its keys."""

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()  # the port is free for the next server at once
