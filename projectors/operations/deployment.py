"""Where the workers run, as ``status`` sees it: whether a store lost the data the workers wrote.

Operations never start or stop workers: ``replay`` and ``rebuild`` pause them through the control
topic (``operations/pause.py``), wherever they run. The local stack
(``projectors.stack.local.LocalDeployment``) adds its stores' markers; elsewhere none are known.
"""

from __future__ import annotations

from typing import Protocol


class Deployment(Protocol):
    def store_state(self, projection: str) -> str | None:
        """``LOST`` when the store lost what the workers wrote there, ``RESTORING`` while it is being
        restored; None when neither is known."""
        ...


class Elsewhere:
    """Workers this process cannot see: no store markers."""

    def store_state(self, projection: str) -> str | None:
        return None
