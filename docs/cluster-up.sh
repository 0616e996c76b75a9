#!/usr/bin/env bash
# Starts the docs' example cluster, with no Kubernetes: the project's test API server, five nodes
# as kubelets register them, each labelled by the detector run once on a fixture host tree
# (tests/hosttrees.py), the matcher (leader-elected, its ConfigMap from the install bundle, in
# aim-system), and the example profiles, then waits until every profile has a status. The API
# server and the matcher keep running in the background: their process ids are in $OUT/pids,
# their logs in $OUT/*.log, the kubeconfig is $OUT/kubeconfig.
#
# Used by docs/status-run.sh (the output in docs/status.md) and by the docs check
# (scripts/docs_check.py), which runs the troubleshooting page's commands against it. Run from
# the repository root: OUT=out/cluster bash docs/cluster-up.sh; then
#   export KUBECONFIG=$PWD/out/cluster/kubeconfig
#   kill $(cat out/cluster/pids)     # to stop it
set -euo pipefail

OUT=${OUT:-out/cluster}
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
echo $! >"$OUT/pids"
started=0
trap '[ "$started" = 1 ] || kill $(cat "$OUT/pids") 2>/dev/null || true' EXIT
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
  NODE_NAME=$1 "$BIN/aim-detector" --once --host-root "$OUT/hosts/$2" --gpu-backend sysfs \
    --metrics-port 0 \
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
echo $! >>"$OUT/pids"

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
started=1
