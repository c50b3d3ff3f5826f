#!/usr/bin/env bash
# Builds vegeta (the open-loop HTTP load generator of `make bench`'s burst section) from its
# Go module into the cache next to the control plane's binaries. Idempotent: a cached
# binary is not rebuilt. Prints the binary's path on stdout.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VEGETA_BIN="$GI_CACHE_ROOT/vegeta-$VEGETA_VERSION/bin"
if [[ ! -x "$VEGETA_BIN/vegeta" ]]; then
  echo "[build-vegeta] building vegeta $VEGETA_VERSION (Go module proxy)" >&2
  mkdir -p "$VEGETA_BIN" "$GOMODCACHE" "$GOCACHE"
  CGO_ENABLED=0 GOBIN="$VEGETA_BIN" go install -trimpath -ldflags "-s -w" \
    "github.com/tsenart/vegeta/v12@$VEGETA_VERSION"
fi
echo "$VEGETA_BIN/vegeta"
