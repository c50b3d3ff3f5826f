#!/usr/bin/env bash
# Builds the real Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl), etcd and helm from their Go modules into a versioned cache
# outside the checkout. Idempotent: a binary already in the cache is not rebuilt.
#   hack/build-k8s.sh [kubernetes] [etcd] [helm] [node]   (default: the first three)
# `node` builds the real node's kubelet and kube-proxy from the same module and version
# (hack/cluster.sh builds them on a real node's first start).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mkdir -p "$K8S_BIN" "$GOMODCACHE" "$GOCACHE"
KUBE_STAGING_VERSION="v0.${KUBE_VERSION#v1.}"   # v1.37.2 -> v0.37.2
KUBE_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
KUBE_NODE_CMDS=(kubelet kube-proxy)

log() { echo "[build-k8s] $*" >&2; }

build_kubernetes() { kube_build "${KUBE_CMDS[@]}"; }
build_node() { kube_build "${KUBE_NODE_CMDS[@]}"; }

# kube_build CMD...: the commands of k8s.io/kubernetes that are not in the cache yet.
kube_build() {
  local missing=() c t0
  for c in "$@"; do [[ -x "$K8S_BIN/$c" ]] || missing+=("$c"); done
  [[ ${#missing[@]} -eq 0 ]] && { log "$* $KUBE_VERSION cached"; return; }
  local src="$K8S_CACHE/src/kubernetes"
  mkdir -p "$src"
  cd "$src"
  log "resolving k8s.io/kubernetes@$KUBE_VERSION"
  local upstream_mod
  upstream_mod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  local go_directive
  go_directive="$(awk '$1=="go"{print $2; exit}' "$upstream_mod")"
  {
    echo "module localbuild/kubernetes"
    echo
    echo "go $go_directive"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    # Every staging module the release requires at v0.0.0 is published as v0.<minor>.<patch>.
    awk '/ v0\.0\.0$/ && $1 ~ /^k8s\.io\// {print "replace " $1 " => " $1 " '"$KUBE_STAGING_VERSION"'"}' "$upstream_mod" | sort -u
  } > go.mod
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    for c in "${KUBE_CMDS[@]}" "${KUBE_NODE_CMDS[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
    echo ")"
  } > tools.go
  log "go mod tidy (downloads modules through the Go module proxy)"
  go mod tidy
  local build_date ldflags
  build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1"
    ldflags+=" -X $pkg.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done
  for c in "${missing[@]}"; do
    log "building $c"
    t0="$(date +%s)"
    CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$K8S_BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c"
    mv "$K8S_BIN/$c.tmp" "$K8S_BIN/$c"
    log "built $c in $(($(date +%s) - t0))s"
  done
}

build_etcd() {
  [[ -x "$K8S_BIN/etcd" ]] && { log "etcd $ETCD_VERSION cached"; return; }
  local src="$K8S_CACHE/src/etcd"
  mkdir -p "$src"
  cd "$src"
  cat > go.mod <<MOD
module localbuild/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
  go mod tidy
  log "building etcd"
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$K8S_BIN/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$K8S_BIN/etcd.tmp" "$K8S_BIN/etcd"
}

build_helm() {
  [[ -x "$K8S_BIN/helm" ]] && { log "helm $HELM_VERSION cached"; return; }
  log "building helm"
  CGO_ENABLED=0 GOBIN="$K8S_BIN" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

targets=("${@:-kubernetes etcd helm}")
for t in ${targets[*]}; do "build_$t"; done
log "binaries in $K8S_BIN"
