"""Check the Dockerfile against the project without Docker: ``python -m scripts.check_dockerfile``.

There is no container engine in CI, so this checks what a build would trip over or silently
get wrong:

- every ``COPY`` source exists and is not excluded by ``.dockerignore``;
- every console script in ``pyproject.toml`` is started by the build's smoke test, and its
  ``module:function`` target is a file the image copies and defines that function;
- every package ``[tool.setuptools.packages.find]`` includes, and the readme the build backend
  reads, are copied;
- the build is multi-stage, installs the locked dependencies (``uv sync --frozen --no-dev``)
  with the same uv version as the Makefile, and ``WITH_AMDSMI`` installs an extra that exists
  in both ``pyproject.toml`` and ``uv.lock``;
- the base image's Python satisfies ``requires-python``; the final stage runs as a numeric,
  non-root user.

And its provenance (issue 12):

- every base image is pinned by digest (``@sha256:`` and 64 hex digits), with a comment above
  that names the tag it was resolved from;
- the build tool (uv) is installed by pip with ``--require-hashes`` and ``--only-binary=:all:``,
  from sha256 build arguments that are real sha256 digests;
- the final stage carries the OCI labels ``org.opencontainers.image.source``, ``revision`` and
  ``version`` from build arguments; ``VERSION`` defaults to ``pyproject.toml``'s version and the
  build refuses an empty ``REVISION`` or ``SOURCE``;
- the final (runtime) stage installs nothing (no pip, uv or package manager run), copies only
  the virtual environment from the build stage, and removes pip, failing if it can still be
  imported.

Exit status 1 and one line per problem when something is off.
"""

from __future__ import annotations

import ast
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Instruction:
    line: int  # 1-based line where the instruction starts
    command: str  # upper-case: FROM, RUN, COPY, ...
    arguments: str  # the rest, continuation lines joined


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order, with ``\\`` continuations joined and comments dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(part for part in pending if part)
        command, _, arguments = joined.partition(" ")
        instructions.append(Instruction(start, command.upper(), arguments.strip()))
        pending = []
    if pending:
        raise ValueError(f"Dockerfile:{start}: instruction ends with a line continuation")
    return instructions


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: ``*`` and ``?`` stay within one path element, ``**`` spans many."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(out) + "$")


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether the build context leaves ``path`` out (last matching pattern wins; a pattern
    that matches a parent directory matches everything below it, as in Docker)."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = raw[1:] if negated else raw
        pattern = pattern.strip().strip("/")
        if pattern.startswith("./"):
            pattern = pattern[2:]
        regex = _dockerignore_regex(pattern)
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def read_dockerignore(root: Path) -> list[str]:
    path = root / ".dockerignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _copy_sources(inst: Instruction) -> tuple[list[str], bool]:
    """(sources, from_other_stage) of a COPY/ADD instruction."""
    words = shlex.split(inst.arguments)
    flags = [w for w in words if w.startswith("--")]
    rest = [w for w in words if not w.startswith("--")]
    from_stage = any(f.startswith("--from=") for f in flags)
    return rest[:-1], from_stage


def _uv_version_in_makefile(root: Path) -> str | None:
    makefile = root / "Makefile"
    if not makefile.exists():
        return None
    match = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", makefile.read_text(), re.MULTILINE)
    return match.group(1) if match else None


def _arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for inst in instructions:
        if inst.command == "ARG" and "=" in inst.arguments:
            name, _, value = inst.arguments.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
    return defaults


def _defines_function(path: Path, name: str) -> bool:
    tree = ast.parse(path.read_text(), filename=str(path))
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
        for node in tree.body
    )


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _python_version(image: str) -> tuple[int, int] | None:
    match = re.match(r"^(?:docker\.io/)?(?:library/)?python:(\d+)\.(\d+)", image)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _check_console_scripts(
    root: Path, scripts: dict[str, str], copied: set[str], run_text: str
) -> list[str]:
    problems = []
    for name, target in sorted(scripts.items()):
        if not re.search(rf"(^|[\s/]){re.escape(name)}\s+--help", run_text):
            problems.append(
                f"Dockerfile: console script {name!r} (pyproject [project.scripts]) is never "
                "started by the build's smoke test (RUN ... {name} --help)"
            )
        module, _, function = target.partition(":")
        if module.split(".")[0] not in copied:
            problems.append(
                f"Dockerfile: console script {name!r} -> {target}: package "
                f"{module.split('.')[0]!r} is not copied into the image"
            )
        module_file = _module_file(root, module)
        if module_file is None:
            problems.append(
                f"pyproject.toml: console script {name!r} -> {target}: no module {module!r}"
            )
        elif function and not _defines_function(module_file, function):
            problems.append(
                f"pyproject.toml: console script {name!r} -> {target}: "
                f"{module_file.relative_to(root)} defines no function {function!r}"
            )
    return problems


def _check_copies(root: Path, instructions: list[Instruction], ignore: list[str]) -> list[str]:
    problems = []
    for inst in instructions:
        if inst.command not in {"COPY", "ADD"}:
            continue
        sources, from_stage = _copy_sources(inst)
        if from_stage:
            continue
        for source in sources:
            if not (root / source).exists():
                problems.append(f"Dockerfile:{inst.line}: COPY source {source!r} does not exist")
            elif dockerignore_excludes(ignore, source):
                problems.append(
                    f"Dockerfile:{inst.line}: COPY source {source!r} is excluded by .dockerignore"
                )
    return problems


def _check_stages(instructions: list[Instruction]) -> list[str]:
    problems = []
    froms = [i for i in instructions if i.command == "FROM"]
    if len(froms) < 2:
        problems.append("Dockerfile: expected a multi-stage build (a build stage and a runtime)")
    final_stage = instructions[instructions.index(froms[-1]) :] if froms else []
    if not any(i.command == "COPY" and "--from=" in i.arguments for i in final_stage):
        problems.append("Dockerfile: the final stage copies nothing from the build stage")
    users = [i for i in final_stage if i.command == "USER"]
    if not users:
        problems.append("Dockerfile: the final stage sets no USER (it would run as root)")
    else:
        user = users[-1].arguments.split(":")
        if not all(part.isdigit() for part in user):
            problems.append(
                f"Dockerfile:{users[-1].line}: USER {users[-1].arguments} must be numeric "
                "(uid:gid) so that the kubelet can enforce runAsNonRoot"
            )
        elif int(user[0]) == 0:
            problems.append(f"Dockerfile:{users[-1].line}: USER must not be root")
    return problems


_SHA256 = re.compile(r"[0-9a-f]{64}")
_PINNED = re.compile(r"^(?P<ref>[^@\s]+)@sha256:(?P<digest>[0-9a-f]{64})$")
_INSTALLERS = (
    "pip install",
    "uv ",
    "uv\t",
    "apt-get",
    "apt ",
    "apk ",
    "dnf ",
    "yum ",
    "curl ",
    "wget ",
)


def _stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions grouped by build stage (each list starts with its FROM)."""
    stages: list[list[Instruction]] = []
    for inst in instructions:
        if inst.command == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(inst)
    return stages


def _expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), value)


def _comment_above(text: str, line: int) -> str:
    """The comment block right above (1-based) ``line``."""
    lines = text.splitlines()[: line - 1]
    block: list[str] = []
    for raw in reversed(lines):
        if not raw.strip().startswith("#"):
            break
        block.append(raw.strip().lstrip("#").strip())
    return " ".join(reversed(block))


def _check_base_pinned(text: str, instructions: list[Instruction]) -> list[str]:
    problems = []
    args = _arg_defaults(instructions)
    stage_names: set[str] = set()
    for inst in instructions:
        if inst.command != "FROM":
            continue
        words = inst.arguments.split()
        image = _expand(words[0], args)
        if image not in stage_names:
            pinned = _PINNED.match(image)
            if not pinned:
                problems.append(
                    f"Dockerfile:{inst.line}: FROM {words[0]} ({image}) is not pinned by digest "
                    "(name:tag@sha256:<64 hex digits>)"
                )
        if len(words) >= 3 and words[1].upper() == "AS":
            stage_names.add(words[2])
    for inst in instructions:
        name, _, value = inst.arguments.partition("=")
        if inst.command != "ARG" or "=" not in inst.arguments:
            continue
        pinned = _PINNED.match(value.strip().strip('"'))
        if pinned and f"tag {pinned.group('ref')}" not in _comment_above(text, inst.line):
            problems.append(
                f"Dockerfile:{inst.line}: ARG {name.strip()} pins a digest; the comment above "
                f"must name the tag it was resolved from (`tag {pinned.group('ref')}`)"
            )
    return problems


def _check_build_tool_pinned(instructions: list[Instruction]) -> list[str]:
    problems = []
    args = _arg_defaults(instructions)
    hashes = {k: v for k, v in args.items() if k.startswith("UV_SHA256")}
    if not hashes:
        problems.append("Dockerfile: no UV_SHA256_* build argument pins uv's wheels by hash")
    for name, value in sorted(hashes.items()):
        if not _SHA256.fullmatch(value):
            problems.append(f"Dockerfile: {name}={value!r} is not a sha256 digest")
    installs = [i for i in instructions if i.command == "RUN" and "pip install" in i.arguments]
    if not installs:
        problems.append("Dockerfile: uv is not installed with pip (by hash)")
    for inst in installs:
        for flag in ("--require-hashes", "--only-binary=:all:"):
            if flag not in inst.arguments:
                problems.append(f"Dockerfile:{inst.line}: `pip install` without {flag}")
        for name in hashes:
            if name not in inst.arguments:
                problems.append(f"Dockerfile:{inst.line}: `pip install` does not use {name}")
    return problems


def _check_provenance_labels(instructions: list[Instruction], version: str | None) -> list[str]:
    problems = []
    stages = _stages(instructions)
    final = stages[-1] if stages else []
    labels: dict[str, str] = {}
    for inst in final:
        if inst.command == "LABEL":
            for word in shlex.split(inst.arguments):
                key, _, value = word.partition("=")
                labels[key] = value
    for key, arg in (("source", "SOURCE"), ("revision", "REVISION"), ("version", "VERSION")):
        label = f"org.opencontainers.image.{key}"
        if label not in labels:
            problems.append(f"Dockerfile: the final stage has no LABEL {label}")
        elif not re.fullmatch(rf"\$\{{?{arg}\}}?", labels[label]):
            problems.append(f"Dockerfile: LABEL {label} must come from the build argument {arg}")
    final_args = _arg_defaults(final)
    if version and final_args.get("VERSION") != version:
        problems.append(
            f"Dockerfile: ARG VERSION={final_args.get('VERSION')} differs from pyproject.toml's "
            f"version {version}"
        )
    run_text = "\n".join(i.arguments for i in instructions if i.command == "RUN")
    for arg in ("REVISION", "SOURCE"):
        if f'-z "${arg}"' not in run_text:
            problems.append(f"Dockerfile: the build does not refuse an empty {arg}")
    return problems


def _check_runtime_stage(instructions: list[Instruction]) -> list[str]:
    problems: list[str] = []
    stages = _stages(instructions)
    if len(stages) < 2:
        return problems  # _check_stages reports it
    final = stages[-1]
    for inst in final:
        if inst.command == "RUN" and any(tool in inst.arguments for tool in _INSTALLERS):
            problems.append(
                f"Dockerfile:{inst.line}: the runtime stage installs something "
                "(only the build stage may)"
            )
        if inst.command in {"COPY", "ADD"}:
            sources, from_stage = _copy_sources(inst)
            if not from_stage or sources != ["/opt/aim"]:
                problems.append(
                    f"Dockerfile:{inst.line}: the runtime stage may copy only the virtual "
                    "environment (/opt/aim) from the build stage"
                )
    run_text = "\n".join(i.arguments for i in final if i.command == "RUN")
    if "pip uninstall" not in run_text or 'python -c "import pip"' not in run_text:
        problems.append(
            "Dockerfile: the runtime stage must remove pip and fail the build if it can still "
            'be imported (python -c "import pip")'
        )
    return problems


def final_user(root: Path = ROOT) -> tuple[int, int] | None:
    """The numeric ``(uid, gid)`` the image runs as, or None when not numeric."""
    instructions = parse_dockerfile((root / "Dockerfile").read_text())
    users = [i for i in instructions if i.command == "USER"]
    if not users:
        return None
    uid, _, gid = users[-1].arguments.partition(":")
    if not uid.isdigit() or not (gid or uid).isdigit():
        return None
    return int(uid), int(gid or uid)


def check(root: Path = ROOT) -> list[str]:
    """Every problem found, one line each; empty when the Dockerfile fits the project."""
    dockerfile = root / "Dockerfile"
    if not dockerfile.exists():
        return ["Dockerfile: missing"]
    instructions = parse_dockerfile(dockerfile.read_text())
    pyproject: dict[str, Any] = tomllib.loads((root / "pyproject.toml").read_text())
    project = pyproject.get("project", {})
    ignore = read_dockerignore(root)
    problems = _check_copies(root, instructions, ignore)
    problems += _check_stages(instructions)

    copied = {
        src.rstrip("/")
        for inst in instructions
        if inst.command == "COPY"
        for src in _copy_sources(inst)[0]
        if not _copy_sources(inst)[1]
    }
    run_text = "\n".join(i.arguments for i in instructions if i.command == "RUN")
    problems += _check_console_scripts(root, project.get("scripts", {}), copied, run_text)

    find = pyproject.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {})
    for include in find.get("include", []):
        package = include.rstrip("*").rstrip(".")
        if package not in copied:
            problems.append(f"Dockerfile: package {package!r} (setuptools include) is not copied")
    for needed in ("pyproject.toml", "uv.lock", project.get("readme")):
        if needed and needed not in copied:
            problems.append(f"Dockerfile: {needed} is needed by the build but not copied")

    syncs = [i for i in instructions if i.command == "RUN" and "uv sync" in i.arguments]
    if not syncs:
        problems.append("Dockerfile: dependencies are not installed with `uv sync` from uv.lock")
    for inst in syncs:
        for flag in ("--frozen", "--no-dev"):
            if flag not in inst.arguments:
                problems.append(f"Dockerfile:{inst.line}: `uv sync` without {flag}")

    args = _arg_defaults(instructions)
    make_uv = _uv_version_in_makefile(root)
    if make_uv and args.get("UV_VERSION") != make_uv:
        problems.append(
            f"Dockerfile: UV_VERSION={args.get('UV_VERSION')} differs from the Makefile's "
            f"UV_VERSION={make_uv}"
        )
    if "WITH_AMDSMI" not in args:
        problems.append("Dockerfile: no WITH_AMDSMI build argument")
    lock = (root / "uv.lock").read_text() if (root / "uv.lock").exists() else ""
    for extra in sorted(set(re.findall(r"--extra[ =]([A-Za-z0-9_.-]+)", run_text))):
        if extra not in project.get("optional-dependencies", {}):
            problems.append(f"Dockerfile: --extra {extra} is not an extra in pyproject.toml")
        if not re.search(rf"marker = \"extra == '{re.escape(extra)}'\"", lock):
            problems.append(f"Dockerfile: --extra {extra} is not in uv.lock (re-lock)")

    text = dockerfile.read_text()
    problems += _check_base_pinned(text, instructions)
    problems += _check_build_tool_pinned(instructions)
    problems += _check_provenance_labels(instructions, project.get("version"))
    problems += _check_runtime_stage(instructions)

    base = args.get("BASE_IMAGE") or next(
        (i.arguments.split()[0] for i in instructions if i.command == "FROM"), ""
    )
    version = _python_version(base)
    required = re.match(r">=\s*(\d+)\.(\d+)", project.get("requires-python", ""))
    if version is None:
        problems.append(f"Dockerfile: base image {base!r} is not a python:X.Y image")
    elif required and version < (int(required.group(1)), int(required.group(2))):
        problems.append(
            f"Dockerfile: base image Python {version[0]}.{version[1]} does not satisfy "
            f"requires-python {project['requires-python']}"
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    root = Path(argv[0]).resolve() if argv else ROOT
    problems = check(root)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("Dockerfile: OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
