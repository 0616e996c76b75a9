"""Run every benchmark in turn and print its figures (``make bench``).

``python -m benchmarks`` runs them all; ``python -m benchmarks probe matching`` runs some.
Each one is also runnable alone as ``python -m benchmarks.bench_<name>``, which is where the
larger sizes are (``--full``). ``make bench`` runs this with bytecode compiled as in the image.
"""

from __future__ import annotations

import importlib
import sys
import time

#: In the order a reader meets the components: detector, the agents' processes and server, API
#: server, matcher core, offline check, kubectl aim, controller (on the test server, then on
#: kube-apiserver), the controller under churn, the admission webhook.
BENCHMARKS = (
    "probe",
    "detector_loop",
    "agents",
    "http",
    "apiserver",
    "matching",
    "offline",
    "plugin",
    "controller",
    "controller_real",
    "churn",
    "admission",
)


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        return 2
    failed = []
    for name in names:
        print(f"\n##### benchmarks.bench_{name}", flush=True)
        started = time.perf_counter()
        module = importlib.import_module(f"benchmarks.bench_{name}")
        # Each benchmark parses its own argv; give it none so that it runs its defaults.
        saved, sys.argv = sys.argv, [f"bench_{name}"]
        try:
            rc = module.main()
        finally:
            sys.argv = saved
        if rc not in (None, 0):
            failed.append(name)
        print(f"##### {name}: {time.perf_counter() - started:.1f} s", flush=True)
    if failed:
        print(f"\nmissed a target or failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
