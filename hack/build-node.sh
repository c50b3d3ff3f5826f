#!/usr/bin/env bash
# Builds the real local node's own pieces (hack/cluster.sh with GUIDELINE_NODE=real), each
# into a cache keyed by its version, outside the checkout; kubelet and kube-proxy come from
# hack/build-k8s.sh (target node), next to the control plane:
#   containerd  containerd 2.x, its containerd-shim-runc-v2 and ctr, from the Go module
#               github.com/containerd/containerd/v2 (runc is Debian's)
#   coredns     CoreDNS from its Go module with only the plugins the node uses
#   kube-router kube-router from its Go module github.com/cloudnativelabs/kube-router/v2; the
#               node runs only its network-policy controller (iptables + Debian's ipset)
#   pause       the sandbox image: the kubernetes module's build/pause/linux/pause.c compiled
#               statically, packed with buildah from scratch, saved as a docker archive
# CNI plugins are Debian's containernetworking-plugins (hack/install-system-deps.sh).
# Idempotent: what is in the cache is not rebuilt. Each build logs how long it took.
#
#   hack/build-node.sh [containerd] [coredns] [kube-router] [pause]   (default: all four)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

log() { echo "[build-node] $*" >&2; }
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$(now) - $1:.1f}')"; }
mkdir -p "$GOMODCACHE" "$GOCACHE"

# go_build_module DIR MODULE VERSION: a throwaway main module in DIR requiring MODULE, whose
# go directive is the upstream one (what `go mod tidy` resolves is then what upstream tests).
go_module_dir() {
  local dir="$1" module="$2" version="$3" upstream_mod go_directive
  mkdir -p "$dir"
  upstream_mod="$(cd "$dir" && go mod download -json "$module@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  go_directive="$(awk '$1=="go"{print $2; exit}' "$upstream_mod")"
  printf 'module localbuild/%s\n\ngo %s\n\nrequire %s %s\n' "$(basename "$dir")" "$go_directive" "$module" "$version" > "$dir/go.mod"
}

build_containerd() {
  local c missing=()
  for c in containerd containerd-shim-runc-v2 ctr; do [[ -x "$CONTAINERD_BIN/$c" ]] || missing+=("$c"); done
  ((${#missing[@]})) || { log "containerd $CONTAINERD_VERSION cached"; return; }
  local t0 src="$GI_CACHE_ROOT/containerd-$CONTAINERD_VERSION/src" mod=github.com/containerd/containerd/v2
  t0="$(now)"
  mkdir -p "$CONTAINERD_BIN"
  go_module_dir "$src" "$mod" "$CONTAINERD_VERSION"
  printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "%s/cmd/containerd"\n\t_ "%s/cmd/containerd-shim-runc-v2"\n\t_ "%s/cmd/ctr"\n)\n' "$mod" "$mod" "$mod" > "$src/tools.go"
  (cd "$src" && go mod tidy)
  # No cgo (static binaries, no libseccomp/btrfs headers needed); the btrfs, devmapper and
  # zfs snapshotters are left out: the node uses overlayfs.
  local ldflags="-s -w -X $mod/version.Version=$CONTAINERD_VERSION -X $mod/version.Revision=module"
  for c in "${missing[@]}"; do
    log "building $c $CONTAINERD_VERSION"
    (cd "$src" && CGO_ENABLED=0 go build -trimpath -tags "no_btrfs no_devmapper no_zfs" \
      -ldflags "$ldflags" -o "$CONTAINERD_BIN/$c.tmp" "$mod/cmd/$c")
    mv "$CONTAINERD_BIN/$c.tmp" "$CONTAINERD_BIN/$c"
  done
  log "containerd $CONTAINERD_VERSION built in $(elapsed "$t0")s"
}

# CoreDNS' own list of plugins, in its execution order, is plugin.cfg; the node needs these.
COREDNS_PLUGINS=(reload bind ready health errors log loadbalance cache kubernetes loop forward)

build_coredns() {
  [[ -x "$COREDNS_BIN/coredns" ]] && { log "coredns $COREDNS_VERSION cached"; return; }
  local t0 src="$GI_CACHE_ROOT/coredns-$COREDNS_VERSION/src" mod=github.com/coredns/coredns
  t0="$(now)"
  mkdir -p "$COREDNS_BIN"
  go_module_dir "$src" "$mod" "$COREDNS_VERSION"
  local cfg p directives=() imports=""
  cfg="$(cd "$src" && go mod download -json "$mod@$COREDNS_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/plugin.cfg"
  # Keep plugin.cfg's order: it is the order a query passes the plugins.
  while IFS=: read -r p _; do
    [[ " ${COREDNS_PLUGINS[*]} " == *" $p "* ]] || continue
    directives+=("\"$p\"")
    imports+="	_ \"$mod/plugin/$p\""$'\n'
  done < <(grep -v '^#' "$cfg")
  ((${#directives[@]} == ${#COREDNS_PLUGINS[@]})) || { log "plugin.cfg lacks one of: ${COREDNS_PLUGINS[*]}"; exit 1; }
  local IFS=,
  cat > "$src/main.go" <<GO
// A CoreDNS with only the plugins the local node uses (CoreDNS' documented way to choose
// plugins at compile time: its own main with dnsserver.Directives set).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

$imports)

func init() { dnsserver.Directives = []string{${directives[*]}} }

func main() { coremain.Run() }
GO
  unset IFS
  (cd "$src" && go mod tidy)
  log "building coredns $COREDNS_VERSION (plugins: ${COREDNS_PLUGINS[*]})"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$COREDNS_BIN/coredns.tmp" .)
  mv "$COREDNS_BIN/coredns.tmp" "$COREDNS_BIN/coredns"
  log "coredns $COREDNS_VERSION built in $(elapsed "$t0")s"
}

build_kube-router() {
  [[ -x "$KUBE_ROUTER_BIN/kube-router" ]] && { log "kube-router $KUBE_ROUTER_VERSION cached"; return; }
  local t0 src="$GI_CACHE_ROOT/kube-router-$KUBE_ROUTER_VERSION/src" mod=github.com/cloudnativelabs/kube-router/v2
  t0="$(now)"
  mkdir -p "$KUBE_ROUTER_BIN"
  go_module_dir "$src" "$mod" "$KUBE_ROUTER_VERSION"
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s/cmd/kube-router"\n' "$mod" > "$src/tools.go"
  (cd "$src" && go mod tidy)
  log "building kube-router $KUBE_ROUTER_VERSION"
  # Upstream's flags (its Makefile): static, the version injected.
  (cd "$src" && CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X $mod/pkg/version.Version=$KUBE_ROUTER_VERSION -X $mod/pkg/version.BuildDate=module" \
    -o "$KUBE_ROUTER_BIN/kube-router.tmp" "$mod/cmd/kube-router")
  mv "$KUBE_ROUTER_BIN/kube-router.tmp" "$KUBE_ROUTER_BIN/kube-router"
  log "kube-router $KUBE_ROUTER_VERSION built in $(elapsed "$t0")s"
}

build_pause() {
  local file="$IMAGE_CACHE/pause.tar"
  [[ -s "$file" ]] && { log "pause image $PAUSE_IMAGE cached"; return; }
  local t0 dir src ctr
  t0="$(now)"
  dir="$GI_CACHE_ROOT/pause-$PAUSE_VERSION"
  mkdir -p "$dir" "$IMAGE_CACHE"
  src="$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/build/pause/linux/pause.c"
  # The flags of the kubernetes build (build/pause/Makefile).
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-local" -o "$dir/pause" "$src"
  strip "$dir/pause"
  ctr="$(buildah from scratch)"
  buildah copy -q "$ctr" "$dir/pause" /pause >/dev/null
  buildah config --entrypoint '["/pause"]' --user 65535:65535 --os linux --arch amd64 "$ctr"
  buildah commit --rm -q "$ctr" "$PAUSE_IMAGE" >/dev/null
  buildah push -q "$PAUSE_IMAGE" "docker-archive:$file.tmp:$PAUSE_IMAGE" >/dev/null
  mv "$file.tmp" "$file"
  log "pause image $PAUSE_IMAGE built in $(elapsed "$t0")s ($file)"
}

targets=("${@:-containerd coredns kube-router pause}")
for t in ${targets[*]}; do "build_$t"; done
