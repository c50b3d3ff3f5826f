# shellcheck shell=bash
# The real node of hack/cluster.sh (GUIDELINE_NODE=real), sourced by it: containerd 2.x with
# the CRI plugin and Debian's runc, the kubelet, kube-proxy (iptables), CNI bridge networking
# (Debian's plugins), CoreDNS and kube-router's network-policy controller as host processes,
# all configured under .local/:
#   .local/containerd/{config.toml,root}  .local/run/containerd/{containerd.sock,state,netns}
#   .local/kubelet/ (root dir) .local/kubelet.yaml  .local/kube-proxy.yaml  .local/Corefile
#   .local/cni/{net.d,ipam}    .local/log/pods/ (container logs, what `kubectl logs` reads)
# Networking: pods get addresses of POD_CIDR on the bridge BRIDGE (its gateway is the host)
# and reach this host, not beyond (no masquerading to the outside). The API server listens on
# all addresses and advertises NODE_IP (the host's first global IPv4 address, or
# GUIDELINE_NODE_IP), so the `kubernetes` Service routes to it through kube-proxy; CoreDNS
# listens on NODE_IP:53 and is the pods' nameserver (clusterDNS).
# NetworkPolicies: kube-router (--run-firewall only: no routing, no service proxy) keeps
# iptables chains KUBE-ROUTER-{INPUT,FORWARD,OUTPUT}, KUBE-POD-FW-*, KUBE-NWPLCY-* and ipsets
# KUBE-SRC-*/KUBE-DST-* (through iptables-nft's xt compatibility and the kernel's ip_set).
# kube-network-policies, what kind runs, needs nftables' `queue` expression, and this
# kernel is built without it (# CONFIG_NFT_QUEUE is not set).
# Uses from cluster.sh: LOCAL_DIR RUN_DIR LOG_DIR PKI_DIR NODE_NAME API_URL the *_PORT
# variables, sign, launch, wait_until, is_running, stop_component, kubectl, log, die.

CONTAINERD_DIR="$LOCAL_DIR/containerd"
CONTAINERD_RUN="$RUN_DIR/containerd"
CONTAINERD_SOCK="$CONTAINERD_RUN/containerd.sock"
KUBELET_DIR="$LOCAL_DIR/kubelet"
CNI_DIR="$LOCAL_DIR/cni"
POD_CIDR="10.244.0.0/24"
BRIDGE="gi-cni0"
NODE_LOG_DIR="$LOG_DIR/pods"
# The sysctl the bridge plugin turns on (a gateway bridge forwards); `down` restores it.
IP_FORWARD=/proc/sys/net/ipv4/ip_forward

node_ip() {
  if [[ -n "${GUIDELINE_NODE_IP:-}" ]]; then echo "$GUIDELINE_NODE_IP"; return; fi
  ip -4 -o addr show scope global | awk '{split($4, a, "/"); print a[1]; exit}'
}

ctr_() { "$CONTAINERD_BIN/ctr" --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

real_node_binaries_missing() {
  local b
  for b in "$K8S_BIN/kubelet" "$K8S_BIN/kube-proxy" "$CONTAINERD_BIN/containerd" \
    "$CONTAINERD_BIN/containerd-shim-runc-v2" "$CONTAINERD_BIN/ctr" "$COREDNS_BIN/coredns" \
    "$KUBE_ROUTER_BIN/kube-router" "$IMAGE_CACHE/pause.tar" "$CNI_BIN_DIR/bridge" /usr/sbin/runc; do
    [[ -e "$b" ]] || return 0
  done
  return 1
}

build_real_node() {
  real_node_binaries_missing || return 0
  log "building the node (kubelet, kube-proxy, containerd, CoreDNS, kube-router, pause; first time only; log: $LOG_DIR/build-node.log)"
  { bash "$HACK_DIR/build-k8s.sh" node && bash "$HACK_DIR/build-node.sh"; } >>"$LOG_DIR/build-node.log" 2>&1 \
    || die "node build failed, see $LOG_DIR/build-node.log"
  [[ -x "$CNI_BIN_DIR/bridge" && -x /usr/sbin/runc ]] || die "CNI plugins or runc missing: run make system-deps"
  command -v ipset >/dev/null || die "ipset missing (kube-router's network policies): run make system-deps"
}

# has_san CERT ENTRY: the certificate's subjectAltName lists ENTRY (e.g. "IP Address:1.2.3.4").
has_san() { openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | grep -qF "$2"; }

real_node_pki() {
  local ip="$1"
  # The API server is reached at NODE_IP through the `kubernetes` Service; the kubelet serves
  # on NODE_IP. Re-signed when the host's address changed.
  if ! has_san "$PKI_DIR/apiserver.crt" "IP Address:$ip"; then
    sign apiserver "/CN=kube-apiserver" \
      "$SERVER_EXT\nsubjectAltName=IP:127.0.0.1,IP:$ip,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  fi
  if ! has_san "$PKI_DIR/kubelet-serving.crt" "IP Address:$ip"; then
    sign kubelet-serving "/CN=system:node:$NODE_NAME" \
      "$SERVER_EXT\nsubjectAltName=IP:127.0.0.1,IP:$ip,DNS:localhost,DNS:$NODE_NAME"
  fi
  [[ -s "$PKI_DIR/kube-proxy.crt" ]] || sign kube-proxy "/CN=system:kube-proxy" "$CLIENT_EXT"
  [[ -s "$PKI_DIR/coredns.crt" ]] || sign coredns "/CN=system:coredns" "$CLIENT_EXT"
  [[ -s "$PKI_DIR/kube-router.crt" ]] || sign kube-router "/CN=system:kube-router" "$CLIENT_EXT"
  chmod 600 "$PKI_DIR"/*.key
  # The kubelet is a normal node: system:node:<name> in system:nodes (the Node authorizer and
  # NodeRestriction admission plugin apply), the same identity the node agent has.
  write_kubeconfig "$LOCAL_DIR/kubelet.kubeconfig" "system:node:$NODE_NAME" node-agent
  write_kubeconfig "$LOCAL_DIR/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
  write_kubeconfig "$LOCAL_DIR/coredns.kubeconfig" system:coredns coredns
  write_kubeconfig "$LOCAL_DIR/kube-router.kubeconfig" system:kube-router kube-router
}

start_containerd() {
  mkdir -p "$CONTAINERD_DIR/root" "$CONTAINERD_RUN/state" "$CNI_DIR/net.d" "$CNI_DIR/ipam"
  cat > "$CNI_DIR/net.d/10-guideline.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "guideline",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$CNI_DIR/ipam"
      }
    }
  ]
}
EOF
  cat > "$CONTAINERD_DIR/config.toml" <<EOF
# Written by hack/cluster.sh (GUIDELINE_NODE=real); rewritten at every start.
version = 4
root = "$CONTAINERD_DIR/root"
state = "$CONTAINERD_RUN/state"
imports = []

[plugins.'io.containerd.server.v1.grpc']
  address = "$CONTAINERD_SOCK"

[plugins.'io.containerd.server.v1.ttrpc']
  address = "$CONTAINERD_SOCK.ttrpc"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"

[plugins.'io.containerd.cri.v1.runtime']
  # Network namespaces under the state dir (.local/run/containerd), not /var/run/netns.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  # Processes here lack CAP_SYS_RESOURCE: no oom_score_adj below containerd's own (the
  # kubelet asks -998 for sandboxes, which runc could not write), no rlimit above its hard one.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "$CONTAINERD_RUN/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$CNI_BIN_DIR"]
    conf_dir = "$CNI_DIR/net.d"
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
  [[ -s "$RUN_DIR/ip_forward.saved" ]] || cat "$IP_FORWARD" > "$RUN_DIR/ip_forward.saved"
  launch containerd "$CONTAINERD_BIN/containerd" --config "$CONTAINERD_DIR/config.toml" --log-level ${CONTAINERD_LOG_LEVEL:-warn}
}

containerd_ready() { ctr_ version; }

# import_images: the pause image and `make image`'s archives into containerd's k8s.io
# namespace (where the kubelet looks), each archive only once per content.
import_images() {
  local f id stamp
  for f in "$IMAGE_CACHE"/*.tar; do
    [[ -e "$f" ]] || continue
    id="$(cat "$f.id" 2>/dev/null || stat -c %Y "$f")"
    stamp="$CONTAINERD_DIR/imported.$(basename "$f" .tar)"
    [[ "$(cat "$stamp" 2>/dev/null)" == "$id" ]] && continue
    ctr_ images import "$f" >/dev/null || die "importing $f into containerd failed"
    echo "$id" > "$stamp"
    log "imported $(basename "$f") into the node's containerd"
  done
}

start_kubelet() {
  local ip="$1"
  mkdir -p "$KUBELET_DIR" "$NODE_LOG_DIR"
  cat > "$LOCAL_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host has cgroup v1 (hybrid); since v1.35 a kubelet starts there only when told to.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: $ip
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI_DIR/kubelet-serving.crt
tlsPrivateKeyFile: $PKI_DIR/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI_DIR/ca.crt}
authorization:
  mode: Webhook
clusterDomain: cluster.local
clusterDNS: [$ip]
resolvConf: /etc/resolv.conf
podLogsDir: $NODE_LOG_DIR
# The images are imported, never pulled: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%}
failSwapOn: false
# No CAP_SYS_RESOURCE here: the kubelet cannot lower its own OOM score (default -999).
oomScoreAdj: 0
serializeImagePulls: false
maxPods: 110
EOF
  launch kubelet "$K8S_BIN/kubelet" --config="$LOCAL_DIR/kubelet.yaml" \
    --kubeconfig="$LOCAL_DIR/kubelet.kubeconfig" --root-dir="$KUBELET_DIR" \
    --cert-dir="$KUBELET_DIR/pki" --hostname-override="$NODE_NAME" --node-ip="$ip" --v=1
}

start_kube_proxy() {
  cat > "$LOCAL_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $LOCAL_DIR/kube-proxy.kubeconfig
mode: iptables
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
# Leave the host's conntrack sysctls as they are.
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
EOF
  launch kube-proxy "$K8S_BIN/kube-proxy" --config="$LOCAL_DIR/kube-proxy.yaml" --v=1
}

start_coredns() {
  local ip="$1"
  kubectl apply --server-side --force-conflicts -f "$HACK_DIR/manifests/coredns-rbac.yaml" >/dev/null
  cat > "$LOCAL_DIR/Corefile" <<EOF
.:53 {
    bind $ip
    errors
    health 127.0.0.1:$COREDNS_HEALTH_PORT
    ready 127.0.0.1:$COREDNS_READY_PORT
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $LOCAL_DIR/coredns.kubeconfig guideline-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 30
    loop
    loadbalance
}
EOF
  launch coredns "$COREDNS_BIN/coredns" -conf "$LOCAL_DIR/Corefile"
}

# start_network_policies: kube-router's network-policy controller, once the Node exists (it
# reads it at start); ready when healthy and its chains are in place.
start_network_policies() {
  if ! is_running kube-router; then
    kubectl apply --server-side --force-conflicts -f "$HACK_DIR/manifests/kube-router-rbac.yaml" >/dev/null
    launch kube-router "$KUBE_ROUTER_BIN/kube-router" --kubeconfig="$LOCAL_DIR/kube-router.kubeconfig" \
      --run-firewall=true --run-router=false --run-service-proxy=false \
      --hostname-override="$NODE_NAME" --service-cluster-ip-range="$SERVICE_CIDR" \
      --enable-ipv4=true --enable-ipv6=false --health-port="$KUBE_ROUTER_HEALTH_PORT" \
      --metrics-port=0 --v=1
    started+=(kube-router)
  fi
  wait_until 60 kube-router kube-router kube_router_ready
  phases+=("network policies $(elapsed "$t0")s")
}

kube_router_ready() {
  curl -sf --max-time 2 "http://127.0.0.1:$KUBE_ROUTER_HEALTH_PORT/healthz" >/dev/null \
    && iptables -S KUBE-ROUTER-FORWARD >/dev/null 2>&1
}

# remove_ipsets: kube-router's sets (once no rule refers to them).
remove_ipsets() {
  command -v ipset >/dev/null || return 0
  local set
  for set in $(ipset list -n 2>/dev/null | grep -E '^(KUBE-SRC-|KUBE-DST-)' || true); do
    ipset destroy "$set" 2>/dev/null || log "could not destroy ipset $set"
  done
}

coredns_ready() { curl -sf --max-time 2 "http://127.0.0.1:$COREDNS_READY_PORT/ready" >/dev/null; }
kube_proxy_ready() { curl -sf --max-time 2 "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz" >/dev/null; }

# start_real_node: containerd, the images, kube-proxy, CoreDNS and the kubelet (what is not
# running); sets `started`, appends to `phases` (cluster.sh's cmd_up).
start_real_node() {
  local ip="$1" t0="$2"
  # What `down` must undo on the host (bridge, iptables chains, ip_forward) is this cluster's.
  touch "$RUN_DIR/real-node"
  if ! is_running containerd; then start_containerd; started+=(containerd); fi
  wait_until 60 containerd containerd containerd_ready
  import_images
  phases+=("containerd+images $(elapsed "$t0")s")
  if ! is_running kube-proxy; then start_kube_proxy; started+=(kube-proxy); fi
  if ! is_running coredns; then start_coredns "$ip"; started+=(coredns); fi
  if ! is_running kubelet; then start_kubelet "$ip"; started+=(kubelet); fi
  wait_until 60 kube-proxy kube-proxy kube_proxy_ready
  wait_until 60 coredns coredns coredns_ready
}

# --- down -------------------------------------------------------------------------------
# The pods' containers: every task in containerd's k8s.io namespace killed and deleted,
# then the shims that served our socket (found by their -address argument).
stop_containers() {
  if is_running containerd; then
    local id
    for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    sleep 0.5
    for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$id" >/dev/null 2>&1 || true; done
  fi
  local p cmd
  for p in /proc/[0-9]*; do
    cmd="$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null)" || continue
    [[ "$cmd" == *containerd-shim-runc-v2*"-address $CONTAINERD_SOCK "* ]] || continue
    log "stopping leftover shim ${p#/proc/}"
    kill -KILL "${p#/proc/}" 2>/dev/null || true
  done
}

# Mounts under the kubelet's and containerd's directories (volumes, rootfs overlays, netns),
# deepest first.
unmount_node_dirs() {
  local m
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done < <(node_mounts | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-)
}
node_mounts() { findmnt -rn -o TARGET | grep -E "^($KUBELET_DIR|$CONTAINERD_DIR|$CONTAINERD_RUN)(/|$)" || true; }

# remove_chains IPTABLES: rules jumping to KUBE-*/CNI-* chains, then those chains (what
# kube-proxy --cleanup leaves: the kubelet's canaries, the bridge plugin's chains).
remove_chains() {
  local ipt="$1" table rules line chains chain
  command -v "$ipt" >/dev/null || return 0
  for table in filter nat mangle raw; do
    rules="$("$ipt-save" -t "$table" 2>/dev/null)" || continue
    chains="$(sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\).*/\1/p' <<<"$rules")"
    [[ -n "$chains" ]] || continue
    while read -r line; do
      [[ -n "$line" ]] || continue
      # iptables-save quotes the rule's words (comments) as a shell would.
      eval "\"\$ipt\" -t \"\$table\" -D ${line#-A }" 2>/dev/null || true
    done <<<"$(grep -E '^-A [A-Z]+ .*-j (KUBE|CNI)-' <<<"$rules" || true)"
    for chain in $chains; do "$ipt" -t "$table" -F "$chain" 2>/dev/null || true; done
    for chain in $chains; do "$ipt" -t "$table" -X "$chain" 2>/dev/null || true; done
  done
}

# The kubelet's cgroups (kubepods under each v1 controller), empty once the containers are gone.
remove_pod_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d "$d" ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  return 0
}

# stop_real_node: everything the real node made, whether it runs or not (idempotent).
stop_real_node() {
  local c
  [[ -e "$RUN_DIR/real-node" ]] || return 0
  # kube-router first: it would put back the chains removed below.
  for c in kube-router kubelet coredns kube-proxy; do stop_component "$c"; done
  stop_containers
  stop_component containerd
  unmount_node_dirs
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
  rm -rf "$CNI_DIR/ipam"
  # Never delete through a mount that would not go.
  if node_mounts | grep -q .; then
    log "mounts left under the node's directories: $(node_mounts | tr '\n' ' ')"
  else
    rm -rf "$CONTAINERD_RUN"
  fi
  if [[ -x "$K8S_BIN/kube-proxy" ]] && grep -q '^:KUBE-' <<<"$(iptables-save 2>/dev/null)"; then
    "$K8S_BIN/kube-proxy" --cleanup >>"$LOG_DIR/kube-proxy.log" 2>&1 || true
  fi
  remove_chains iptables
  remove_chains ip6tables
  remove_ipsets
  remove_pod_cgroups
  # The shims' sockets are always under /run/containerd/s (containerd's compiled-in state
  # dir): that directory, when empty, goes too.
  rmdir /run/containerd/s /run/containerd 2>/dev/null || true
  if [[ -s "$RUN_DIR/ip_forward.saved" ]]; then
    cat "$RUN_DIR/ip_forward.saved" > "$IP_FORWARD"
    rm -f "$RUN_DIR/ip_forward.saved"
  fi
  rm -f "$RUN_DIR/real-node"
}
