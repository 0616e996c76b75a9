"""Lay out fixture host trees: ``python -m scripts.host_trees DIR NAME...`` (no NAME: list them).

Each NAME (one of ``tests/hosttrees.py``'s ``HOSTS``) becomes ``DIR/NAME`` (replaced if it
exists): the ``sys`` and ``proc`` files of that machine as the kernel lays them out, for
``aim-detector --host-root``.
The docs use it (README's live loop, docs/labels.md) to run the detector on known hardware.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tests.hosttrees import HOSTS, build_host


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: python -m scripts.host_trees DIR NAME...\nhosts: " + " ".join(HOSTS))
        return 0 if not args else 2
    root, names = Path(args[0]), args[1:]
    unknown = [name for name in names if name not in HOSTS]
    if unknown:
        print(f"unknown host {unknown[0]!r}; hosts: {' '.join(HOSTS)}", file=sys.stderr)
        return 2
    for name in names:
        shutil.rmtree(root / name, ignore_errors=True)
        print(build_host(root, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
