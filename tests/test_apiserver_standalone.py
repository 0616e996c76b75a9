"""`python -m tests.apiserver` (what `make serve` runs): starts, writes a kubeconfig that
kubectl uses, prints the export line, stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from scripts.k8s_tools import tool
from tests.conftest import REPO

TESTDATA = REPO / "tests" / "apiserver" / "testdata"


def test_standalone_server_serves_kubectl(tmp_path):
    kubeconfig = tmp_path / "out" / "kubeconfig"
    cmd = [sys.executable, "-m", "tests.apiserver", "--port", "0", "--crds", str(TESTDATA)]
    cmd += ["--kubeconfig", str(kubeconfig)]
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("export KUBECONFIG="):
                break
        assert lines[-1] == f"export KUBECONFIG={kubeconfig.resolve()}", lines
        assert any("widgets.test.aim.dev" in line for line in lines)
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        out = subprocess.run(
            [tool("kubectl"), "--cache-dir", str(tmp_path / "cache"), "get", "widgets"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert "No resources found" in out.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=20) == 0
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("the standalone server did not stop on SIGINT")


def test_standalone_reports_bad_crd(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: x}\nspec: {group: g}\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.apiserver",
            "--port",
            "0",
            "--crds",
            str(bad),
            "--kubeconfig",
            str(tmp_path / "kc"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert str(bad) in proc.stderr
    assert "spec.names.plural" in proc.stderr
