"""Runs the shell blocks the docs mark runnable and checks their output:
``python -m scripts.docs_check [--update] [FILE...]`` (default: README.md and docs/*.md).

A ```console block is runnable when the line just before its opening fence is
``<!-- runnable -->``, or ``<!-- runnable: cluster -->`` for commands that need the docs'
example cluster (docs/cluster-up.sh: the test API server with five detector-labelled nodes, the
matcher and the example profiles; KUBECONFIG points at it). In a block, a line starting with
``$ `` is a command (continued on the next line while it ends in ``\\`` or a quote is open), and
the lines up to the next command are its expected output, stdout and stderr together.

The runnable blocks of one file run in order in one bash session, so that a block can use what
an earlier one set up (variables, background processes). The session runs in a scratch directory
laid out like the checkout (a symlink to each top-level entry) but with its own ``out/``, so a
run never touches the checkout's ``out/`` or another run's; at the end every process it started
is killed. Its environment: ``PORT=0`` (``make serve`` picks a free port, and out/kubeconfig
says which), ``PATH`` starting with .venv/bin and .tools/bin.

Output is compared line by line after normalising what differs from run to run: runs of spaces
(kubectl's column widths), ages (``3s``, ``2m5s``), RFC 3339 times and the random suffixes of
generated names. In the expected output a line ``...`` matches any number of lines and ``...``
within a line any text. A read-only command (``kubectl get``/``describe``) is retried for up to
30 s until its output matches, as a person would look again while the matcher catches up.

``--update`` rewrites the expected output of every runnable block with what ran (commands are
kept as written).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!-- runnable(?::\s*(?P<fixture>[\w-]+))? -->$")
FIXTURES = {
    "cluster": (
        "OUT=out/docs-cluster bash docs/cluster-up.sh >out/docs-cluster.log 2>&1 && "
        "export KUBECONFIG=$PWD/out/docs-cluster/kubeconfig"
    ),
}
#: Read-only commands, retried until their output matches.
RETRIED = re.compile(r"^kubectl (-\S+ \S+ )*(get|describe)\b")
RETRY_FOR = 30.0
COMMAND_TIMEOUT = 180.0

_AGE = re.compile(r"(?<![\w.:/-])(\d+(ms|s|m|h|d)){1,3}(?![\w.:/-])")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
_SUFFIX = re.compile(
    r"\b([a-z0-9]+(?:-[a-z0-9]+)*?)-(?:[bcdfghjklmnpqrstvwxz2456789]{6,10}-)?"
    r"[bcdfghjklmnpqrstvwxz2456789]{5}\b"
)


@dataclass
class Command:
    text: str  # as written, continuation lines included
    expected: list[str]
    line: int  # where it starts in the file (1-based)


@dataclass
class Block:
    fixture: str | None
    start: int  # index of the opening fence line
    end: int  # index of the closing fence line
    indent: int = 0  # of the fence: a block inside a list item is indented
    commands: list[Command] = field(default_factory=list)


@dataclass
class Mismatch:
    file: Path
    command: Command
    got: list[str]

    def __str__(self) -> str:
        where = _shown(self.file)
        return (
            f"{where}:{self.command.line}: $ {self.command.text}\n"
            + "  expected:\n"
            + "".join(f"    {line}\n" for line in self.command.expected)
            + "  got:\n"
            + "".join(f"    {line}\n" for line in self.got)
        )


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _complete(command: str) -> bool:
    if command.endswith("\\"):
        return False
    try:
        shlex.split(command)
    except ValueError:  # an open quote: the command goes on
        return False
    return True


def blocks(text: str) -> list[Block]:
    """The runnable blocks of a Markdown text."""
    lines = text.split("\n")
    found: list[Block] = []
    index = 0
    while index < len(lines):
        marker = MARKER.match(lines[index].strip())
        if not marker or index + 1 >= len(lines) or lines[index + 1].strip() != "```console":
            index += 1
            continue
        fixture = marker.group("fixture")
        if fixture is not None and fixture not in FIXTURES:
            raise ValueError(f"line {index + 1}: unknown fixture {fixture!r}")
        indent = len(lines[index + 1]) - len(lines[index + 1].lstrip(" "))
        block = Block(fixture, index + 1, index + 1, indent)

        def content(at: int, indent: int = indent) -> str:
            line = lines[at]
            return line[indent:] if line[:indent] == " " * indent else line.lstrip(" ")

        cursor = index + 2
        current: Command | None = None
        while cursor < len(lines) and lines[cursor].strip() != "```":
            line = content(cursor)
            if line.startswith("$ "):
                command = line[2:]
                start = cursor
                while not _complete(command) and cursor + 1 < len(lines):
                    cursor += 1
                    command += "\n" + content(cursor)
                current = Command(command, [], start + 1)
                block.commands.append(current)
            elif current is None:
                raise ValueError(f"line {cursor + 1}: output before any command")
            else:
                current.expected.append(line)
            cursor += 1
        block.end = cursor
        found.append(block)
        index = cursor + 1
    return found


def normalise(line: str) -> str:
    line = _TIME.sub("<time>", line)
    line = _SUFFIX.sub(r"\1-<suffix>", line)
    line = _AGE.sub("<age>", line)
    return " ".join(line.split())


def _line_matches(expected: str, got: str) -> bool:
    if "..." not in expected:
        return normalise(expected) == normalise(got)
    parts = [re.escape(normalise(part)) for part in expected.split("...")]
    return re.fullmatch(r".*".join(parts), normalise(got)) is not None


def matches(expected: list[str], got: list[str]) -> bool:
    """Whether ``got`` fits ``expected`` (``...`` lines match any run of lines)."""
    if not expected:
        return not got
    head, rest = expected[0], expected[1:]
    if head.strip() == "...":
        return any(matches(rest, got[skip:]) for skip in range(len(got) + 1))
    return bool(got) and _line_matches(head, got[0]) and matches(rest, got[1:])


class Session:
    """One bash process whose commands run one at a time, each with its output captured."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self._marker = f"__docs_check_{uuid.uuid4().hex}__"
        self._proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._buffer = b""

    def run(self, command: str, timeout: float = COMMAND_TIMEOUT) -> tuple[int, list[str]]:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        script = f"{command}\nprintf '\\n%s %s\\n' {self._marker} $?\n"
        self._proc.stdin.write(script.encode())
        self._proc.stdin.flush()
        deadline = time.monotonic() + timeout
        fd = self._proc.stdout.fileno()
        pattern = re.compile(rb"\n" + self._marker.encode() + rb" (\d+)\n")
        while True:
            found = pattern.search(self._buffer)
            if found:
                output = self._buffer[: found.start()].decode(errors="replace")
                self._buffer = self._buffer[found.end() :]
                output = output.removesuffix("\n")  # the command's own last newline
                lines = output.split("\n") if output else []
                return int(found.group(1)), lines
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._proc.poll() is not None:
                output = self._buffer.decode(errors="replace")
                raise TimeoutError(f"$ {command}: no end after {timeout:.0f}s:\n{output}")
            ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    continue
                self._buffer += chunk

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()


@contextlib.contextmanager
def scratch_checkout(root: Path = ROOT) -> Iterator[Path]:
    """A directory laid out like ``root`` (symlinks) with an empty ``out/`` of its own."""
    with tempfile.TemporaryDirectory(prefix="docs-check-") as tmp:
        scratch = Path(tmp)
        for entry in root.iterdir():
            if entry.name not in {"out", ".git"}:
                (scratch / entry.name).symlink_to(entry)
        (scratch / "out").mkdir()
        yield scratch


def session_env(scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "AIM_"))}
    env["PATH"] = f"{scratch / '.venv' / 'bin'}:{scratch / '.tools' / 'bin'}:{env.get('PATH', '')}"
    env["PORT"] = "0"
    env["HOME"] = str(scratch / "out")  # kubectl's cache, helm's config: nothing of the user's
    env.pop("MAKEFLAGS", None)
    env.pop("MAKELEVEL", None)
    return env


def _venv_synced(root: Path = ROOT) -> None:
    """Bring the checkout's .venv up to date before a page runs ``make``: the scratch checkout
    shares it through a symlink, and a ``uv sync`` from there would point its scripts at the
    scratch directory."""
    if subprocess.run(["make", "-q", ".venv/.synced"], cwd=root, check=False).returncode != 0:
        subprocess.run(["make", "--no-print-directory", ".venv/.synced"], cwd=root, check=True)


def run_file(path: Path) -> tuple[list[Mismatch], dict[int, list[str]]]:
    """Run a file's runnable blocks; the mismatches, and each command's output by its line."""
    found = blocks(path.read_text())
    mismatches: list[Mismatch] = []
    outputs: dict[int, list[str]] = {}
    if not found:
        return mismatches, outputs
    _venv_synced()
    with scratch_checkout() as scratch:
        session = Session(scratch, session_env(scratch))
        try:
            started: set[str] = set()
            for block in found:
                if block.fixture and block.fixture not in started:
                    status, _ = session.run(FIXTURES[block.fixture])
                    if status != 0:
                        log = (scratch / "out" / "docs-cluster.log").read_text(errors="replace")
                        raise RuntimeError(f"fixture {block.fixture} failed:\n{log}")
                    started.add(block.fixture)
                for command in block.commands:
                    retry_until = time.monotonic() + (
                        RETRY_FOR if RETRIED.match(command.text) else 0
                    )
                    while True:
                        _, got = session.run(command.text)
                        if matches(command.expected, got) or time.monotonic() >= retry_until:
                            break
                        time.sleep(0.5)
                    outputs[command.line] = got
                    if not matches(command.expected, got):
                        mismatches.append(Mismatch(path, command, got))
        finally:
            session.close()
    return mismatches, outputs


def update(path: Path, outputs: dict[int, list[str]]) -> bool:
    """Rewrite the expected output of each runnable command of ``path`` with what ran."""
    lines = path.read_text().split("\n")
    for block in reversed(blocks("\n".join(lines))):
        body: list[str] = []
        for command in block.commands:
            body += ["$ " + command.text, *outputs.get(command.line, command.expected)]
        pad = " " * block.indent
        lines[block.start + 1 : block.end] = [
            (pad + line).rstrip() if line.strip() else "" for line in "\n".join(body).split("\n")
        ]
    text = "\n".join(lines)
    changed = text != path.read_text()
    if changed:
        path.write_text(text)
    return changed


def default_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--update", action="store_true", help="rewrite the expected outputs")
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    failed = False
    for path in [p.resolve() for p in args.files] or default_files():
        found = blocks(path.read_text())
        if not found:
            continue
        mismatches, outputs = run_file(path)
        count = sum(len(b.commands) for b in found)
        if args.update:
            changed = update(path, outputs)
            state = "updated" if changed else "unchanged"
            print(f"{_shown(path)}: {count} commands; {state}")
            continue
        print(f"{_shown(path)}: {count} commands in {len(found)} blocks: "
              f"{'FAILED' if mismatches else 'ok'}")  # fmt: skip
        for mismatch in mismatches:
            print(mismatch)
        failed = failed or bool(mismatches)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
