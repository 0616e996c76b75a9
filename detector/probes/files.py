"""Reading sysfs and procfs files: the probes' only I/O boundary.

Every kernel attribute the probes read ends in a newline (``0x%04x\\n``, ``%d\\n``, one
``key value\\n`` per line); a file without one was cut short, so it is "truncated", not a shorter
value. Bytes that are not ASCII are "garbled". Both raise BadFile naming the file; OSError
(PermissionError included) passes through unchanged so that callers can tell "cannot see" from
"saw nonsense".
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: sysfs attributes are at most a page; anything bigger is not what we expect.
ATTR_LIMIT = 4096
_HEX_RE = {digits: re.compile(rf"0x[0-9a-fA-F]{{{digits}}}") for digits in (2, 4, 6)}
_CPULIST_RE = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")


class BadFile(ValueError):
    """A file whose content does not have the form the kernel writes (garbled or truncated)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def read_text(path: Path, limit: int = ATTR_LIMIT) -> str:
    """The whole file as ASCII text; OSError passes through, bad content raises BadFile."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise BadFile(path, f"larger than {limit} bytes")
    data = b"".join(chunks)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise BadFile(path, "garbled: not ASCII text") from None
    if "\x00" in text:
        raise BadFile(path, "garbled: contains NUL bytes")
    if not text.endswith("\n"):
        raise BadFile(path, "truncated: no final newline" if text else "empty")
    return text


def read_attr(path: Path) -> str:
    """A one-line sysfs attribute without its newline."""
    text = read_text(path)
    value = text[:-1]
    if "\n" in value:
        raise BadFile(path, "garbled: more than one line")
    return value.strip()


def read_optional_attr(path: Path) -> str | None:
    """Like read_attr, but None when the file does not exist (feature absent on this kernel)."""
    try:
        return read_attr(path)
    except FileNotFoundError:
        return None


def parse_hex(path: Path, value: str, digits: int) -> int:
    """``0x74a1`` (exactly ``digits`` hex digits, as sysfs writes them) -> int."""
    if not _HEX_RE[digits].fullmatch(value):
        raise BadFile(path, f"expected 0x followed by {digits} hex digits, got {value!r}")
    return int(value, 16)


def parse_int(path: Path, value: str) -> int:
    try:
        return int(value, 10)
    except ValueError:
        raise BadFile(path, f"expected a decimal integer, got {value!r}") from None


def parse_cpulist(path: Path, value: str) -> frozenset[int]:
    """The kernel's cpulist format, ``0-3,8,10-11`` -> {0, 1, 2, 3, 8, 10, 11}."""
    if not _CPULIST_RE.fullmatch(value):
        raise BadFile(path, f"expected a CPU list like 0-3,8, got {value!r}")
    cpus: set[int] = set()
    for part in value.split(","):
        first, _, last = part.partition("-")
        low = int(first)
        high = int(last) if last else low
        if high < low:
            raise BadFile(path, f"descending CPU range {part!r}")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)
