#!/usr/bin/env bash
# pg_ctl for the test suite and the local stack. PostgreSQL refuses to run as root, and this
# machine and CI run as root: then this runs the real pg_ctl as the unprivileged `postgres`
# system user, after handing it the data directory (and its parent, where logs go).
set -euo pipefail
pg_bin="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
[[ -x "$pg_bin/pg_ctl" ]] || { echo "pg_ctl.sh: no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 1; }
if [[ "$(id -u)" != 0 ]]; then exec "$pg_bin/pg_ctl" "$@"; fi

args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    -D | --pgdata) datadir="${args[$((i + 1))]}" ;;
    --pgdata=*) datadir="${args[$i]#--pgdata=}" ;;
    -l | --log) logfile="${args[$((i + 1))]}" ;;
  esac
done
grant() { # make $1 owned by postgres and every ancestor traversable
  local dir="$1"
  mkdir -p "$dir"
  chown postgres "$dir"
  while [[ "$dir" != / ]]; do
    dir="$(dirname "$dir")"
    [[ -x "$dir" ]] && chmod o+x "$dir" 2>/dev/null || true
  done
}
[[ -n "${datadir:-}" ]] && { grant "$(dirname "$datadir")"; [[ -d "$datadir" ]] && chown -R postgres "$datadir"; }
[[ -n "${logfile:-}" ]] && grant "$(dirname "$logfile")"
cd /   # the caller's cwd may not be readable by postgres
exec runuser -u postgres -- "$pg_bin/pg_ctl" "$@"
