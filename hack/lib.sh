#!/usr/bin/env bash
# Shared paths for the hack/ scripts: versions, the build cache outside the checkout, .local/.
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"
GI_CACHE_ROOT="${GUIDELINE_INGEST_CACHE:-$HOME/.cache/guideline-ingest}"
K8S_CACHE="$GI_CACHE_ROOT/k8s-$KUBE_VERSION"
K8S_BIN="$K8S_CACHE/bin"
# GUIDELINE_LOCAL_DIR runs a second, separate local cluster (e.g. to measure a cold start).
LOCAL_DIR="${GUIDELINE_LOCAL_DIR:-$REPO_ROOT/.local}"
RUN_DIR="$LOCAL_DIR/run"
LOG_DIR="$LOCAL_DIR/log"
KUBECONFIG_PATH="$LOCAL_DIR/kubeconfig"
export GOMODCACHE="$K8S_CACHE/gomodcache"
export GOCACHE="$K8S_CACHE/gocache"
export GOFLAGS="-mod=mod -buildvcs=false"
# Kubernetes 1.37 needs Go >= 1.26; an older Go (e.g. Debian's) fetches that toolchain
# through the Go module proxy.
if [[ -z "${GOTOOLCHAIN:-}" ]] && command -v go >/dev/null; then
  go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
  if ((go_minor < 26)); then export GOTOOLCHAIN=go1.26.8; else export GOTOOLCHAIN=local; fi
fi
# The images of `make image` (hack/build-images.sh) and the local node's binaries.
# The project's one version, read from pyproject.toml like the Makefile's VERSION (the
# chart's appVersion equals it: tests/test_version.py).
APP_VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO_ROOT/pyproject.toml")"
APP_IMAGE="docker.io/library/guideline-ingest:$APP_VERSION"
POSTGRES_IMAGE="docker.io/library/guideline-ingest-postgresql:$POSTGRESQL_MAJOR"
DEBIAN_BASE_IMAGE="localhost/guideline-ingest-debian:$DEBIAN_SUITE"
PYTHON_BASE_IMAGE="localhost/guideline-ingest-python:$DEBIAN_SUITE"
IMAGE_CACHE="$GI_CACHE_ROOT/images"
# The real node's own pieces (hack/build-node.sh), each in a cache keyed by its version.
CONTAINERD_BIN="$GI_CACHE_ROOT/containerd-$CONTAINERD_VERSION/bin"
COREDNS_BIN="$GI_CACHE_ROOT/coredns-$COREDNS_VERSION/bin"
KUBE_ROUTER_BIN="$GI_CACHE_ROOT/kube-router-$KUBE_ROUTER_VERSION/bin"
PAUSE_IMAGE="localhost/guideline-ingest-pause:$PAUSE_VERSION"
# Debian's containernetworking-plugins.
CNI_BIN_DIR=/usr/lib/cni
