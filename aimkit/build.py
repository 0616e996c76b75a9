"""What build is running: ``--version`` and the ``<program>_build_info`` metric.

The version is the installed distribution's (``pyproject.toml``), so the image, ``--version``
and the metric always agree; a source tree that is not installed says ``unknown``.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Gauge

DISTRIBUTION = "aim-accelerator"


def version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def version_line(program: str) -> str:
    """``aim-detector 0.1.0 (aim-accelerator, Python 3.11.9)``."""
    return f"{program} {version()} ({DISTRIBUTION}, Python {platform.python_version()})"


def register_build_info(registry: CollectorRegistry, metric: str) -> Gauge:
    """``<metric>{version, python_version} 1``, the conventional build-info gauge."""
    # Imported here: --version and the offline commands need no Prometheus client.
    from prometheus_client import Gauge  # noqa: PLC0415

    gauge = Gauge(
        metric,
        "Always 1; the labels say which build is running.",
        ["version", "python_version"],
        registry=registry,
    )
    gauge.labels(version(), platform.python_version()).set(1)
    return gauge
