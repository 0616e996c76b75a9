#!/usr/bin/env bash
# Reproduces the kubectl output shown in docs/status.md, with no cluster: the project's test
# API server, the detector run once on four fixture hosts (tests/hosttrees.py), the matcher
# controller, and the example profiles. Run from the repository root: bash docs/status-run.sh
# (add --update-docs to refresh the output shown in docs/status.md and docs/labels.md).
set -euo pipefail

OUT=${OUT:-out/status-run}
PY=.venv/bin/python
BIN=.venv/bin
# kubectl is the one `make tools` builds (tools/), never whatever is on PATH.
make --no-print-directory tools >/dev/null
PATH=$PWD/.tools/bin:$PATH
rm -rf "$OUT"
mkdir -p "$OUT"
export KUBECONFIG=$OUT/kubeconfig

"$PY" -m tests.apiserver --port 0 --crds daemonset/crds --kubeconfig "$KUBECONFIG" \
  >"$OUT/apiserver.log" 2>&1 &
pids=($!)
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$KUBECONFIG" ] && break; sleep 0.1; done

# Five nodes, as kubelets would register them: name, fixture host, allocatable.
node() {  # node NAME FIXTURE ALLOCATABLE_JSON
  kubectl create -f - >/dev/null <<YAML
apiVersion: v1
kind: Node
metadata:
  name: $1
  labels: {kubernetes.io/hostname: $1, kubernetes.io/os: linux}
YAML
  kubectl patch node "$1" --subresource=status --type=merge -p "{\"status\": {
    \"allocatable\": $3, \"capacity\": $3,
    \"conditions\": [{\"type\": \"Ready\", \"status\": \"True\", \"reason\": \"KubeletReady\"}]}}" \
    >/dev/null
  [ -d "$OUT/hosts/$2" ] || "$PY" -c 'import sys; from pathlib import Path; from tests.hosttrees import build_host
build_host(Path(sys.argv[1]), sys.argv[2])' "$OUT/hosts" "$2"
  NODE_NAME=$1 "$BIN/aim-detector" --once --host-root "$OUT/hosts/$2" --metrics-port 0 \
    --log-level warning
}
node mi300x-0     mi300x-8-spx-nps1 '{"amd.com/gpu": "8", "cpu": "190", "memory": "2063613Mi", "pods": "110"}'
node mi300x-cpx-0 mi300x-8-cpx-nps4 '{"amd.com/cpx_nps4": "64", "cpu": "190", "memory": "2063613Mi", "pods": "110"}'
node mi300x-cpx-1 mi300x-8-cpx-nps4 '{"amd.com/gpu": "64", "cpu": "190", "memory": "2063613Mi", "pods": "110"}'
node mi325x-0     mi325x-8          '{"amd.com/gpu": "8", "cpu": "126", "memory": "3095420Mi", "pods": "110"}'
node epyc-0       epyc-zen5-2s      '{"cpu": "126", "memory": "1031806Mi", "pods": "110"}'

# The matcher, with its ConfigMap from the install bundle.
namespace() {  # (the test API server speaks JSON and YAML, not the protobuf of `create namespace`)
  printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "$1" | kubectl apply -f - >/dev/null
}
namespace aim-system
kubectl apply -f daemonset/matcher/configmap.yaml >/dev/null
POD_NAMESPACE=aim-system POD_NAME=aim-matcher-0 "$BIN/aim-matcher" run --metrics-port 0 \
  --log-format text >"$OUT/matcher.log" 2>&1 &
pids+=($!)

namespace ml-team
namespace dev-team
kubectl apply -f examples/profiles/ >/dev/null

# Wait (up to 30 s) until every profile has a status other than Pending.
for _ in $(seq 300); do
  statuses=$(kubectl get aimclusterprofiles,aimprofiles -A --no-headers \
    -o custom-columns=STATUS:.status.status)
  if ! grep -q -E '^(<none>|Pending)$' <<<"$statuses"; then break; fi
  sleep 0.1
done

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
