#!/usr/bin/env bash
# Reproduces the kubectl output shown in docs/status.md, with no cluster: the docs' example
# cluster (docs/cluster-up.sh: the project's test API server, the detector run once on fixture
# hosts of tests/hosttrees.py, the matcher controller, and the example profiles). Run from the
# repository root: bash docs/status-run.sh (add --update-docs to refresh the output shown in
# docs/status.md and docs/labels.md).
set -euo pipefail

OUT=${OUT:-out/status-run}
# The cluster: test API server, five detector-labelled nodes, the matcher, the example profiles.
OUT=$OUT bash docs/cluster-up.sh
trap 'kill $(cat "$OUT/pids") 2>/dev/null || true' EXIT
PATH=$PWD/.tools/bin:$PATH
export KUBECONFIG=$OUT/kubeconfig

run() { echo "\$ $*"; "$@"; echo; }
{
  run kubectl get nodes -L feature.node.kubernetes.io/aim-accelerator.MI300X \
    -L feature.node.kubernetes.io/aim-accelerator.MI325X \
    -L feature.node.kubernetes.io/aim-accelerator.EPYC_ZEN5 \
    -L feature.node.kubernetes.io/aim-accelerator.EPYC_ZEN4
  run kubectl get node mi300x-cpx-0 -o jsonpath='{.metadata.labels}{"\n"}{.metadata.annotations}{"\n"}'
  run kubectl get aimclusterprofiles
  run kubectl get aimprofiles -A
  run kubectl get aimclusterprofiles --field-selector spec.aimId=qwen/qwen3-32b -o wide
  run kubectl get aimclusterprofile qwen-qwen3-32b-mi300x-lat-fp8 -o yaml
  run kubectl describe aimclusterprofile llama-3-1-405b-mi325x-lat-fp8
  run kubectl get aimclusterprofile qwen-qwen3-32b-mi355x-lat-fp4 \
    -o jsonpath='{.status.conditions[0].message}{"\n"}'
  run kubectl get aimclusterprofile qwen-qwen3-32b-mi300x-cpx-nps4-seed \
    -o jsonpath='{.status.conditions[0].message}{"\n"}'
  run kubectl get aimclusterprofile qwen-qwen3-32b-mi300x-cpx-nps4-partitions \
    -o jsonpath='{.status.resolvedNodeAffinity}{"\n"}{.status.conditions[0].message}{"\n"}'
} | tee "$OUT/output.txt"

# A change the matcher follows: cordon the only node that fits the MI300X latency profile.
wait_for() {  # wait_for PROFILE STATUS
  for _ in $(seq 300); do
    [ "$(kubectl get aimclusterprofile "$1" -o jsonpath='{.status.status}')" = "$2" ] && return
    sleep 0.1
  done
}
{
  run kubectl cordon mi300x-0
  wait_for qwen-qwen3-32b-mi300x-lat-fp8 NotAvailable
  run kubectl get aimclusterprofile qwen-qwen3-32b-mi300x-lat-fp8
  run kubectl get aimclusterprofile qwen-qwen3-32b-mi300x-lat-fp8 \
    -o jsonpath='{.status.conditions[0].message}{"\n"}'
  run kubectl uncordon mi300x-0
  wait_for qwen-qwen3-32b-mi300x-lat-fp8 Ready
  run kubectl get events -n default --field-selector involvedObject.name=qwen-qwen3-32b-mi300x-lat-fp8
} | tee -a "$OUT/output.txt"

# With --update-docs, refresh the console blocks of docs/status.md and docs/labels.md whose
# command appears in this run's output (matched with quotes ignored; the doc keeps its quoting).
if [ "${1:-}" = "--update-docs" ]; then
  "$PY" - "$OUT/output.txt" docs/status.md docs/labels.md <<'PY'
import re
import sys

def key(command: str) -> str:
    return command.replace("'", "").strip()

def elide(lines: list[str]) -> list[str]:
    out, skipping = [], False
    for line in lines:
        if line.strip() == "kubectl.kubernetes.io/last-applied-configuration: |":
            out.append(line + "   # (value elided here)")
            skipping = True
        elif not (skipping and line.startswith("      {")):
            out.append(line)
            skipping = False
    return out

runs = re.split(r"\n(?=\$ )", open(sys.argv[1]).read().strip())
fresh = {key(b.splitlines()[0]): elide(b.rstrip().splitlines()[1:]) for b in runs}

def refresh(match: re.Match[str]) -> str:
    command = match.group(1)
    body = fresh.get(key(command))
    if body is None:
        return match.group(0)
    return "```console\n" + command + "\n" + "\n".join(body) + "\n```"

for doc in sys.argv[2:]:
    text = open(doc).read()
    updated = re.sub(r"```console\n(\$ [^\n]*)\n.*?\n```", refresh, text, flags=re.S)
    open(doc, "w").write(updated)
    print(f"{doc}: {'updated' if updated != text else 'unchanged'}")
PY
fi
