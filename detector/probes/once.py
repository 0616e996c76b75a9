"""Say a recurring finding once: the agent probes every minute, and a node whose GPUs sit
behind vfio-pci, or whose amdsmi lists one GPU of eight, would otherwise log it every time.
The metrics carry the finding on every cycle."""

from __future__ import annotations

import logging

_said: set[str] = set()
_LIMIT = 256


def say_once(log: logging.Logger, message: str) -> None:
    """Log ``message`` as a warning the first time, at debug level after that."""
    if message in _said:
        log.debug("%s", message)
        return
    if len(_said) >= _LIMIT:  # a message with a changing part must not grow this forever
        _said.clear()
    _said.add(message)
    log.warning("%s", message)


def forget() -> None:
    """Say everything again (tests)."""
    _said.clear()
