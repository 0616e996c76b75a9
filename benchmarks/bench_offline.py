"""``aim-matcher check`` at cluster scale: 1,000 profiles x 5,000 and 20,000 realistic nodes.

Run: ``.venv/bin/python -m benchmarks.bench_offline`` (about 12 minutes on 2 cores: 4 for the
"before" run, 2 to write the inputs; ``--quick`` about 2; ``--full`` adds the slow baselines at
20,000 nodes). Inputs come from ``benchmarks.realistic``: nodes as ``kubectl get nodes -o json``
and ``-o yaml`` write them (about 14 KB a GPU node), profiles as multi-document YAML. Each
figure is one process run as a user runs it: its wall time, its CPU time (telling on a shared
machine) and its peak RSS (``ru_maxrss`` of that child, from ``wait4``), medians over the runs
(their number is printed; the wall time's min..max beside it). Compared with:

- **before**: the code path this replaced, PyYAML's ``safe_load_all`` of the whole file (the
  issue measured 71 s and 1.7 GB at 5,000 nodes; one run, as it takes minutes);
- the baselines a user would write: the whole file through ``json.load``, or through
  ``yaml.load(..., Loader=CSafeLoader)`` (libyaml), then the same projection, evaluation and
  printing as the CLI (``offline.evaluate_all`` and ``print_statuses``).

Every run's table must be byte-identical, so no figure comes from doing less. Targets (issue
14): 1k x 5k from JSON < 3 s and < 300 MiB, from YAML < 15 s; 20k nodes linear (at most 4.5x
the 5k CPU time for 4x the nodes; CPU rather than wall, which varies on a shared machine).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.realistic import (
    KubectlList,
    realistic_nodes,
    realistic_profiles,
    write_yaml_documents,
)

REPO = Path(__file__).resolve().parent.parent
SEED = 20261127
PROFILES = 1_000
SIZES = (5_000, 20_000)
TARGET_JSON_S, TARGET_JSON_MIB, TARGET_YAML_S, TARGET_LINEAR = 3.0, 300.0, 15.0, 4.5


@dataclass
class Figure:
    label: str
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)
    output: str = ""

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def median_mib(self) -> float:
        return statistics.median(self.peak_mib)

    def line(self) -> str:
        spread = (
            f"({min(self.seconds):.2f}..{max(self.seconds):.2f})" if len(self.seconds) > 1 else ""
        )
        return (
            f"  {self.label:<44} {self.median_s:7.2f} s {spread:<15} "
            f"{statistics.median(self.cpu_seconds):7.2f} s {self.median_mib:7.0f} MiB  "
            f"n={len(self.seconds)}"
        )


def run_child(command: list[str], out: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS in MiB of one process (stdout into ``out``)."""
    with out.open("wb") as stdout:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stderr is not None
    errors = proc.stderr.read().decode()
    proc.stderr.close()
    if proc.returncode not in (0, 1) or errors:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{errors}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def measure(label: str, command: list[str], runs: int, work: Path) -> Figure:
    figure = Figure(label)
    for _ in range(runs):
        out = work / "out.txt"
        seconds, cpu, mib = run_child(command, out)
        figure.seconds.append(seconds)
        figure.cpu_seconds.append(cpu)
        figure.peak_mib.append(mib)
        figure.output = hashlib.sha256(out.read_bytes()).hexdigest()
    print(figure.line(), flush=True)
    return figure


def write_inputs(work: Path, largest: int) -> dict[str, Path]:
    """Nodes for every size in SIZES up to ``largest`` as kubectl's JSON and YAML (each a
    prefix of the largest: one generation pass), and the profiles."""
    sizes = [n for n in SIZES if n <= largest]
    paths = {f"{n}.{fmt}": work / f"nodes-{n}.{fmt}" for n in sizes for fmt in ("json", "yaml")}
    paths["profiles"] = work / "profiles.yaml"
    done = [work / f".written-{SEED}-{n}-{PROFILES}" for n in sizes]
    if all(marker.exists() for marker in done):
        return paths
    lists = {
        key: KubectlList(path, key.split(".")[1])
        for key, path in paths.items()
        if key != "profiles"
    }
    for index, node in enumerate(realistic_nodes(largest, seed=SEED)):
        texts = {fmt: KubectlList.item_text(node, fmt) for fmt in ("json", "yaml")}
        for n in sizes:
            if index < n:
                for fmt, text in texts.items():
                    lists[f"{n}.{fmt}"].add(text=text)
    for out in lists.values():
        out.close()
    write_yaml_documents(paths["profiles"], realistic_profiles(PROFILES, seed=SEED))
    for marker in done:
        marker.touch()
    return paths


def ours(nodes: Path, profiles: Path) -> list[str]:
    inputs = ["--nodes", str(nodes), "--profiles", str(profiles)]
    return [sys.executable, "-m", "matcher", "check", *inputs]


def baseline(loader: str, nodes: Path, profiles: Path) -> list[str]:
    module = [sys.executable, "-m", "benchmarks.bench_offline"]
    return [*module, "--baseline", loader, str(nodes), str(profiles)]


def run_baseline(loader: str, nodes_path: Path, profiles_path: Path) -> int:
    """What a user would write instead: load each file whole, then the CLI's own evaluation
    and printing, so that only the reading differs."""
    from matcher.api.models import parse_profile  # noqa: PLC0415
    from matcher.core.cluster import ClusterIndex  # noqa: PLC0415
    from matcher.core.config import MatcherConfig  # noqa: PLC0415
    from matcher.core.nodes import NodeError, node_view  # noqa: PLC0415
    from matcher.offline import Inputs, evaluate_all, print_statuses  # noqa: PLC0415

    def load_yaml(path: Path) -> list[Any]:
        with path.open() as f:
            if loader == "safe_load":  # the code path before this one
                return [d for d in yaml.safe_load_all(f) if d is not None]
            return [d for d in yaml.load_all(f, Loader=yaml.CSafeLoader) if d is not None]

    if loader == "json":
        with nodes_path.open() as f:
            listing = json.load(f)
        docs = [listing]
    else:
        docs = load_yaml(nodes_path)
    cluster = ClusterIndex()
    for doc in docs:
        for obj in doc["items"] if str(doc.get("kind", "")).endswith("List") else [doc]:
            with contextlib.suppress(NodeError):
                cluster.upsert(node_view(obj))
    del docs
    profiles = [(parse_profile(o), o) for o in load_yaml(profiles_path)]
    inputs = Inputs(cluster=cluster, config=MatcherConfig(), profiles=profiles)
    print_statuses(evaluate_all(inputs, _now()), "table", sys.stdout)
    return 0


def _now() -> Any:
    from datetime import UTC, datetime  # noqa: PLC0415

    return datetime.now(UTC)


#: (key, label, format, runs at 5,000, runs at 20,000 or 0 to skip there unless --full)
PLAN = [
    ("ours", "aim-matcher check", "json", 5, 3),
    ("ours", "aim-matcher check", "yaml", 3, 3),
    ("json", "baseline: json.load whole", "json", 3, 2),
    ("cyaml", "baseline: CSafeLoader whole", "yaml", 1, 0),
    ("safe_load", "before: safe_load_all whole", "yaml", 1, 0),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 nodes, one run, no before")
    parser.add_argument(
        "--full", action="store_true", help="also the slow baselines at 20,000 (~20 min, 10 GB)"
    )
    parser.add_argument("--workdir", help="keep the generated inputs here (reused if present)")
    parser.add_argument("--baseline", nargs=3, metavar=("LOADER", "NODES", "PROFILES"))
    args = parser.parse_args(argv)
    if args.baseline:
        loader, nodes, profiles = args.baseline
        return run_baseline(loader, Path(nodes), Path(profiles))

    sizes = SIZES[:1] if args.quick else SIZES
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        paths = write_inputs(work, max(sizes))
        print(
            f"inputs (seed {SEED}) ready in {time.perf_counter() - started:.0f} s: "
            + "; ".join(
                f"{n:,} nodes: JSON {paths[f'{n}.json'].stat().st_size / 2**20:.0f} MiB, "
                f"YAML {paths[f'{n}.yaml'].stat().st_size / 2**20:.0f} MiB"
                for n in sizes
            )
            + f"; {PROFILES:,} profiles"
        )
        print(f"{'':2}{'':<44} {'wall':>9} {'(min..max)':<15} {'CPU':>9} {'peak RSS':>11}")
        figures: dict[tuple[str, int, str], Figure] = {}
        for n in sizes:
            print(f"{PROFILES:,} profiles x {n:,} nodes")
            for key, label, fmt, runs_small, runs_large in PLAN:
                runs = runs_small if n == SIZES[0] else runs_large or (1 if args.full else 0)
                if args.quick:
                    runs = 1 if key in ("ours", "json") else 0
                if not runs:
                    continue
                nodes = paths[f"{n}.{fmt}"]
                command = (
                    ours(nodes, paths["profiles"])
                    if key == "ours"
                    else baseline(key, nodes, paths["profiles"])
                )
                figures[key, n, fmt] = measure(f"{label} ({fmt})", command, runs, work)
        return report(figures, sizes)


def report(figures: dict[tuple[str, int, str], Figure], sizes: tuple[int, ...]) -> int:
    for n in sizes:
        if len({f.output for (_, size, _), f in figures.items() if size == n}) != 1:
            print(f"the runs at {n:,} nodes printed different tables: unequal work, no figures")
            return 1
    print("\nevery run printed the same table as the others of its size")
    for (key, n, fmt), figure in figures.items():
        mine = figures.get(("ours", n, fmt))
        if key != "ours" and mine is not None:
            print(
                f"  {n:,} nodes from {fmt.upper()}: {mine.median_s:.2f} s, "
                f"{mine.median_mib:.0f} MiB against {figure.label.split(' (')[0]}: "
                f"{figure.median_s:.2f} s, {figure.median_mib:.0f} MiB: "
                f"{figure.median_s / mine.median_s:.1f}x faster, "
                f"{figure.median_mib / mine.median_mib:.1f}x less memory"
            )
    small = SIZES[0]
    json_small, yaml_small = figures["ours", small, "json"], figures["ours", small, "yaml"]
    checks = [
        (f"1k x 5k from JSON < {TARGET_JSON_S:.0f} s", json_small.median_s < TARGET_JSON_S),
        (f"1k x 5k from JSON < {TARGET_JSON_MIB:.0f} MiB", json_small.median_mib < TARGET_JSON_MIB),
        (f"1k x 5k from YAML < {TARGET_YAML_S:.0f} s", yaml_small.median_s < TARGET_YAML_S),
    ]
    if SIZES[-1] in sizes:
        for fmt in ("json", "yaml"):
            big, base = figures["ours", SIZES[-1], fmt], figures["ours", small, fmt]
            wall = big.median_s / base.median_s
            cpu = statistics.median(big.cpu_seconds) / statistics.median(base.cpu_seconds)
            # CPU time: on a shared machine the wall time of one run varies by +-20%.
            checks.append(
                (
                    f"20k/5k from {fmt.upper()}: CPU {cpu:.2f}x (wall {wall:.2f}x) "
                    f"<= {TARGET_LINEAR}x",
                    cpu <= TARGET_LINEAR,
                )
            )
    for text, passed in checks:
        print(f"  target {text:<52} {'OK' if passed else 'MISSED'}")
    return 0 if all(passed for _, passed in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
