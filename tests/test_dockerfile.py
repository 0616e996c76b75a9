"""The Dockerfile fits the project (no Docker engine here: scripts/check_dockerfile.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from scripts.check_dockerfile import (
    ROOT,
    check,
    dockerignore_excludes,
    final_user,
    parse_dockerfile,
    read_dockerignore,
)


def test_project_dockerfile_passes():
    assert check(ROOT) == []


def test_image_runs_as_a_numeric_non_root_user():
    uid, gid = final_user(ROOT) or (0, 0)
    assert uid > 0
    assert gid > 0


def test_parse_joins_continuations_and_drops_comments():
    text = (
        "# syntax=docker/dockerfile:1\n"
        "FROM python:3.11-slim AS build\n"
        "RUN a && \\\n"
        "    # a comment inside\n"
        "    b\n"
        "\n"
        "copy x /y\n"
    )
    instructions = parse_dockerfile(text)
    assert [(i.line, i.command, i.arguments) for i in instructions] == [
        (2, "FROM", "python:3.11-slim AS build"),
        (3, "RUN", "a && b"),
        (7, "COPY", "x /y"),
    ]


def test_unfinished_continuation_is_an_error():
    with pytest.raises(ValueError, match="continuation"):
        parse_dockerfile("FROM x\nRUN a \\\n")


def test_dockerignore_keeps_exactly_the_sources():
    patterns = read_dockerignore(ROOT)
    for kept in (
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "detector/cli.py",
        "matcher/controller/app.py",
    ):
        assert not dockerignore_excludes(patterns, kept), kept
    for dropped in (
        ".venv/bin/python",
        "tests/test_manifests.py",
        ".git/HEAD",
        "detector/__pycache__/cli.cpython-311.pyc",
        "docs/install.md",
    ):
        assert dockerignore_excludes(patterns, dropped), dropped


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the files the check reads, with the packages linked in."""
    for name in (
        "Dockerfile",
        ".dockerignore",
        "pyproject.toml",
        "uv.lock",
        "Makefile",
        "README.md",
    ):
        shutil.copy(ROOT / name, tmp_path / name)
    for package in ("detector", "matcher"):
        (tmp_path / package).symlink_to(ROOT / package)
    assert check(tmp_path) == []
    return tmp_path


def _edit(project: Path, old: str, new: str) -> None:
    path = project / "Dockerfile"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_missing_copy_source_is_reported(project):
    _edit(project, "COPY matcher ./matcher", "COPY matcher ./matcher\nCOPY plugins ./plugins")
    assert any("COPY source 'plugins' does not exist" in p for p in check(project))


def test_copy_excluded_by_dockerignore_is_reported(project):
    (project / ".dockerignore").write_text("*\n!pyproject.toml\n!uv.lock\n!detector/\n")
    problems = check(project)
    assert any("'matcher' is excluded by .dockerignore" in p for p in problems)
    assert any("'README.md' is excluded" in p for p in problems)


def test_console_script_without_smoke_test_or_module_is_reported(project):
    _edit(project, "&& /opt/aim/bin/aim-matcher --help >/dev/null", "")
    assert any("'aim-matcher'" in p and "smoke test" in p for p in check(project))
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            'aim-matcher = "matcher.cli:main"', 'aim-matcher = "matcher.cli:run_forever"'
        )
    )
    assert any("defines no function 'run_forever'" in p for p in check(project))


def test_root_user_and_single_stage_are_reported(project):
    _edit(project, "USER 65532:65532", "USER root")
    assert any("must be numeric" in p for p in check(project))
    _edit(project, "USER root", "USER 0:0")
    assert any("must not be root" in p for p in check(project))


def test_unlocked_install_and_uv_drift_are_reported(project):
    _edit(project, "ARG UV_VERSION=0.13.8", "ARG UV_VERSION=0.4.0")
    _edit(project, "uv sync --frozen --no-dev --no-editable", "uv sync --no-editable")
    problems = check(project)
    assert any("differs from the Makefile" in p for p in problems)
    assert any("without --frozen" in p for p in problems)
    assert any("without --no-dev" in p for p in problems)


def test_unknown_extra_and_old_python_are_reported(project):
    text = (project / "Dockerfile").read_text()
    (project / "Dockerfile").write_text(
        text.replace("--extra amdsmi", "--extra rocm").replace("python:3.11-slim", "python:3.10")
    )
    problems = check(project)
    assert any("--extra rocm is not an extra in pyproject.toml" in p for p in problems)
    assert any("does not satisfy requires-python" in p for p in problems)
