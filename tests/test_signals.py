"""A SIGTERM the kernel hands to one of an agent's other threads still stops it.

Linux may deliver a process's signal to any thread that does not block it; CPython runs the
Python handler only in the main thread, when that thread next runs bytecode. These tests send
the signal to a thread that is not the main one (``tgkill``), as the kernel sometimes does with
the kubelet's SIGTERM, and check that each program stops at once: the waits in the main thread
are sliced (aimkit/signals.py).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aimkit.kube import ApiError, connect
from benchmarks.matcher_process import ready
from tests.apiserver import ApiServer
from tests.controller_support import wait_for
from tests.controlplane.process import free_port
from tests.hosttrees import build_host

REPO = Path(__file__).resolve().parent.parent
CRDS = REPO / "daemonset" / "crds"
_LIBC = ctypes.CDLL(None, use_errno=True)


def _signal_another_thread(pid: int, sig: int) -> int:
    """Send ``sig`` to one thread of ``pid`` that is not its main thread; that thread's id."""
    tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    assert tids, "the process runs no thread besides the main one"
    if _LIBC.tgkill(pid, tids[0], sig) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")
    return tids[0]


def _lease_holder(kubeconfig: Path) -> str | None:
    """The matcher's Lease holder ("" when released), None while there is no Lease."""
    api = connect(kubeconfig)
    try:
        lease = api.get("/apis/coordination.k8s.io/v1/namespaces/default/leases/aim-matcher")
    except ApiError as err:
        if err.status == 404:
            return None
        raise
    finally:
        api.close()
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


WAIT_SCRIPT = textwrap.dedent(
    """
    import signal, sys, threading, time
    from aimkit import signals

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def other():
        time.sleep(0.2)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # to this thread only
        time.sleep(60)

    threading.Thread(target=other, daemon=True).start()
    if sys.argv[1] == "sliced":
        signals.wait(done)
    else:
        done.wait()
    print("stopped")
    """
)


@pytest.mark.parametrize(("how", "stops"), [("sliced", True), ("plain", False)])
def test_a_sliced_wait_sees_a_signal_another_thread_received(how, stops):
    proc = subprocess.Popen(
        [sys.executable, "-c", WAIT_SCRIPT, how], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        out, _ = proc.communicate(timeout=5)
        assert stops, "a plain Event.wait() woke up: the hazard this module guards against is gone"
        assert out.strip() == "stopped"
    except subprocess.TimeoutExpired:
        # The plain wait: the handler never ran, as in the hung stops this fixes.
        assert not stops, "the sliced wait did not see the signal"
    finally:
        proc.kill()
        proc.communicate()


def test_the_matcher_stops_and_releases_its_lease_on_a_sigterm_to_another_thread(tmp_path):
    with ApiServer(crd_paths=[CRDS]) as srv:
        kubeconfig = srv.write_kubeconfig(tmp_path / "kubeconfig")
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "matcher", "run", "--kubeconfig", str(kubeconfig),
             "--health-addr", f"127.0.0.1:{port}", "--lease-namespace", "default",
             "--config-map-namespace", "default", "--identity", "m1"],
            cwd=REPO, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_for(lambda: ready(port), timeout=60, what="the matcher ready")
            wait_for(lambda: _lease_holder(kubeconfig) == "m1", what="its Lease held")
            _signal_another_thread(proc.pid, signal.SIGTERM)
            started = time.monotonic()
            _, stderr = proc.communicate(timeout=10)
            stopped_in = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, stderr
        messages = [json.loads(line) for line in stderr.splitlines()]
        assert {"stopping", "stopped"} <= {m["msg"] for m in messages}
        assert stopped_in < 10
        assert _lease_holder(kubeconfig) == "", "the Lease is released for the next leader"


def test_the_detector_stops_on_a_sigterm_to_another_thread(tmp_path):
    host = build_host(tmp_path / "hosts", "mi300x-8-cpx-nps4")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIM_DETECTOR_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "detector", "--mode", "nfd",
         "--nfd-features-dir", str(tmp_path / "features.d"), "--host-root", str(host),
         "--gpu-backend", "sysfs", "--interval", "60", "--metrics-address", "127.0.0.1",
         "--metrics-port", str(port)],
        cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: ready(port), timeout=60, what="the detector's first cycle")
        # Its main thread now waits out the 60 s interval.
        _signal_another_thread(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "signal=SIGTERM" in stderr
    assert 'msg="agent stopped"' in stderr
