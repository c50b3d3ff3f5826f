#!/usr/bin/env bash
# The whole stack on this machine: the local control plane + node agent, PostgreSQL, the
# CRD, the operator and the API on http://127.0.0.1:8000.
#   hack/stack.sh up     start what is not running (idempotent; restarts a dead component)
#   hack/stack.sh down   stop all of it
#   hack/stack.sh demo   submit examples/hand-hygiene.md and examples/uspstf-screening.pdf,
#                        wait, print each summary and checklist (the PDF's with page numbers)
# OPENAI_API_KEY / OPENAI_BASE_URL / GUIDELINE_PROVIDER / GUIDELINE_MODEL from the
# environment reach the runner pods through a Secret and a ConfigMap, never literal Job env.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
VENV_BIN="$REPO_ROOT/.venv/bin"
KUBECTL="$K8S_BIN/kubectl"
PG_PORT="${GUIDELINE_PG_PORT:-55432}"
PG_DIR="$LOCAL_DIR/postgres"
API_HOST="${GUIDELINE_HOST:-127.0.0.1}"
API_PORT="${GUIDELINE_PORT:-8000}"
NAMESPACE="${GUIDELINE_NAMESPACE:-default}"
DATABASE_URL="postgresql://guideline@127.0.0.1:$PG_PORT/guideline"
# The runner pods' chunk cache: a role that may only SELECT and INSERT chunk_summaries
# (made by guideline-migrate --cache-role; local PostgreSQL trusts 127.0.0.1, no password).
CACHE_ROLE=guideline_runner_cache
CACHE_DATABASE_URL="postgresql://$CACHE_ROLE@127.0.0.1:$PG_PORT/guideline"
mkdir -p "$RUN_DIR" "$LOG_DIR"

say() { echo "[stack] $*"; }
alive() { [[ -f "$RUN_DIR/$1.pid" ]] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }
kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

start_postgres() {
  if "$HACK_DIR/pg_ctl.sh" status -D "$PG_DIR/data" >/dev/null 2>&1; then say "postgres running"; return; fi
  if [[ ! -f "$PG_DIR/data/PG_VERSION" ]]; then
    say "initialising PostgreSQL in $PG_DIR"
    "$HACK_DIR/pg_ctl.sh" initdb -D "$PG_DIR/data" -o "--username=guideline --auth=trust --encoding=UTF8" >/dev/null
  fi
  "$HACK_DIR/pg_ctl.sh" start -D "$PG_DIR/data" -l "$LOG_DIR/postgres.log" -w \
    -o "-p $PG_PORT -k /tmp -c listen_addresses=127.0.0.1" >/dev/null
  head -n 1 "$PG_DIR/data/postmaster.pid" > "$RUN_DIR/postgres.pid"
  "$(dirname "$(ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)")/psql" -h 127.0.0.1 -p "$PG_PORT" -U guideline -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='guideline'" | grep -q 1 ||
    "$(dirname "$(ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)")/createdb" -h 127.0.0.1 -p "$PG_PORT" -U guideline guideline
  say "postgres on 127.0.0.1:$PG_PORT"
}

ensure_api_key() {
  # An admin key of tenant `local`, made by `guideline-api keys` (the file keeps its hash
  # only). A key file from an earlier release (`local:<hash>`, a member) is replaced.
  local keys="$LOCAL_DIR/api-keys"
  if [[ -s "$LOCAL_DIR/api-key" ]] && grep -Eq '^local:[0-9a-f]{64}:local:admin$' "$keys" 2>/dev/null; then
    return
  fi
  "$VENV_BIN/guideline-api" keys revoke local --keys-file "$keys" >/dev/null 2>&1 || true
  local key
  key="$("$VENV_BIN/guideline-api" keys create --tenant local --role admin --id local \
    --keys-file "$keys" | tail -n 1)"
  (umask 077 && printf '%s\n' "$key" > "$LOCAL_DIR/api-key")
}

ensure_webhook_secret() {
  # The local tenant's webhook signing secret (kept in PostgreSQL; made once, then shown).
  local secret
  # The URL in the environment, not argv (it may carry a password).
  secret="$(GUIDELINE_DATABASE_URL="$DATABASE_URL" "$VENV_BIN/guideline-api" webhook-secret \
    create --tenant local | tail -n 1)"
  (umask 077 && printf '%s\n' "$secret" > "$LOCAL_DIR/webhook-secret")
}

apply_cluster_config() {
  kc apply -f "$REPO_ROOT/crds/" >/dev/null
  kc -n "$NAMESPACE" apply -f "$HACK_DIR/manifests/runner-rbac.yaml" >/dev/null
  local provider="${GUIDELINE_PROVIDER:-}"
  if [[ -z "$provider" ]]; then
    if [[ -n "${OPENAI_API_KEY:-}" ]]; then provider=openai; else provider=extractive; fi
  fi
  local cm_args=(--from-literal=GUIDELINE_PROVIDER="$provider")
  [[ -n "${OPENAI_BASE_URL:-}" ]] && cm_args+=(--from-literal=OPENAI_BASE_URL="$OPENAI_BASE_URL")
  [[ -n "${GUIDELINE_MODEL:-}" ]] && cm_args+=(--from-literal=GUIDELINE_MODEL="$GUIDELINE_MODEL")
  # Tracing: the API and the operator inherit OTEL_*; the runner pods get the endpoint here.
  [[ -n "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ]] &&
    cm_args+=(--from-literal=OTEL_EXPORTER_OTLP_ENDPOINT="$OTEL_EXPORTER_OTLP_ENDPOINT")
  kc -n "$NAMESPACE" create configmap guideline-runner-config "${cm_args[@]}" \
    --dry-run=client -o yaml | kc apply -f - >/dev/null
  if [[ -n "${OPENAI_API_KEY:-}" ]]; then
    kc -n "$NAMESPACE" create secret generic guideline-openai --from-literal=api-key="$OPENAI_API_KEY" \
      --dry-run=client -o yaml | kc apply -f - >/dev/null
  fi
  # The runner's per-chunk summary cache, as its own role (docs/contracts.md, "Database").
  kc -n "$NAMESPACE" create secret generic guideline-runner-cache \
    --from-literal=database-url="$CACHE_DATABASE_URL" --dry-run=client -o yaml | kc apply -f - >/dev/null
  say "runner provider: $provider"
}

start_component() { # name, command...
  local name="$1"; shift
  if alive "$name"; then say "$name running (pid $(cat "$RUN_DIR/$name.pid"))"; return; fi
  (
    export KUBECONFIG="$KUBECONFIG_PATH" GUIDELINE_DATABASE_URL="$DATABASE_URL" \
      GUIDELINE_NAMESPACE="$NAMESPACE" GUIDELINE_API_KEYS_FILE="$LOCAL_DIR/api-keys" \
      GUIDELINE_HOST="$API_HOST" GUIDELINE_PORT="$API_PORT" \
      GUIDELINE_WEBHOOK_ALLOW_PRIVATE="${GUIDELINE_WEBHOOK_ALLOW_PRIVATE:-true}" \
      GUIDELINE_RUNNER_API_URL="${GUIDELINE_RUNNER_API_URL:-http://$API_HOST:$API_PORT}"
    setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 < /dev/null &
    echo $! > "$RUN_DIR/$name.pid"
  )
  say "$name started (pid $(cat "$RUN_DIR/$name.pid"), log .local/log/$name.log)"
}

wait_api() {
  for _ in $(seq 1 100); do
    curl -fsS "http://$API_HOST:$API_PORT/health/live" >/dev/null 2>&1 && return 0
    alive api || { tail -n 20 "$LOG_DIR/api.log" >&2; return 1; }
    sleep 0.2
  done
  echo "API did not come up; see .local/log/api.log" >&2; return 1
}

stop_pidfile() {
  local name="$1"
  alive "$name" || { rm -f "$RUN_DIR/$name.pid"; return; }
  local pid; pid="$(cat "$RUN_DIR/$name.pid")"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  rm -f "$RUN_DIR/$name.pid"
  say "$name stopped"
}

case "${1:-}" in
  up)
    t0=$EPOCHREALTIME
    bash "$HACK_DIR/cluster.sh" up >/dev/null
    start_postgres
    ensure_api_key
    apply_cluster_config
    "$VENV_BIN/guideline-migrate" --database-url "$DATABASE_URL" --cache-role "$CACHE_ROLE" >/dev/null
    ensure_webhook_secret
    start_component operator "$VENV_BIN/guideline-operator" --standalone --namespace "$NAMESPACE"
    start_component api "$VENV_BIN/guideline-api"
    wait_api
    say "up in $(python3 -c "print(f'{$EPOCHREALTIME - $t0:.1f}')") s: API http://$API_HOST:$API_PORT (docs at /docs)"
    say "API key in .local/api-key, webhook secret in .local/webhook-secret; kubeconfig: export KUBECONFIG=$KUBECONFIG_PATH"
    ;;
  down)
    stop_pidfile api
    stop_pidfile operator
    if "$HACK_DIR/pg_ctl.sh" status -D "$PG_DIR/data" >/dev/null 2>&1; then
      "$HACK_DIR/pg_ctl.sh" stop -D "$PG_DIR/data" -m fast >/dev/null && say "postgres stopped"
    fi
    rm -f "$RUN_DIR/postgres.pid"
    bash "$HACK_DIR/cluster.sh" down
    ;;
  demo)
    "$VENV_BIN/guideline-client" --url "http://$API_HOST:$API_PORT" submit \
      "$REPO_ROOT/examples/hand-hygiene.md" --title "Hand hygiene" --wait
    # A real guideline as a PDF (17 pages): extracted in the runner pod, every checklist
    # item cited with its page.
    "$VENV_BIN/guideline-client" --url "http://$API_HOST:$API_PORT" submit \
      "$REPO_ROOT/examples/uspstf-screening.pdf" --title "USPSTF recommendations (PDF)" --wait
    ;;
  *) echo "usage: $0 up|down|demo" >&2; exit 2 ;;
esac
