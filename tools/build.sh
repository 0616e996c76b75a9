#!/usr/bin/env bash
# Builds the test suite's Kubernetes tools from their pinned Go modules into
# .tools/<name>-<version>/ and links them from .tools/bin/. The version is read from the
# module's go.mod (the one place it is pinned), so a bump builds anew and an existing build is
# reused: running this again is a no-op.
#
#   tools/build.sh k8s    -> kube-apiserver, kubectl   (tools/k8s, k8s.io/kubernetes)
#   tools/build.sh etcd   -> etcd                      (tools/etcd, go.etcd.io/etcd/server/v3)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false"

version_of() {  # version_of <tools dir> <module path>
  awk -v m="$2" '$1 == m { print $2; exit }' "tools/$1/go.mod"
}

link() {  # link <dir> <binary...>
  mkdir -p .tools/bin
  for b in "${@:2}"; do ln -sfn "../$1/$b" ".tools/bin/$b"; done
}

build() {  # build <name> <version> <ldflags> <package=binary...>
  local name=$1 version=$2 ldflags=$3 dir=".tools/$1-$2" missing=()
  shift 3
  for spec in "$@"; do [ -x "$dir/${spec#*=}" ] || missing+=("$spec"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "building $name $version (${missing[*]##*=}) into $dir: a few minutes the first time" >&2
    mkdir -p "$dir.partial"
    for spec in "${missing[@]}"; do
      (cd "tools/$name" && go build -trimpath -ldflags "$ldflags" \
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
  *) echo "usage: $0 k8s|etcd" >&2; exit 2 ;;
esac
