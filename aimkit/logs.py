"""One log format for every program: ``text`` (key=value) or ``json`` lines on stderr.

The convention for context: pass fields flat in ``extra``::

    log.info("node patched", extra={"node": name, "patch": text})

Both formats carry every field. ``text`` is logfmt, for people and for grep::

    time=2026-01-01T00:00:00.000+00:00 level=info logger=detector.publish.node
    msg="node patched" node=gpu-1 patch="{...}"    (one line)

``json`` is one object per line with the same keys (``time``, ``level``, ``logger``, ``msg``,
then the fields), for log pipelines. A traceback follows the line in ``text`` and is the
``exception`` field in ``json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")

# Attributes every LogRecord has: everything else on a record came from ``extra``.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_HEAD = ("time", "level", "logger", "msg")


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields of a record, in the order they were given."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RESERVED and not key.startswith("_") and key not in _HEAD
    }


class Formatter(logging.Formatter):
    """``text`` (logfmt) or ``json`` lines; see the module docstring."""

    def __init__(self, fmt: str = "text") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"log format {fmt!r}: must be one of {', '.join(FORMATS)}")
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(record_fields(record))
        trace = self.formatException(record.exc_info) if record.exc_info else ""
        if self.fmt == "json":
            if trace:
                entry["exception"] = trace
            return json.dumps({k: _plain(v) for k, v in entry.items()})
        line = " ".join(f"{key}={_logfmt(value)}" for key, value in entry.items())
        return f"{line}\n{trace}" if trace else line


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _logfmt(value: Any) -> str:
    text = "" if value is None else str(value)
    if text and not any(c in text for c in ' "=\\\n\t'):
        return text
    return json.dumps(text)


def setup(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send every logger's records to ``stream`` (stderr) in ``fmt`` at ``level``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # urllib3 logs its own view of every failed connection; ours already says what failed.
    logging.getLogger("urllib3").setLevel(logging.ERROR)


def safe_extra(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` usable as ``extra``: a key that a LogRecord owns gets a trailing ``_``."""
    return {(f"{k}_" if k in _RESERVED or k in _HEAD else k): v for k, v in fields.items()}


def settings_fields(settings: Any, prefix: str = "") -> dict[str, Any]:
    """A (nested) dataclass as flat ``extra`` fields, for the one start-up settings line."""
    out: dict[str, Any] = {}
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        key = f"{prefix}{item.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update(settings_fields(value, prefix=f"{key}."))
        elif isinstance(value, tuple | list | frozenset | set):
            out[key] = ",".join(str(v) for v in value)
        else:
            out[key] = value
    return safe_extra(out)


class Throttle:
    """Say a repeated failure once: ``allow(text)`` is True for a text unlike the last one
    allowed, or the same text once ``interval`` seconds have passed (a reminder)."""

    def __init__(
        self, interval: float = 600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: tuple[str, float] | None = None

    def allow(self, text: str) -> bool:
        now = self._clock()
        with self._lock:
            last = self._last
            if last is not None and last[0] == text and now - last[1] < self._interval:
                return False
            self._last = (text, now)
            return True

    def reset(self) -> bool:
        """Forget the last failure; True when there was one (time to say it recovered)."""
        with self._lock:
            had, self._last = self._last is not None, None
            return had
