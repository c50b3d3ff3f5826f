#!/usr/bin/env bash
# `make helm-demo`: the chart README's kind walkthrough, run here on the real local node.
#   1. the local cluster with the real node (GUIDELINE_NODE=real hack/cluster.sh up),
#   2. the images (hack/build-images.sh: imported into the node's containerd),
#   3. namespace guideline-ingest enforcing the `restricted` Pod Security Standard, a
#      hostPath PersistentVolume for the in-chart PostgreSQL (no dynamic provisioner here),
#   4. `helm upgrade --install` (CRDs off: `hack/cluster.sh up` applies crds/) with the in-chart PostgreSQL (Debian's PostgreSQL 15 image of
#      `make image`), NetworkPolicies on (enforced by the node's kube-router; the runner's
#      egress to the API server narrowed to its address and port) and an API key whose hash goes into the chart's
#      Secret (the key itself: .local/helm-demo/api-key),
#   5. waits for the rollout, port-forwards the API Service to 127.0.0.1:8080 (left running;
#      `make cluster-down` stops it), submits examples/hand-hygiene.md and prints the job as
#      `make demo` does.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
NAMESPACE=guideline-ingest
RELEASE=guideline-ingest
DEMO_DIR="$LOCAL_DIR/helm-demo"
PG_VOLUME="$DEMO_DIR/postgresql-data"
LOCAL_PORT="${GUIDELINE_HELM_DEMO_PORT:-8080}"
PF_PID="$RUN_DIR/helm-demo-port-forward.pid"
KUBECTL="$K8S_BIN/kubectl"
HELM="$K8S_BIN/helm"

say() { echo "[helm-demo] $*"; }
kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$(now) - $1:.1f}')"; }

t0="$(now)"
GUIDELINE_NODE=real bash "$HACK_DIR/cluster.sh" up >/dev/null
say "cluster with the real node up ($(elapsed "$t0")s)"
bash "$HACK_DIR/build-images.sh"

mkdir -p "$DEMO_DIR"
kc create namespace "$NAMESPACE" --dry-run=client -o yaml | kc apply -f - >/dev/null
kc label --overwrite namespace "$NAMESPACE" pod-security.kubernetes.io/enforce=restricted \
  pod-security.kubernetes.io/warn=restricted pod-security.kubernetes.io/audit=restricted >/dev/null

# The StatefulSet's claim (data-<release>-postgresql-0) binds to this volume only.
mkdir -p "$PG_VOLUME"
chown 999:999 "$PG_VOLUME"
chmod 700 "$PG_VOLUME"
kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $RELEASE-demo-postgresql
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: $PG_VOLUME, type: Directory}
  claimRef: {namespace: $NAMESPACE, name: data-$RELEASE-postgresql-0}
EOF

if [[ ! -s "$DEMO_DIR/api-key" ]]; then
  (umask 077 && openssl rand -hex 32 > "$DEMO_DIR/api-key")
fi
key="$(cat "$DEMO_DIR/api-key")"
hash="$(printf %s "$key" | sha256sum | cut -d' ' -f1)"

# The runner pods' NetworkPolicy lets them reach the Kubernetes API where a policy agent sees
# it: after kube-proxy's DNAT, the `kubernetes` endpoint's address and port (not 443/6443).
api_endpoint="$(kc get endpointslices -n default -l kubernetes.io/service-name=kubernetes \
  -o jsonpath='{.items[0].endpoints[0].addresses[0]} {.items[0].ports[0].port}')"
read -r api_address api_port <<<"$api_endpoint"
# CoreDNS runs on the host, on that same address (not as a kube-dns pod): the runner pods
# resolve the API Service's name there (networkPolicy.dns.cidrs).

say "helm upgrade --install $RELEASE charts/guideline-ingest -n $NAMESPACE"
"$HELM" --kubeconfig "$KUBECONFIG_PATH" upgrade --install "$RELEASE" charts/guideline-ingest \
  -n "$NAMESPACE" \
  --set crds.install=false \
  --set networkPolicy.enabled=true \
  --set "networkPolicy.kubeApiServer.cidrs[0]=$api_address/32" \
  --set "networkPolicy.kubeApiServer.ports[0]=$api_port" \
  --set "networkPolicy.dns.cidrs[0]=$api_address/32" \
  --set postgresql.image.repository=guideline-ingest-postgresql \
  --set-string postgresql.image.tag="$POSTGRESQL_MAJOR" \
  --set "api.apiKeys.hashes[0]=demo:$hash" >/dev/null

t1="$(now)"
kc -n "$NAMESPACE" rollout status "statefulset/$RELEASE-postgresql" --timeout=300s
kc -n "$NAMESPACE" rollout status "deployment/$RELEASE-api" --timeout=300s
kc -n "$NAMESPACE" rollout status "statefulset/$RELEASE-operator" --timeout=300s
say "rolled out in $(elapsed "$t1")s:"
kc -n "$NAMESPACE" get pods -o wide

if [[ -s "$PF_PID" ]] && kill -0 "$(cat "$PF_PID")" 2>/dev/null; then
  kill "$(cat "$PF_PID")" 2>/dev/null || true
fi
setsid "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" -n "$NAMESPACE" port-forward \
  --address 127.0.0.1 "service/$RELEASE-api" "$LOCAL_PORT:8000" </dev/null >>"$LOG_DIR/helm-demo-port-forward.log" 2>&1 &
echo $! > "$PF_PID"
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$LOCAL_PORT/health/live" >/dev/null 2>&1 && break
  kill -0 "$(cat "$PF_PID")" 2>/dev/null || { tail -n 5 "$LOG_DIR/helm-demo-port-forward.log" >&2; exit 1; }
  sleep 0.2
done
say "API Service port-forwarded to http://127.0.0.1:$LOCAL_PORT (pid $(cat "$PF_PID"))"

GUIDELINE_API_KEY="$key" "$REPO_ROOT/.venv/bin/guideline-client" --url "http://127.0.0.1:$LOCAL_PORT" \
  submit "$REPO_ROOT/examples/hand-hygiene.md" --title "Hand hygiene" --wait

cat <<EOF
[helm-demo] done in $(elapsed "$t0")s. The API key is in $DEMO_DIR/api-key; the kubeconfig:
  export KUBECONFIG=$KUBECONFIG_PATH
Uninstall:
  $HELM --kubeconfig $KUBECONFIG_PATH uninstall $RELEASE -n $NAMESPACE
  $KUBECTL --kubeconfig $KUBECONFIG_PATH delete namespace $NAMESPACE    # the PostgreSQL claim stays until then
  $KUBECTL --kubeconfig $KUBECONFIG_PATH delete pv $RELEASE-demo-postgresql && rm -rf $PG_VOLUME
  make cluster-down    # stops the port-forward and the cluster
EOF
