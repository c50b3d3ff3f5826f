#!/usr/bin/env bash
# Builds promtool (Prometheus' rule checker; the suite runs `promtool check rules` and
# `promtool test rules` on the chart's PrometheusRule) from its Go module into the cache next
# to the control plane's binaries. Idempotent: a cached binary is not rebuilt. Prints the
# binary's path on stdout.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROMTOOL_BIN="$GI_CACHE_ROOT/promtool-$PROMETHEUS_VERSION/bin"
if [[ ! -x "$PROMTOOL_BIN/promtool" ]]; then
  echo "[build-promtool] building promtool $PROMETHEUS_VERSION (Go module proxy)" >&2
  mkdir -p "$PROMTOOL_BIN" "$GOMODCACHE" "$GOCACHE"
  # Prometheus 3.x is published as Go module v0.3<minor>.<patch>: v0.316.0 is v3.16.0.
  release="3.$((10#${PROMETHEUS_VERSION:4:2})).${PROMETHEUS_VERSION##*.}"
  # remove_all_sd leaves out the cloud service-discovery plugins (AWS, Azure, GCE, ... and
  # their SDKs), which rule checks never use: most of a cold build's time.
  CGO_ENABLED=0 GOBIN="$PROMTOOL_BIN" go install -trimpath -tags remove_all_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
fi
echo "$PROMTOOL_BIN/promtool"
