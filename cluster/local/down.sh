#!/usr/bin/env bash
# Stop the local stack started by up.sh -- only the processes it recorded:
#   Ray worker nodes, Ray head  (SIGTERM to the `ray start --block` pid: Ray then
#                                shuts down that node's own processes; `ray stop`
#                                is NOT used, it would kill every Ray on the host)
#   MLflow server               (SIGTERM to its process group)
#   PostgreSQL                  (pg_ctl stop -m fast)
# Usage: cluster/local/down.sh [--purge]   --purge also deletes the state dir
# (databases, artifacts, secrets). Idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

PURGE=0
[[ "${1:-}" == "--purge" ]] && PURGE=1

if [[ ! -d "$STATE" ]]; then
  log "nothing to stop: no state dir $STATE"
  exit 0
fi
load_ports

# Ray worker nodes first, then the head.
for f in "$PIDS"/ray-worker-*.pid; do
  [[ -e "$f" ]] || continue
  stop_pid "$(basename "$f" .pid)" 45
done
stop_pid ray-head 60

# Safety net: Ray processes of *this* cluster that outlived their node (matched by
# our private temp dir or GCS address on their command line, never by name alone).
if [[ -n "${RAY_TEMP_DIR:-}" || -n "${RAY_PORT:-}" ]]; then
  leftovers="$("$PY" - "${RAY_TEMP_DIR:-/nonexistent-seedlab}" "127.0.0.1:${RAY_PORT:-0}" <<'EOF'
import os, sys
temp_dir, gcs = sys.argv[1], sys.argv[2]
me = os.getpid()
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) == me:
        continue
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        continue
    if temp_dir + "/" in cmd or f"--gcs-address={gcs}" in cmd or f"--gcs_server_port={gcs.rsplit(':',1)[1]} " in cmd:
        print(pid)
EOF
)"
  if [[ -n "$leftovers" ]]; then
    log "terminating leftover Ray processes of this cluster: $(echo $leftovers)"
    kill -TERM $leftovers 2>/dev/null || true
    sleep 3
    for p in $leftovers; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true; done
  fi
fi

stop_pid mlflow 30

if PG_BIN="$(pg_bindir)" && [[ -f "$PGDATA/PG_VERSION" ]]; then
  if as_pg "$PG_BIN/pg_ctl" status -D "$PGDATA" >/dev/null 2>&1; then
    log "stopping PostgreSQL (pid $(head -n1 "$PGDATA/postmaster.pid" 2>/dev/null))"
    as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA" -m fast -w -t 60 -s
  fi
fi
rm -f "$PIDS/postgres.pid"

# Report anything still listening on the ports this stack used.
ports=()
for k in PG_PORT MLFLOW_PORT RAY_PORT RAY_DASHBOARD_PORT RAY_CLIENT_PORT $(compgen -v RAY_AGENT_PORT_ || true); do
  [[ -n "${!k-}" ]] && ports+=("${!k}")
done
if ((${#ports[@]})); then
  busy="$(listening_ports "${ports[@]}")"
  if [[ -n "$busy" ]]; then
    log "WARNING: still listening after shutdown on port(s): $busy"
  else
    log "nothing listening any more on this stack's ports (${ports[*]})"
  fi
fi

if ((PURGE)); then
  [[ -n "${RAY_TEMP_DIR:-}" && "$RAY_TEMP_DIR" == /tmp/seedlab-ray-* ]] && rm -rf "$RAY_TEMP_DIR"
  rm -rf "$STATE"
  log "purged $STATE"
fi
log "down"
