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
    for package in ("aimkit", "detector", "matcher"):
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


# --- Provenance (issue 12) -------------------------------------------------------------------

BASE_DIGEST = "9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7"


def test_base_is_pinned_by_digest_with_its_tag_in_a_comment():
    text = (ROOT / "Dockerfile").read_text()
    assert f"ARG BASE_IMAGE=python:3.11-slim@sha256:{BASE_DIGEST}\n" in text
    assert "# tag python:3.11-slim (" in text
    froms = [i for i in parse_dockerfile(text) if i.command == "FROM"]
    assert [i.arguments for i in froms] == ["${BASE_IMAGE} AS build", "${BASE_IMAGE} AS runtime"]


def test_a_floating_base_is_reported(project):
    _edit(project, f"python:3.11-slim@sha256:{BASE_DIGEST}", "python:3.11-slim")
    assert any("is not pinned by digest" in p for p in check(project))


def test_a_digest_without_its_tag_in_a_comment_is_reported(project):
    _edit(project, "# tag python:3.11-slim (", "# (")
    assert any("must name the tag it was resolved from" in p for p in check(project))


def test_another_unpinned_stage_is_reported(project):
    _edit(project, "FROM ${BASE_IMAGE} AS runtime", "FROM debian:trixie-slim AS runtime")
    assert any("FROM debian:trixie-slim" in p and "not pinned" in p for p in check(project))


def test_uv_must_be_installed_by_hash(project):
    _edit(project, "--require-hashes --only-binary=:all: ", "")
    problems = check(project)
    assert any("without --require-hashes" in p for p in problems)
    assert any("without --only-binary=:all:" in p for p in problems)


def test_a_malformed_uv_hash_is_reported(project):
    _edit(project, "ARG UV_SHA256_ARM64=0b3e8b1a", "ARG UV_SHA256_ARM64=0b3e8b1")
    assert any("UV_SHA256_ARM64" in p and "not a sha256 digest" in p for p in check(project))


def test_provenance_labels_are_required(project):
    _edit(project, '      org.opencontainers.image.revision="${REVISION}" \\\n', "")
    _edit(project, "ARG VERSION=0.1.0", "ARG VERSION=0.0.9")
    _edit(project, '[ -z "$SOURCE" ]', '[ -z "" ]')
    problems = check(project)
    assert "Dockerfile: the final stage has no LABEL org.opencontainers.image.revision" in problems
    assert any(
        "ARG VERSION=0.0.9 differs from pyproject.toml's version 0.1.0" in p for p in problems
    )
    assert "Dockerfile: the build does not refuse an empty SOURCE" in problems


def test_a_runtime_stage_that_installs_or_keeps_pip_is_reported(project):
    _edit(
        project,
        "COPY --from=build /opt/aim /opt/aim",
        "COPY --from=build /opt/aim /opt/aim\nCOPY --from=build /src /src\n"
        "RUN pip install --no-cache-dir debugpy",
    )
    _edit(project, "RUN python -m pip uninstall --yes pip setuptools wheel \\", "RUN true \\")
    problems = check(project)
    assert any("the runtime stage installs something" in p for p in problems)
    assert any("may copy only the virtual environment" in p for p in problems)
    assert any("must remove pip" in p for p in problems)
