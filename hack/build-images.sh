#!/usr/bin/env bash
# `make image`: the project's image from the repository's Dockerfile and the in-chart
# PostgreSQL's image, built with buildah and no registry:
#   1. a Debian base made by `debootstrap --variant=minbase` (cached in buildah's storage),
#   2. the Python base (hack/images/python.Containerfile), passed to the Dockerfile as
#      PYTHON_IMAGE, and the project's image, tagged with the name the chart uses by default
#      (docker.io/library/guideline-ingest:<appVersion>),
#   3. PostgreSQL from Debian's package (hack/images/postgresql.Containerfile), tagged
#      docker.io/library/guideline-ingest-postgresql:<major>,
#   4. each image saved as a docker archive in the cache and, when the local node's
#      containerd runs, imported into it (hack/cluster.sh imports the archives at start).
# Build steps run with the host's network (no bridge, no iptables rule is left behind) and
# get the host's CA bundle mounted read-only (outgoing HTTPS may be re-signed by a local
# authority); it is never copied into a layer. Idempotent: buildah's layer cache makes a
# rebuild of unchanged sources take seconds.
#
#   hack/build-images.sh [build]   build, save, import into the running node
#   hack/build-images.sh names     print the image names
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

log() { echo "[image] $*" >&2; }
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$(now) - $1:.1f}')"; }

CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
BUILD_OPTS=(--layers --force-rm --network=host --isolation=oci --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)")
# Only the Dockerfile's pip reaches a registry over HTTPS (apt uses Debian's signed HTTP
# mirrors, and ca-certificates' own postinst must be free to write its bundle).
CA_MOUNT=()
[[ -s "$CA_BUNDLE" ]] && CA_MOUNT=(--volume "$CA_BUNDLE:$CA_BUNDLE:ro")

build_debian_base() {
  if buildah inspect --type image "$DEBIAN_BASE_IMAGE" >/dev/null 2>&1; then
    log "debian base $DEBIAN_BASE_IMAGE cached"
    return
  fi
  local t0 ctr mnt
  t0="$(now)"
  log "debootstrap --variant=minbase $DEBIAN_SUITE (first time only)"
  ctr="$(buildah from scratch)"
  mnt="$(buildah mount "$ctr")"
  debootstrap --variant=minbase "$DEBIAN_SUITE" "$mnt" http://deb.debian.org/debian >"$IMAGE_CACHE/debootstrap.log" 2>&1 \
    || { tail -n 20 "$IMAGE_CACHE/debootstrap.log" >&2; buildah rm "$ctr" >/dev/null; exit 1; }
  cat > "$mnt/etc/apt/sources.list" <<SOURCES
deb http://deb.debian.org/debian $DEBIAN_SUITE main
deb http://deb.debian.org/debian $DEBIAN_SUITE-updates main
deb http://deb.debian.org/debian-security $DEBIAN_SUITE-security main
SOURCES
  # Like Debian's own container images: no recommends, no caches, no documentation.
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$mnt/etc/apt/apt.conf.d/90container"
  printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n' > "$mnt/etc/dpkg/dpkg.cfg.d/90container"
  rm -rf "$mnt"/var/cache/apt/*.bin "$mnt"/var/lib/apt/lists/* "$mnt"/usr/share/doc/* "$mnt"/usr/share/man/*
  buildah unmount "$ctr" >/dev/null
  buildah config --env DEBIAN_FRONTEND=noninteractive --cmd /bin/bash "$ctr"
  buildah commit --rm -q "$ctr" "$DEBIAN_BASE_IMAGE" >/dev/null
  log "debian base built in $(elapsed "$t0")s"
}

bud() {
  local t0 name="$1"
  shift
  t0="$(now)"
  buildah bud "${BUILD_OPTS[@]}" --quiet "$@" >/dev/null
  log "$name built in $(elapsed "$t0")s"
}

# save IMAGE FILE: a docker archive of IMAGE in the cache, rewritten only when it changed.
save() {
  local image="$1" file="$IMAGE_CACHE/$2.tar" id
  id="$(buildah inspect --type image --format '{{.FromImageID}}' "$image")"
  [[ -s "$file" && "$(cat "$file.id" 2>/dev/null)" == "$id" ]] && return
  rm -f "$file.tmp"
  buildah push -q "$image" "docker-archive:$file.tmp:$image" >/dev/null
  mv "$file.tmp" "$file"
  echo "$id" > "$file.id"
  log "saved $image to $file"
}

# import_into_node: the archives into the local real node's containerd (namespace k8s.io,
# where the kubelet looks), when it runs (hack/cluster.sh imports them at start otherwise).
import_into_node() {
  local sock="$RUN_DIR/containerd/containerd.sock"
  [[ -S "$sock" ]] || { log "no local node running: images stay in $IMAGE_CACHE"; return; }
  bash "$HACK_DIR/cluster.sh" import-images
  log "in the node's containerd: $APP_IMAGE $POSTGRES_IMAGE"
}

cmd_build() {
  local t0
  t0="$(now)"
  command -v buildah >/dev/null || { log "buildah missing: run make system-deps"; exit 1; }
  mkdir -p "$IMAGE_CACHE"
  build_debian_base
  bud "python base $PYTHON_BASE_IMAGE" -f "$HACK_DIR/images/python.Containerfile" \
    --build-arg "DEBIAN_BASE=$DEBIAN_BASE_IMAGE" -t "$PYTHON_BASE_IMAGE" "$HACK_DIR/images"
  bud "$APP_IMAGE" "${CA_MOUNT[@]}" -f "$REPO_ROOT/Dockerfile" --build-arg "PYTHON_IMAGE=$PYTHON_BASE_IMAGE" \
    --build-arg "VERSION=$APP_VERSION" -t "$APP_IMAGE" "$REPO_ROOT"
  bud "$POSTGRES_IMAGE" -f "$HACK_DIR/images/postgresql.Containerfile" \
    --build-arg "DEBIAN_BASE=$DEBIAN_BASE_IMAGE" -t "$POSTGRES_IMAGE" "$HACK_DIR/images"
  save "$APP_IMAGE" app
  save "$POSTGRES_IMAGE" postgresql
  import_into_node
  log "done in $(elapsed "$t0")s: $APP_IMAGE, $POSTGRES_IMAGE"
}

case "${1:-build}" in
  build) cmd_build ;;
  names) echo "$APP_IMAGE"; echo "$POSTGRES_IMAGE" ;;
  *) echo "usage: $0 [build | names]" >&2; exit 2 ;;
esac
