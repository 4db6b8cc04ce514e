"""Where the workers run, as operations see it.

``replay`` and ``rebuild`` pause a projection's running workers and start them again afterwards;
``status`` asks whether a store lost the data the workers wrote. Operations know only this
interface: the local stack (``projectors.stack.local.LocalDeployment``) is one implementation, from
its pid files and store markers. Where the workers run elsewhere (a Kubernetes Deployment), this
process neither sees nor controls them: the operator scales the Deployment to 0 before a replay
(its consumer group must be empty to move its offsets) and back afterwards.
"""

from __future__ import annotations

from typing import Protocol


class WorkerProcess(Protocol):
    @property
    def name(self) -> str: ...

    def stop(self) -> None: ...

    def start(self, timeout: float) -> None: ...


class Deployment(Protocol):
    def running(self, projection: str) -> list[WorkerProcess]:
        """The worker processes of ``projection`` that run now and this process can pause."""
        ...

    def store_state(self, projection: str) -> str | None:
        """``LOST`` when the store lost what the workers wrote there, ``RESTORING`` while it is being
        restored; None when neither is known."""
        ...

    @property
    def start_timeout_s(self) -> float: ...


class Elsewhere:
    """Workers this process cannot see: nothing to pause, no store markers."""

    start_timeout_s = 0.0

    def running(self, projection: str) -> list[WorkerProcess]:
        return []

    def store_state(self, projection: str) -> str | None:
        return None
