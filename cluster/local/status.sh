#!/usr/bin/env bash
# Show the state of the local stack started by up.sh. Exit 0 iff everything is up.
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

if [[ ! -f "$PORTS_FILE" ]]; then
  log "not set up: no $PORTS_FILE (run cluster/local/up.sh)"
  exit 1
fi
load_ports
rc=0
show() { # show NAME DETAIL
  if is_running "$1"; then
    printf '  %-14s running  pid %-8s %s\n' "$1" "$(pid_of "$1")" "$2"
  else
    printf '  %-14s STOPPED           %s\n' "$1" "$2"
    rc=1
  fi
}
log "state dir: $STATE"
if [[ -f "$PGDATA/postmaster.pid" ]]; then head -n1 "$PGDATA/postmaster.pid" >"$PIDS/postgres.pid"; else rm -f "$PIDS/postgres.pid"; fi
show postgres "127.0.0.1:$PG_PORT  data $PGDATA"
show mlflow "http://127.0.0.1:$MLFLOW_PORT  (basic auth)"
show ray-head "GCS 127.0.0.1:$RAY_PORT  jobs/dashboard http://127.0.0.1:$RAY_DASHBOARD_PORT"
for f in "$PIDS"/ray-worker-*.pid; do
  [[ -e "$f" ]] || continue
  show "$(basename "$f" .pid)" "worker node"
done

if is_running mlflow; then
  if "$PY" -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" \
      "http://127.0.0.1:$MLFLOW_PORT/health" 2>/dev/null; then
    echo "  mlflow /health: OK"
  else
    echo "  mlflow /health: FAILED"; rc=1
  fi
fi
if is_running ray-head; then
  (
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$SECRETS/ray_auth_token"
    unset RAY_ADDRESS
    "$VENV/bin/ray" status --address "127.0.0.1:$RAY_PORT" 2>&1 | sed -n '/^Node status/,/^Pending Demands/p' | sed 's/^/  /'
  ) || rc=1
fi
[[ -f "$STATE/env.sh" ]] && echo "  client env: . $STATE/env.sh"
exit $rc
