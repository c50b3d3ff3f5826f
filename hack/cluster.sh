#!/usr/bin/env bash
# The local Kubernetes control plane for development and tests: etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler built from source (hack/build-k8s.sh), plus one
# node, chosen by GUIDELINE_NODE:
#   agent (default)  the node agent (hack/node_agent.py, a stand-in for the kubelet that runs
#                    each pod's command as a local process), all on loopback
#   real             a real node (hack/real-node.sh): containerd 2.x + runc, the kubelet,
#                    kube-proxy (iptables), CNI bridge networking, CoreDNS and NetworkPolicy
#                    enforcement (kube-router's network-policy controller), pods in
#                    containers of their images (built by hack/build-k8s.sh node and
#                    hack/build-node.sh on first use)
# A running cluster keeps its mode (.local/run/node-mode) until `down`.
#
#   hack/cluster.sh up               start what is not running (idempotent), print the kubeconfig
#   hack/cluster.sh down [--purge]   stop everything; --purge also deletes certificates and etcd data
#   hack/cluster.sh status           what is running, on which ports
#   hack/cluster.sh stop COMPONENT   stop one component (fault tests); `up` starts it again
#   hack/cluster.sh restart COMPONENT
#   hack/cluster.sh kubeconfig       print the admin kubeconfig's path
#   hack/cluster.sh import-images    (real node) import `make image`'s archives into containerd
#
# Components: etcd kube-apiserver kube-controller-manager kube-scheduler, then node-agent
# (agent) or containerd kubelet kube-proxy coredns kube-router (real).
# Runtime files: .local/pki (certificates), .local/etcd (data), .local/run/<component>.pid,
# .local/run/ports.env, .local/log/<component>.log, .local/kubeconfig (admin).
# `down` keeps certificates and etcd data so the next `up` is a warm start (objects survive);
# `down --purge` starts the next `up` from scratch.
#
# Networking (agent): everything listens on 127.0.0.1 and there is no kube-proxy, so the
# `kubernetes` Service's ClusterIP (10.0.0.1) is not routable and the API server runs with
# --endpoint-reconciler-type=none (it refuses a loopback advertise address otherwise). The
# node agent gives every pod KUBERNETES_SERVICE_HOST=127.0.0.1 and KUBERNETES_SERVICE_PORT=
# <apiserver port> instead, which in-cluster clients use.
# Networking (real): the API server listens on all addresses and advertises the host's
# address (NODE_IP), its endpoint reconciler keeps the `kubernetes` Service pointing there,
# and kube-proxy makes the ClusterIP routable from pods (hack/real-node.sh says more).
#
# Environment: GUIDELINE_NODE (agent | real), GUIDELINE_LOCAL_DIR (another .local, i.e. a
# second cluster side by side; the real node's bridge and iptables rules are host-wide, so
# one real node per host), GUIDELINE_NODE_NAME (default guideline-node), GUIDELINE_NODE_IP
# (real: the address to advertise), GUIDELINE_STOP_GRACE_SECONDS (default 15).
# Concurrent invocations are serialized by a lock (.local/run/cluster.lock).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=real-node.sh
source "$HACK_DIR/real-node.sh"

PKI_DIR="$LOCAL_DIR/pki"
ETCD_DIR="$LOCAL_DIR/etcd"
PORTS_FILE="$RUN_DIR/ports.env"
POD_RUN_DIR="$RUN_DIR/pods"
NODE_NAME="${GUIDELINE_NODE_NAME:-guideline-node}"
PYTHON="$REPO_ROOT/.venv/bin/python"
KUBECTL="$K8S_BIN/kubectl"
SA_ISSUER="https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR="10.0.0.0/24"
SERVICE_IP="10.0.0.1"
STOP_GRACE_SECONDS="${GUIDELINE_STOP_GRACE_SECONDS:-15}"
NODE_MODE_FILE="$RUN_DIR/node-mode"
# The running cluster's mode unless GUIDELINE_NODE says which to start.
NODE_MODE="${GUIDELINE_NODE:-$(cat "$NODE_MODE_FILE" 2>/dev/null || echo agent)}"
case "$NODE_MODE" in
  agent) NODE_COMPONENTS=(node-agent) ;;
  real) NODE_COMPONENTS=(containerd kubelet kube-proxy coredns kube-router) ;;
  *) echo "[cluster] error: GUIDELINE_NODE must be agent or real, not '$NODE_MODE'" >&2; exit 2 ;;
esac
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler "${NODE_COMPONENTS[@]}")
ALL_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler node-agent containerd kubelet kube-proxy coredns kube-router)
# Controllers the tests and the service rely on (canonical names of v1.37; `--help` lists
# them). With the node agent, Deployments/ReplicaSets/StatefulSets are left out on purpose:
# it would run their pods as local processes, which nothing here wants; the real node runs
# them in containers (REAL_NODE_CONTROLLERS).
KCM_CONTROLLERS=(
  job-controller garbage-collector-controller ttl-after-finished-controller
  serviceaccount-controller serviceaccount-token-controller
  root-ca-certificate-publisher-controller namespace-controller node-lifecycle-controller
  taint-eviction-controller pod-garbage-collector-controller cronjob-controller
  clusterrole-aggregation-controller resourcequota-controller
  endpoints-controller endpointslice-controller
)
REAL_NODE_CONTROLLERS=(deployment-controller replicaset-controller statefulset-controller
  disruption-controller persistentvolume-binder-controller persistentvolume-protection-controller
  persistentvolumeclaim-protection-controller)
[[ "$NODE_MODE" == real ]] && KCM_CONTROLLERS+=("${REAL_NODE_CONTROLLERS[@]}")

log() { echo "[cluster] $*" >&2; }
die() { log "error: $*"; exit 1; }

# A GuidelineJob CRD being deleted is never served again until its GuidelineJobs are gone; one
# that still holds the operator's finalizer with no operator left (a killed run's, kept in
# etcd) holds it for good. Say which, rather than time out waiting for GuidelineJobs.
crd_not_held() {
  local crd=guidelinejobs.ingest.guidelines.dev
  [[ -z "$(kubectl get crd "$crd" --ignore-not-found -o jsonpath='{.metadata.deletionTimestamp}')" ]] && return 0
  log "error: the GuidelineJob CRD is being deleted, held by these GuidelineJobs' finalizers:"
  kubectl get "$crd" -A -o custom-columns=NAMESPACE:.metadata.namespace,NAME:.metadata.name,FINALIZERS:.metadata.finalizers >&2 || true
  die "release them (kubectl patch guidelinejob NAME -n NAMESPACE --type=merge -p '{\"metadata\":{\"finalizers\":null}}') or start afresh: hack/cluster.sh down --purge"
}
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$(now) - $1:.1f}')"; }

pid_file() { echo "$RUN_DIR/$1.pid"; }
component_pid() {
  local f
  f="$(pid_file "$1")"
  [[ -s "$f" ]] && cat "$f"
}
# alive PID: the process exists and is not a zombie (our daemons are reparented to
# PID 1, which may take a while to reap them).
alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z ]]
}
is_running() {
  local pid
  pid="$(component_pid "$1" || true)"
  [[ -n "$pid" ]] && alive "$pid"
}

# --- ports ------------------------------------------------------------------------------
# Free loopback ports are chosen when nothing runs and kept in ports.env, so a component
# restarted on its own (fault tests) comes back on the same address.
choose_ports() {
  local any_running=false c
  for c in "${ALL_COMPONENTS[@]}"; do is_running "$c" && any_running=true; done
  # (A ports.env from before the real node lacks its ports: chosen anew when nothing runs.)
  if [[ -s "$PORTS_FILE" ]] && { $any_running || { grep -q KUBE_ROUTER_HEALTH_PORT "$PORTS_FILE" && ports_free; }; }; then return; fi
  $any_running && die "components run but $PORTS_FILE is missing; run: hack/cluster.sh down"
  python3 - "$PORTS_FILE" <<'PY'
import socket, sys
names = ["ETCD_PORT", "ETCD_PEER_PORT", "APISERVER_PORT", "KCM_PORT", "SCHEDULER_PORT",
         "NODE_AGENT_PORT", "KUBELET_PORT", "KUBELET_HEALTHZ_PORT", "PROXY_HEALTHZ_PORT",
         "PROXY_METRICS_PORT", "COREDNS_HEALTH_PORT", "COREDNS_READY_PORT",
         "KUBE_ROUTER_HEALTH_PORT"]
socks = []
for _ in names:  # hold every socket open until all are chosen, so the ports differ
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
with open(sys.argv[1], "w") as f:
    for name, s in zip(names, socks):
        f.write(f"{name}={s.getsockname()[1]}\n")
PY
}
ports_free() {
  # shellcheck disable=SC1090
  source "$PORTS_FILE"
  python3 - "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT" "$SCHEDULER_PORT" \
    "${NODE_AGENT_PORT:-0}" <<'PY'
import socket, sys
for port in map(int, sys.argv[1:]):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
PY
}
load_ports() {
  # shellcheck disable=SC1090
  source "$PORTS_FILE"
  API_URL="https://127.0.0.1:$APISERVER_PORT"
}

# --- certificates -----------------------------------------------------------------------
# ECDSA P-256 keys: generated in milliseconds, accepted by every component.
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# new_ca NAME CN: a self-signed CA certificate.
new_ca() {
  new_key "$PKI_DIR/$1.key"
  openssl req -x509 -new -key "$PKI_DIR/$1.key" -subj "/CN=$2" \
    -days 3650 -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$PKI_DIR/$1.crt"
}

CLIENT_EXT="basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth"
SERVER_EXT="basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth"

# sign NAME SUBJECT EXTENSIONS [CA]: a certificate signed by the local CA (or CA).
sign() {
  local name="$1" subject="$2" ext="$3" ca="${4:-ca}"
  new_key "$PKI_DIR/$name.key"
  openssl req -new -key "$PKI_DIR/$name.key" -subj "$subject" -out "$PKI_DIR/$name.csr" 2>/dev/null
  printf '%b\n' "$ext" > "$PKI_DIR/$name.ext"
  openssl x509 -req -in "$PKI_DIR/$name.csr" -CA "$PKI_DIR/$ca.crt" -CAkey "$PKI_DIR/$ca.key" \
    -CAcreateserial -days 3650 -extfile "$PKI_DIR/$name.ext" -out "$PKI_DIR/$name.crt" 2>/dev/null
  rm -f "$PKI_DIR/$name.csr" "$PKI_DIR/$name.ext"
}

make_pki() {
  if [[ ! -s "$PKI_DIR/done" ]]; then
    log "making certificates in $PKI_DIR"
    rm -rf "$PKI_DIR"
    mkdir -p "$PKI_DIR"
    chmod 700 "$PKI_DIR"
    new_ca ca guideline-ingest-local-ca
    sign apiserver "/CN=kube-apiserver" \
      "$SERVER_EXT\nsubjectAltName=IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    sign admin "/O=system:masters/CN=kubernetes-admin" "$CLIENT_EXT"
    sign kube-controller-manager "/CN=system:kube-controller-manager" "$CLIENT_EXT"
    sign kube-scheduler "/CN=system:kube-scheduler" "$CLIENT_EXT"
    sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$CLIENT_EXT"
    sign node-agent "/O=system:nodes/CN=system:node:$NODE_NAME" "$CLIENT_EXT"
    sign node-agent-serving "/CN=system:node:$NODE_NAME" \
      "$SERVER_EXT\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:$NODE_NAME"
    # The service-account token signing key pair.
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI_DIR/sa.key" 2>/dev/null
    openssl pkey -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub"
    date -u +%FT%TZ > "$PKI_DIR/done"
  fi
  if [[ ! -s "$PKI_DIR/front-proxy-client.crt" ]]; then
    # The aggregation layer's front proxy (request-header authentication), with its own CA
    # as upstream recommends; without it the controller manager logs errors forever.
    new_ca front-proxy-ca guideline-ingest-front-proxy-ca
    sign front-proxy-client "/CN=front-proxy-client" "$CLIENT_EXT" front-proxy-ca
  fi
  chmod 600 "$PKI_DIR"/*.key
}

# write_kubeconfig FILE USER CERT_NAME: a kubeconfig with the certificates embedded.
write_kubeconfig() {
  local file="$1" user="$2" cert="$3"
  umask 077
  cat > "$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: guideline-local
  cluster:
    server: $API_URL
    certificate-authority-data: $(base64 -w0 "$PKI_DIR/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI_DIR/$cert.crt")
    client-key-data: $(base64 -w0 "$PKI_DIR/$cert.key")
contexts:
- name: guideline-local
  context:
    cluster: guideline-local
    user: $user
current-context: guideline-local
EOF
  mv "$file.tmp" "$file"
  umask 022
}

write_kubeconfigs() {
  write_kubeconfig "$KUBECONFIG_PATH" kubernetes-admin admin
  write_kubeconfig "$LOCAL_DIR/kube-controller-manager.kubeconfig" system:kube-controller-manager kube-controller-manager
  write_kubeconfig "$LOCAL_DIR/kube-scheduler.kubeconfig" system:kube-scheduler kube-scheduler
  write_kubeconfig "$LOCAL_DIR/node-agent.kubeconfig" "system:node:$NODE_NAME" node-agent
}

# --- processes --------------------------------------------------------------------------
# launch NAME CMD...: start a daemon in its own session (so its process group id is its
# pid), output to .local/log/NAME.log, pid to .local/run/NAME.pid.
launch() {
  local name="$1"
  shift
  echo "---- $(date -u +%FT%TZ) starting $name" >> "$LOG_DIR/$name.log"
  setsid "$@" </dev/null >>"$LOG_DIR/$name.log" 2>&1 9>&- &
  echo $! > "$(pid_file "$name")"
}

# wait_until SECONDS COMPONENT WHAT CMD...: poll CMD until it succeeds; fail fast (showing
# its log) when COMPONENT exits meanwhile.
wait_until() {
  local timeout="$1" component="$2" what="$3" deadline
  shift 3
  deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    if ! is_running "$component"; then
      tail -n 30 "$LOG_DIR/$component.log" >&2
      die "$component exited during start-up (log: $LOG_DIR/$component.log)"
    fi
    if (( $(date +%s) >= deadline )); then
      die "$what not ready after ${timeout}s (see $LOG_DIR)"
    fi
    sleep 0.2
  done
}

curl_api() {
  curl -sf --max-time 5 --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" \
    --key "$PKI_DIR/admin.key" "$API_URL$1"
}
api_ready() { [[ "$(curl_api /readyz)" == ok ]]; }
etcd_ready() { curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
healthz() { curl -skf --max-time 2 "https://127.0.0.1:$1/healthz" | grep -q ok; }

start_etcd() {
  mkdir -p "$ETCD_DIR"
  chmod 700 "$ETCD_DIR"
  launch etcd "$K8S_BIN/etcd" --name local --data-dir "$ETCD_DIR" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --quota-backend-bytes=4294967296 --log-level=warn \
    --heartbeat-interval=100 --election-timeout=500
}

start_apiserver() {
  local net=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --endpoint-reconciler-type=none)
  [[ "$NODE_MODE" == real ]] && net=(--bind-address=0.0.0.0 --advertise-address="$NODE_IP" --endpoint-reconciler-type=lease)
  launch kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" "${net[@]}" --secure-port="$APISERVER_PORT" \
    --tls-cert-file="$PKI_DIR/apiserver.crt" --tls-private-key-file="$PKI_DIR/apiserver.key" \
    --client-ca-file="$PKI_DIR/ca.crt" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,NodeRestriction,PodSecurity,TaintNodesByCondition,DefaultTolerationSeconds,Priority,ResourceQuota,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,MutatingAdmissionPolicy \
    --service-account-issuer="$SA_ISSUER" --api-audiences="$SA_ISSUER" \
    --service-account-key-file="$PKI_DIR/sa.pub" \
    --service-account-signing-key-file="$PKI_DIR/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --allow-privileged=true \
    --kubelet-client-certificate="$PKI_DIR/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI_DIR/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI_DIR/ca.crt" \
    --kubelet-preferred-address-types=InternalIP \
    --requestheader-client-ca-file="$PKI_DIR/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI_DIR/front-proxy-client.crt" \
    --proxy-client-key-file="$PKI_DIR/front-proxy-client.key" \
    --profiling=false --v=1
}

start_controller_manager() {
  local kc="$LOCAL_DIR/kube-controller-manager.kubeconfig" IFS=,
  launch kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$PKI_DIR/kube-controller-manager" \
    --leader-elect=false --use-service-account-credentials=true \
    --root-ca-file="$PKI_DIR/ca.crt" \
    --service-account-private-key-file="$PKI_DIR/sa.key" \
    --cluster-signing-cert-file="$PKI_DIR/ca.crt" --cluster-signing-key-file="$PKI_DIR/ca.key" \
    --controllers="${KCM_CONTROLLERS[*]}" \
    --kube-api-qps=200 --kube-api-burst=400 --concurrent-job-syncs=10 \
    --concurrent-gc-syncs=20 --profiling=false --v=1
}

start_scheduler() {
  local kc="$LOCAL_DIR/kube-scheduler.kubeconfig"
  cat > "$LOCAL_DIR/kube-scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $kc
  qps: 200
  burst: 400
leaderElection:
  leaderElect: false
EOF
  launch kube-scheduler "$K8S_BIN/kube-scheduler" --config="$LOCAL_DIR/kube-scheduler.yaml" \
    --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" \
    --cert-dir="$PKI_DIR/kube-scheduler" --profiling=false --v=1
}

start_node_agent() {
  mkdir -p "$POD_RUN_DIR" "$LOG_DIR/pods"
  launch node-agent "$PYTHON" "$HACK_DIR/node_agent.py" run \
    --kubeconfig "$LOCAL_DIR/node-agent.kubeconfig" --node-name "$NODE_NAME" \
    --api-port "$APISERVER_PORT" --serving-port "$NODE_AGENT_PORT" \
    --serving-cert "$PKI_DIR/node-agent-serving.crt" --serving-key "$PKI_DIR/node-agent-serving.key" \
    --client-ca "$PKI_DIR/ca.crt" --kubelet-version "$KUBE_VERSION" \
    --state-dir "$POD_RUN_DIR" --log-dir "$LOG_DIR/pods" --venv "$REPO_ROOT/.venv"
}

kubectl() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

node_ready() {
  local out
  out="$(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}|{.spec.taints}')"
  [[ "$out" == "True|" ]]
}


cmd_up() {
  local t0 started=()
  t0="$(now)"
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  local c missing=false
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm; do
    [[ -x "$K8S_BIN/$c" ]] || missing=true
  done
  if $missing; then
    log "building the control plane into $K8S_BIN (first time only; log: $LOG_DIR/build-k8s.log)"
    bash "$HACK_DIR/build-k8s.sh" >>"$LOG_DIR/build-k8s.log" 2>&1 || die "build failed, see $LOG_DIR/build-k8s.log"
  fi
  [[ -x "$PYTHON" ]] || die "no virtualenv at $REPO_ROOT/.venv"
  check_mode
  [[ "$NODE_MODE" == real ]] && build_real_node
  make_pki
  choose_ports
  load_ports
  write_kubeconfigs
  if [[ "$NODE_MODE" == real ]]; then
    NODE_IP="$(node_ip)"
    [[ -n "$NODE_IP" ]] || die "no global IPv4 address on this host to advertise (set GUIDELINE_NODE_IP)"
    real_node_pki "$NODE_IP"
  fi
  echo "$NODE_MODE" > "$NODE_MODE_FILE"
  local phases=()
  if ! is_running etcd; then start_etcd; started+=(etcd); fi
  wait_until 60 etcd etcd etcd_ready
  phases+=("etcd $(elapsed "$t0")s")
  if ! is_running kube-apiserver; then start_apiserver; started+=(kube-apiserver); fi
  wait_until 120 kube-apiserver kube-apiserver api_ready
  phases+=("apiserver $(elapsed "$t0")s")
  if ! is_running kube-controller-manager; then start_controller_manager; started+=(kube-controller-manager); fi
  if ! is_running kube-scheduler; then start_scheduler; started+=(kube-scheduler); fi
  [[ "$NODE_MODE" == agent ]] && ! is_running node-agent && { start_node_agent; started+=(node-agent); }
  crd_not_held
  kubectl apply --server-side --force-conflicts -f "$REPO_ROOT/crds/" >/dev/null
  # GuidelineJobs' admission policies (created-by from the request's user, the runner's
  # status writes limited to its own GuidelineJob).
  kubectl apply --server-side --force-conflicts -f "$HACK_DIR/manifests/admission-policies.yaml" >/dev/null
  wait_until 60 kube-controller-manager kube-controller-manager healthz "$KCM_PORT"
  wait_until 60 kube-scheduler kube-scheduler healthz "$SCHEDULER_PORT"
  phases+=("controllers $(elapsed "$t0")s")
  [[ "$NODE_MODE" == real ]] && start_real_node "$NODE_IP" "$t0"
  wait_until 90 "$([[ "$NODE_MODE" == real ]] && echo kubelet || echo node-agent)" "node $NODE_NAME (Ready, untainted)" node_ready
  phases+=("node $(elapsed "$t0")s")
  # kube-router's network-policy controller reads its Node at start: after the kubelet's.
  [[ "$NODE_MODE" == real ]] && start_network_policies
  kubectl wait --for=condition=Established --timeout=60s -f "$REPO_ROOT/crds/" >/dev/null
  # On a warm start the CRD is Established from etcd before the restarted API server serves
  # it (a create answers 503 "Resource kind ... not found" for a while).
  wait_until 60 kube-apiserver "GuidelineJobs served" kubectl get guidelinejobs.ingest.guidelines.dev -A --request-timeout=5s
  # Listing works a few seconds before creating does (a create still answered 503 "Resource
  # kind ... not found" right after a cold start): a server-side dry-run create proves it.
  wait_until 60 kube-apiserver "GuidelineJobs accepted" \
    kubectl create --dry-run=server -n default -f "$REPO_ROOT/examples/guidelinejob.yaml" --request-timeout=5s
  if ((${#started[@]})); then
    log "started ${started[*]}; cluster ($NODE_MODE node) ready in $(elapsed "$t0")s (ready at: ${phases[*]})"
  else
    log "already running and healthy"
  fi
  echo "$KUBECONFIG_PATH"
}

# stop_group NAME PID: SIGTERM the process group, SIGKILL after the grace period.
stop_group() {
  local name="$1" pid="$2" i
  alive "$pid" || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_GRACE_SECONDS * 20; i++)); do
    alive "$pid" || return 0
    sleep 0.05
  done
  log "$name (pid $pid) ignored SIGTERM for ${STOP_GRACE_SECONDS}s: SIGKILL"
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

stop_component() {
  local name="$1" pid
  pid="$(component_pid "$name" || true)"
  if [[ -n "$pid" ]]; then
    stop_group "$name" "$pid"
    # Whatever else is left in its process group goes too.
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$(pid_file "$name")"
}

# proc_start_time PID: field 22 of /proc/PID/stat (after the parenthesized command name).
proc_start_time() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
  stat="${stat##*) }"
  # shellcheck disable=SC2086
  set -- $stat
  echo "${20}"
}

# Pods' processes run in their own sessions; the node agent records each as
# "<pid> <start time>" so a recycled pid is never signalled.
stop_pod_processes() {
  local f pid start actual
  [[ -d "$POD_RUN_DIR" ]] || return 0
  for f in "$POD_RUN_DIR"/*.pid; do
    [[ -e "$f" ]] || continue
    read -r pid start _ < "$f" || true
    actual="$(proc_start_time "$pid")"
    if [[ -n "$pid" && "$actual" == "$start" ]]; then
      log "stopping leftover pod process group $pid ($(basename "$f" .pid))"
      stop_group pod "$pid"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

cmd_down() {
  local purge=false c
  [[ "${1:-}" == --purge ]] && purge=true
  stop_component helm-demo-port-forward
  stop_component node-agent
  stop_pod_processes
  stop_real_node
  for c in kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop_component "$c"
  done
  rm -f "$NODE_MODE_FILE"
  if $purge; then
    rm -rf "$ETCD_DIR" "$PKI_DIR" "$RUN_DIR" "$KUBECONFIG_PATH" "$LOCAL_DIR"/*.kubeconfig \
      "$LOCAL_DIR/kube-scheduler.yaml" "$LOCAL_DIR/kubelet.yaml" "$LOCAL_DIR/kube-proxy.yaml" \
      "$LOCAL_DIR/Corefile" "$CNI_DIR" "$KUBELET_DIR"
    [[ -n "$(node_mounts)" ]] || rm -rf "$CONTAINERD_DIR"
    log "stopped; certificates, etcd data and kubeconfigs removed"
  else
    log "stopped (certificates and etcd data kept; 'down --purge' removes them)"
  fi
}

cmd_status() {
  local c pid rc=0
  [[ -s "$PORTS_FILE" ]] && load_ports
  for c in "${COMPONENTS[@]}"; do
    pid="$(component_pid "$c" || true)"
    if is_running "$c"; then
      printf '%-24s running  pid %s\n' "$c" "$pid"
    else
      printf '%-24s stopped\n' "$c"
      rc=1
    fi
  done
  if [[ -n "${API_URL:-}" ]]; then
    echo "apiserver   $API_URL  (readyz: $(curl_api /readyz 2>/dev/null || echo unreachable))"
    echo "etcd        http://127.0.0.1:$ETCD_PORT"
    echo "kubeconfig  $KUBECONFIG_PATH"
  fi
  local pods
  # (The real node has no pod directory: find fails, and pipefail must not fail `status`.)
  pods="$({ find "$POD_RUN_DIR" -name '*.pid' 2>/dev/null || true; } | wc -l)"
  echo "pod processes: $pods"
  return $rc
}

valid_component() {
  local c
  for c in "${COMPONENTS[@]}"; do [[ "$c" == "$1" ]] && return 0; done
  die "unknown component '$1' (one of: ${COMPONENTS[*]})"
}

# check_mode: a running cluster is not switched to the other node under it.
check_mode() {
  local running c
  running="$(cat "$NODE_MODE_FILE" 2>/dev/null || true)"
  [[ -z "$running" || "$running" == "$NODE_MODE" ]] && return 0
  for c in "${ALL_COMPONENTS[@]}"; do
    is_running "$c" && die "the cluster runs with GUIDELINE_NODE=$running; run 'hack/cluster.sh down' first"
  done
  return 0
}

# One cluster.sh at a time changes the cluster: test sessions running side by side all call
# `up`, and a `down` must not interleave with a start.
lock() {
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/cluster.lock"
  flock -w 600 9 || die "another hack/cluster.sh holds $RUN_DIR/cluster.lock"
}

case "${1:-}" in
  up | down | stop | restart | import-images) lock ;;
esac
case "${1:-}" in
  up) cmd_up ;;
  down) shift; cmd_down "$@" ;;
  status) cmd_status ;;
  stop) valid_component "${2:-}"; stop_component "$2" ;;
  restart) valid_component "${2:-}"; stop_component "$2"; cmd_up ;;
  kubeconfig) echo "$KUBECONFIG_PATH" ;;
  import-images) is_running containerd || die "the real node's containerd is not running"; import_images ;;
  *) echo "usage: $0 up | down [--purge] | status | stop COMPONENT | restart COMPONENT | kubeconfig | import-images" >&2; exit 2 ;;
esac
