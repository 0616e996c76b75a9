"""aimkit.logs: one format for both programs; flat extra fields kept in text and JSON."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aimkit.logs import Formatter, Throttle, settings_fields, setup


def record(**extra: object) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": "matcher.controller.reconciler", "levelname": "INFO", "msg": "status %s",
         "args": ("written",), "created": 1767225600.5, **extra}
    )  # fmt: skip


def test_text_keeps_every_context_field_and_quotes_what_needs_it():
    line = Formatter("text").format(
        record(profile="aimclusterprofile/x", status="Ready", message_="a b", path=Path("/x"))
    )
    assert line == (
        "time=2026-01-01T00:00:00.500+00:00 level=info logger=matcher.controller.reconciler "
        'msg="status written" profile=aimclusterprofile/x status=Ready message_="a b" path=/x'
    )


def test_json_has_the_same_keys_and_plain_values():
    entry = json.loads(Formatter("json").format(record(node="gpu-1", retries=3, ok=True, err=None)))
    assert entry == {
        "time": "2026-01-01T00:00:00.500+00:00",
        "level": "info",
        "logger": "matcher.controller.reconciler",
        "msg": "status written",
        "node": "gpu-1",
        "retries": 3,
        "ok": True,
        "err": None,
    }


def test_a_traceback_follows_the_line_or_is_a_field():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys  # noqa: PLC0415

        rec = record(exc_info=sys.exc_info())
    text = Formatter("text").format(rec)
    assert text.splitlines()[0].endswith('msg="status written"')
    assert "RuntimeError: boom" in text
    assert "RuntimeError: boom" in json.loads(Formatter("json").format(rec))["exception"]


def test_setup_installs_one_handler_in_the_chosen_format():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        setup("warning", "json", stream)
        logging.getLogger("x").info("hidden")
        logging.getLogger("x").warning("shown", extra={"node": "n1"})
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["node"] == "n1"
    with pytest.raises(ValueError, match="log format 'xml'"):
        Formatter("xml")


@dataclass(frozen=True)
class Inner:
    page_size: int = 500


@dataclass(frozen=True)
class Outer:
    name: str = "x"  # a LogRecord attribute: renamed so that logging accepts it
    namespaces: tuple[str, ...] = ("a", "b")
    inner: Inner = field(default_factory=Inner)


def test_settings_become_one_flat_line():
    fields = settings_fields(Outer())
    assert fields == {"name_": "x", "namespaces": "a,b", "inner.page_size": 500}
    logging.getLogger("x").info("settings", extra=fields)  # accepted by logging as is


def test_a_repeated_failure_is_allowed_once_then_again_after_the_interval():
    now = [0.0]
    throttle = Throttle(interval=600, clock=lambda: now[0])
    assert throttle.allow("cannot reach x")
    assert not throttle.allow("cannot reach x")
    assert throttle.allow("HTTP 403")  # a different failure is news
    now[0] = 601.0
    assert throttle.allow("HTTP 403")
    assert throttle.reset()
    assert not throttle.reset()
