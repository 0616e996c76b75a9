#!/usr/bin/env bash
# Builds the test suite's Kubernetes tools from their pinned Go modules into
# .tools/<name>-<version>/ and links them from .tools/bin/. The version is read from the
# module's go.mod (the one place it is pinned), so a bump builds anew and an existing build is
# reused: running this again is a no-op.
#
#   tools/build.sh k8s    -> kube-apiserver, kubectl   (tools/k8s, k8s.io/kubernetes)
#   tools/build.sh etcd   -> etcd                      (tools/etcd, go.etcd.io/etcd/server/v3)
#   tools/build.sh helm   -> helm                      (tools/helm, helm.sh/helm/v3)
#   tools/build.sh promtool -> promtool                (tools/prometheus, github.com/prometheus/prometheus)
#   tools/build.sh prometheus-operator -> .tools/prometheus-operator-crds/ (the PrometheusRule and
#                            PodMonitor CRDs, copied out of tools/prometheus-operator's module)
#   tools/build.sh cert-manager -> .tools/cert-manager-crds/ (the Issuer and Certificate CRDs,
#                            copied out of tools/cert-manager's module)
#   tools/build.sh latency-proxy -> latency-proxy (tools/latency-proxy, our own, standard library
#                            only: the write delay benchmarks put in front of kube-apiserver)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false"

version_of() {  # version_of <tools dir> <module path>
  awk -v m="$2" '$1 == "require" { $1 = ""; $0 = $0 } $1 == m { print $2; exit }' "tools/$1/go.mod"
}

link() {  # link <dir> <binary...>
  mkdir -p .tools/bin
  for b in "${@:2}"; do ln -sfn "../$1/$b" ".tools/bin/$b"; done
}

build() {  # build <name> <version> <ldflags> <package=binary...>  ($tags: go build -tags)
  local name=$1 version=$2 ldflags=$3 dir=".tools/$1-$2" missing=()
  shift 3
  for spec in "$@"; do [ -x "$dir/${spec#*=}" ] || missing+=("$spec"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "building $name $version (${missing[*]##*=}) into $dir: a few minutes the first time" >&2
    mkdir -p "$dir.partial"
    for spec in "${missing[@]}"; do
      (cd "tools/$name" && go build -trimpath -tags "${tags:-}" -ldflags "$ldflags" \
        -o "$root/$dir.partial/${spec#*=}" "${spec%=*}")
    done
    mkdir -p "$dir"
    mv "$dir.partial"/* "$dir"/ && rmdir "$dir.partial"
  fi
  local bins=()
  for spec in "$@"; do bins+=("${spec#*=}"); done
  link "$name-$version" "${bins[@]}"
}

case "${1:-}" in
  k8s)
    v=$(version_of k8s k8s.io/kubernetes)
    minor=${v#v1.}; minor=${minor%%.*}
    # Without these the binaries call themselves v0.0.0-master and kubectl warns of skew.
    ld="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
      ld+=" -X $pkg.gitTreeState=clean"
    done
    build k8s "$v" "$ld" \
      k8s.io/kubernetes/cmd/kube-apiserver=kube-apiserver k8s.io/kubernetes/cmd/kubectl=kubectl
    ;;
  etcd)
    v=$(version_of etcd go.etcd.io/etcd/server/v3)
    build etcd "$v" "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${v}" \
      go.etcd.io/etcd/server/v3=etcd
    ;;
  helm)
    v=$(version_of helm helm.sh/helm/v3)
    # As helm's own Makefile: its version, and the Kubernetes release its default capabilities
    # and deprecation checks assume, taken from the client-go it is built with (v0.X -> 1.X).
    kv=$(version_of helm k8s.io/client-go)
    kminor=${kv#v0.}; kminor=${kminor%%.*}
    ld="-s -w -X helm.sh/helm/v3/internal/version.version=$v"
    ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
      ld+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kminor"
    done
    build helm "$v" "$ld" helm.sh/helm/v3/cmd/helm=helm
    ;;
  promtool)
    # The Go module's v0.3XX.Y is Prometheus v3.XX.Y. remove_all_sd leaves out the service
    # discovery plugins (cloud SDKs), which rule checks and rule unit tests never use.
    v=$(version_of prometheus github.com/prometheus/prometheus)
    release=${v#v0.}; release="v${release:0:1}.$((10#${release:1:2})).${release#*.}"
    tags=remove_all_sd
    build prometheus "$v" "-s -w -X github.com/prometheus/common/version.Version=${release#v}" \
      github.com/prometheus/prometheus/cmd/promtool=promtool
    ;;
  prometheus-operator)
    # Not compiled: the module is downloaded (verified against tools/prometheus-operator/go.sum)
    # and the CRDs the monitoring objects need are copied out of it.
    v=$(version_of prometheus-operator github.com/prometheus-operator/prometheus-operator)
    dir=".tools/prometheus-operator-$v"
    crds=(monitoring.coreos.com_prometheusrules.yaml monitoring.coreos.com_podmonitors.yaml)
    if [ ! -f "$dir/${crds[-1]}" ]; then
      src=$(cd tools/prometheus-operator && go mod download -json \
        github.com/prometheus-operator/prometheus-operator | awk -F'"' '$2 == "Dir" { print $4 }')
      mkdir -p "$dir.partial"
      for f in "${crds[@]}"; do install -m 0644 "$src/example/prometheus-operator-crd/$f" "$dir.partial/"; done
      rm -rf "$dir" && mv "$dir.partial" "$dir"
    fi
    ln -sfn "prometheus-operator-$v" .tools/prometheus-operator-crds
    ;;
  cert-manager)
    # As prometheus-operator: downloaded (verified against tools/cert-manager/go.sum), not
    # compiled; the two CRDs the webhook's cert-manager component uses are copied out.
    v=$(version_of cert-manager github.com/cert-manager/cert-manager)
    dir=".tools/cert-manager-$v"
    crds=(cert-manager.io_issuers.yaml cert-manager.io_certificates.yaml)
    if [ ! -f "$dir/${crds[-1]}" ]; then
      src=$(cd tools/cert-manager && go mod download -json \
        github.com/cert-manager/cert-manager | awk -F'"' '$2 == "Dir" { print $4 }')
      mkdir -p "$dir.partial"
      for f in "${crds[@]}"; do install -m 0644 "$src/deploy/crds/$f" "$dir.partial/"; done
      rm -rf "$dir" && mv "$dir.partial" "$dir"
    fi
    ln -sfn "cert-manager-$v" .tools/cert-manager-crds
    ;;
  latency-proxy)
    # Our own source: its version is its content, so an edit builds anew.
    v=$(cat tools/latency-proxy/go.mod tools/latency-proxy/*.go | sha256sum | cut -c1-12)
    build latency-proxy "$v" "-s -w" .=latency-proxy
    ;;
  *) echo "usage: $0 k8s|etcd|helm|promtool|prometheus-operator|cert-manager|latency-proxy" >&2; exit 2 ;;
esac
