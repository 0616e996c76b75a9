"""The Helm chart's generated files: ``python -m scripts.chart_files [--check]``.

The chart (``charts/aim-accelerator/``) and the kustomize bundle (``daemonset/``) install the
same objects, and each fact has one source. ``aim-matcher crds`` writes both CRD directories;
this script writes the rest of what the chart takes from elsewhere:

* ``values.schema.json``, from the annotated ``values.yaml`` (scripts/values_schema.py);
* ``files/node-fence-policy.yaml``: the node fence (daemonset/detector/namespace/
  node-fence-policy.yaml) as a YAML list of its two objects, which the template reads with
  ``fromYamlArray``;
* ``files/prometheusrule.yaml`` and ``files/dashboard.json``: the monitoring component's alert
  rules and dashboard (daemonset/components/monitoring/), read by templates/monitoring.yaml.

Helm reads only files inside the chart, so these are copies; ``--check`` writes nothing and
exits 1 naming each file that is missing or differs (``make generated-check``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from scripts.values_schema import generate, render

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "aim-accelerator"
FENCE = ROOT / "daemonset" / "detector" / "namespace" / "node-fence-policy.yaml"
MONITORING = ROOT / "daemonset" / "components" / "monitoring"


def _header(source: Path) -> str:
    return (
        f"# Copied from {source.relative_to(ROOT)} by `make generated` (scripts/chart_files.py)."
        " Do not edit.\n"
    )


def _fence(chart: Path) -> str:
    objects = [doc for doc in yaml.safe_load_all(FENCE.read_text()) if doc]
    return _header(FENCE) + yaml.safe_dump(objects, sort_keys=False, width=100)


def _rule(chart: Path) -> str:
    source = MONITORING / "prometheusrule.yaml"
    return _header(source) + source.read_text()


def _dashboard(chart: Path) -> str:
    return (MONITORING / "dashboard.json").read_text()


def _schema(chart: Path) -> str:
    return render(generate(chart / "values.yaml"))


#: Chart-relative path -> what it must hold.
FILES: dict[str, Callable[[Path], str]] = {
    "values.schema.json": _schema,
    "files/node-fence-policy.yaml": _fence,
    "files/prometheusrule.yaml": _rule,
    "files/dashboard.json": _dashboard,
}


def expected(chart: Path = CHART) -> dict[Path, str]:
    return {chart / name: make(chart) for name, make in FILES.items()}


def stale(chart: Path = CHART) -> list[str]:
    """Messages naming each missing or out-of-date file (empty when all are current)."""
    problems = []
    for path, text in expected(chart).items():
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        if not path.exists():
            problems.append(f"{where}: missing (run: make generated)")
        elif path.read_text() != text:
            problems.append(f"{where}: stale, differs from its source (run: make generated)")
    return problems


def write(chart: Path = CHART) -> list[Path]:
    written = []
    for path, text in expected(chart).items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    for path in write():
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
