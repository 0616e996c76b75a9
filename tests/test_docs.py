"""The docs stay true: every shell block marked runnable (scripts/docs_check.py) runs, against the
project's test API server where it talks to a cluster, and prints what the page shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.docs_check import (
    MARKER,
    blocks,
    default_files,
    matches,
    normalise,
    run_file,
    update,
)

ROOT = Path(__file__).resolve().parent.parent
#: Pages that must have runnable blocks (README's live loop, the troubleshooting diagnostics,
#: the label examples); every other page's runnable blocks run too.
MUST_RUN = ("README.md", "docs/troubleshooting.md", "docs/labels.md")


def _runnable_files() -> list[Path]:
    return [path for path in default_files() if blocks(path.read_text())]


def test_the_pages_that_must_be_checked_are():
    checked = {str(path.relative_to(ROOT)) for path in _runnable_files()}
    assert set(MUST_RUN) <= checked


@pytest.mark.slow
@pytest.mark.parametrize("page", [str(p.relative_to(ROOT)) for p in _runnable_files()])
def test_runnable_blocks_print_what_the_page_shows(page):
    mismatches, _ = run_file(ROOT / page)
    assert not mismatches, "\n".join(str(m) for m in mismatches) + (
        "\n(refresh with: .venv/bin/python -m scripts.docs_check --update " + page + ")"
    )


def test_blocks_are_parsed_with_continuations_fixtures_and_indentation():
    text = "\n".join([
        "intro",
        "<!-- runnable -->",
        "```console",
        "$ echo one \\",
        "    two",
        "one two",
        "$ python -c 'print(1)",
        "print(2)'",
        "1",
        "2",
        "```",
        "- a list item:",
        "  <!-- runnable: cluster -->",
        "  ```console",
        "  $ kubectl get nodes",
        "  NAME   STATUS",
        "    indented output",
        "  ```",
        "```console",
        "$ not runnable",
        "```",
    ])  # fmt: skip
    first, second = blocks(text)
    assert first.fixture is None
    assert [(c.text, c.expected, c.line) for c in first.commands] == [
        ("echo one \\\n    two", ["one two"], 4),
        ("python -c 'print(1)\nprint(2)'", ["1", "2"], 7),
    ]
    assert second.fixture == "cluster"
    assert second.indent == 2
    assert [(c.text, c.expected) for c in second.commands] == [
        ("kubectl get nodes", ["NAME   STATUS", "  indented output"])
    ]
    assert MARKER.match("<!-- runnable: cluster -->")
    with pytest.raises(ValueError, match="unknown fixture 'kind'"):
        blocks("<!-- runnable: kind -->\n```console\n$ true\n```")


def test_output_is_normalised_for_what_changes_between_runs():
    assert normalise("mi300x-0       Ready    <none>   2m19s   ") == "mi300x-0 Ready <none> <age>"
    assert normalise("aim-matcher-0 2026-11-29T21:47:15.206276+00:00") == "aim-matcher-0 <time>"
    assert normalise("pod/aim-matcher-7c9f8d6b5d-x2k9p 1/1") == "pod/aim-matcher-<suffix> 1/1"
    assert normalise("aim-detector-x2k9p") == "aim-detector-<suffix>"
    # Values that only look like ages in passing stay: "60s" is a token, "a60s" is not.
    assert normalise("interval 60s, sha a60s") == "interval <age>, sha a60s"
    assert normalise("qwen-qwen3-32b-mi300x-cpx-nps4-seed") == "qwen-qwen3-32b-mi300x-cpx-nps4-seed"


def test_expected_output_matches_with_ellipses():
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "...", "d"], ["a", "d"])
    assert not matches(["a", "...", "d"], ["a", "b"])
    assert matches(["time=... level=info msg=x"], ["time=2026 level=info msg=x"])
    assert not matches(["time=... level=info msg=x"], ["time=2026 level=warning msg=x"])
    assert not matches([], ["unexpected"])
    assert not matches(["expected"], [])


def test_a_page_whose_output_changed_fails_and_update_rewrites_it(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- runnable -->\n```console\n$ export GREETING=hello\n$ echo $GREETING world\n"
        "hello there\n$ ls out\n```\n\n  <!-- runnable -->\n  ```console\n"
        "  $ printf 'x\\n  y\\n'\n  x\n    y\n  ```\n"
    )
    mismatches, outputs = run_file(page)
    # State carries from one command to the next; out/ is the scratch checkout's own (empty).
    assert [(m.command.text, m.got) for m in mismatches] == [
        ("echo $GREETING world", ["hello world"])
    ]
    assert "expected:\n    hello there\n  got:\n    hello world\n" in str(mismatches[0])
    assert update(page, outputs)
    assert "$ echo $GREETING world\nhello world\n$ ls out\n```" in page.read_text()
    assert "  $ printf 'x\\n  y\\n'\n  x\n    y\n  ```" in page.read_text()
    assert run_file(page)[0] == []
