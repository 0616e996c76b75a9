"""Where the labels go: the Node itself (``node`` mode) or an NFD ``features.d`` file.

Both publishers have the same small surface, so the agent does not care which one it drives.
They are the I/O shell around the pure decisions in ``detector.reconcile``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class PublishError(Exception):
    """Labels could not be read or written (after retries, where retrying made sense)."""


class Publisher(Protocol):
    #: Where the labels go, for logs (``node/gpu-node-1``, ``nfd:/etc/.../aim-accelerator``).
    target: str

    def read(self) -> dict[str, str]:
        """The labels a previous run published and that are still in place (restart state)."""
        ...

    def publish(self, labels: Mapping[str, str], *, complete: bool = True) -> bool:
        """Make the published labels exactly ``labels``; True when something was written.
        ``complete`` is False when a probe failed this cycle: ``labels`` are then the last
        good ones, and an empty set must not be published as "found nothing"."""
        ...

    def cleanup(self) -> bool:
        """Remove everything this agent published; True when something was removed."""
        ...
