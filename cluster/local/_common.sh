# shellcheck shell=bash
# Shared helpers for cluster/local/*.sh. Sourced, never executed.
#
# Everything the local stack creates lives under one state directory
# (default: <repo>/.cluster, which must stay gitignored):
#
#   $STATE/secrets/   0700  generated secrets (0600 files), never printed
#   $STATE/pg/        0700  PostgreSQL data dir, socket dir and server log
#   $STATE/mlflow/          basic_auth.ini (0600) and proxied artifact store
#   $STATE/logs/            Ray / MLflow process logs
#   $STATE/pids/            one pid file per process we started
#   $STATE/ports.env        ports chosen on the first `up` (reused afterwards)
#   $STATE/env.sh           what a client sources to reach the stack
#
# Settings (environment variables, all optional):
#   SEEDLAB_CLUSTER_STATE        state dir                       [<repo>/.cluster]
#   SEEDLAB_VENV                 venv with ray/mlflow/psycopg2   [<repo>/.venv]
#   SEEDLAB_PG_PORT              PostgreSQL port        (0=auto) [auto]
#   SEEDLAB_MLFLOW_PORT          MLflow server port     (0=auto) [5000, else auto]
#   SEEDLAB_RAY_PORT             Ray GCS port           (0=auto) [6379, else auto]
#   SEEDLAB_RAY_DASHBOARD_PORT   Ray dashboard/jobs API (0=auto) [8265, else auto]
#   SEEDLAB_RAY_HEAD_CPUS        logical CPUs on the head node             [1]
#   SEEDLAB_RAY_WORKERS          number of worker nodes                    [1]
#   SEEDLAB_RAY_WORKER_CPUS      logical CPUs per worker node              [1]
#   SEEDLAB_RAY_WORKER_GPUS      logical GPUs per worker node (tests)      [0]
#   SEEDLAB_RAY_OBJECT_STORE_BYTES  object store per node          [268435456]
#   SEEDLAB_MLFLOW_WORKERS       MLflow server worker processes            [1]
#   SEEDLAB_MLFLOW_JOB_EXECUTION MLflow server-side job runner (true/false)  [false]
#   SEEDLAB_MLFLOW_AUTH_CACHE_TTL seconds a verified password is cached (0: off)  [60]
#   SEEDLAB_DATA                 data dir every Ray node gets   [<repo>/../shared/data, if it exists]
#   SEEDLAB_RAY_STORAGE          Tune experiment storage for drivers on the nodes  [$STATE/ray-results]
#   SEEDLAB_CLUSTER_OFFLINE      1: nodes get HF_HUB_OFFLINE=1 etc. (no hub traffic)  [1]
# An explicitly set port that is busy is an error; a default port that is busy
# is replaced by a free one (and the choice is printed and kept in ports.env).

set -euo pipefail

CLUSTER_LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_LOCAL_DIR/../.." && pwd)"
STATE="${SEEDLAB_CLUSTER_STATE:-$REPO_ROOT/.cluster}"
VENV="${SEEDLAB_VENV:-$REPO_ROOT/.venv}"
PY="$VENV/bin/python"

SECRETS="$STATE/secrets"
PGDIR="$STATE/pg"
PGDATA="$PGDIR/data"
PGSOCK="$PGDIR/run"
PGLOG="$PGDIR/postgres.log"
MLFLOW_DIR="$STATE/mlflow"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
PORTS_FILE="$STATE/ports.env"

PG_DB=mlflow            # tracking store
PG_AUTH_DB=mlflow_auth  # basic-auth user store
PG_ROLE=mlflow          # login role used by the MLflow server
MLFLOW_ADMIN_USER=admin
MLFLOW_CLIENT_USER=seedlab

log() { printf '[seedlab-cluster %3ss] %s\n' "$SECONDS" "$*"; }
die() { printf '[seedlab-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

# --- processes ---------------------------------------------------------------

pid_of() { [[ -f "$PIDS/$1.pid" ]] && cat "$PIDS/$1.pid" || true; }

is_running() { # is_running NAME -> 0 if the pid in $PIDS/NAME.pid is alive
  local pid
  pid="$(pid_of "$1")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

# stop_pid NAME [TIMEOUT]: SIGTERM the recorded process (and its process group,
# which it leads because we started it under setsid), wait, then SIGKILL.
stop_pid() {
  local name="$1" timeout="${2:-30}" pid i
  pid="$(pid_of "$name")"
  if [[ -z "$pid" ]]; then return 0; fi
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 4; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not exit after ${timeout}s; sending SIGKILL to its process group"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # Leftovers of the same process group (e.g. uvicorn workers).
  if pgrep_group "$pid" >/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    sleep 1
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$PIDS/$name.pid"
}

# pgrep_group PGID: list live pids in process group PGID (exit 1 if none).
pgrep_group() {
  local pgid="$1" found=1 p
  for p in /proc/[0-9]*; do
    [[ -r "$p/stat" ]] || continue
    # field 5 of /proc/PID/stat is the pgid (comm may contain spaces: cut after ')')
    local rest
    rest="$(sed 's/^.*) //' "$p/stat" 2>/dev/null)" || continue
    set -- $rest
    if [[ "${3:-}" == "$pgid" ]]; then echo "${p#/proc/}"; found=0; fi
  done
  return $found
}

# --- ports ---------------------------------------------------------------------

port_free() { # port_free PORT -> 0 if 127.0.0.1:PORT and *:PORT can be bound
  # SO_REUSEADDR like the servers themselves: TIME_WAIT leftovers do not count as busy.
  "$PY" - "$1" <<'EOF'
import socket, sys
port = int(sys.argv[1])
for host in ("127.0.0.1", "0.0.0.0"):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
EOF
}

# listening_ports PORT...: print those of the given TCP ports that have a LISTEN socket
# on any address (IPv4 or IPv6), from /proc/net/tcp{,6}.
listening_ports() {
  "$PY" - "$@" <<'EOF'
import sys
want = {int(p) for p in sys.argv[1:]}
seen = set()
for f in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        lines = open(f).read().splitlines()[1:]
    except OSError:
        continue
    for ln in lines:
        parts = ln.split()
        if parts[3] == "0A":  # TCP_LISTEN
            port = int(parts[1].rsplit(":", 1)[1], 16)
            if port in want:
                seen.add(port)
print(" ".join(map(str, sorted(seen))))
EOF
}

random_free_port() {
  "$PY" - <<'EOF'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
EOF
}

# free_port_block SIZE LO HI: first port P in [LO,HI) with P..P+SIZE-1 all free.
free_port_block() {
  "$PY" - "$@" <<'EOF'
import random, socket, sys
size, lo, hi = map(int, sys.argv[1:4])
def free(p):
    s = socket.socket()
    try:
        s.bind(("0.0.0.0", p)); return True
    except OSError:
        return False
    finally:
        s.close()
starts = list(range(lo, hi - size, size)); random.shuffle(starts)
for st in starts:
    if all(free(p) for p in range(st, st + size)):
        print(st); break
else:
    sys.exit("no free port block")
EOF
}

# choose_port VAR DEFAULT: honour an explicit $VAR (0 = auto), else DEFAULT if free,
# else a free port.  Prints the port.
choose_port() {
  local var="$1" def="$2" val
  val="${!var-}"
  if [[ -n "$val" && "$val" != 0 ]]; then
    port_free "$val" || die "$var=$val is already in use"
    echo "$val"; return
  fi
  if [[ -z "$val" && -n "$def" ]] && port_free "$def"; then echo "$def"; return; fi
  random_free_port
}

load_ports() { [[ -f "$PORTS_FILE" ]] && source "$PORTS_FILE" || true; }

# --- secrets -------------------------------------------------------------------

# ensure_secret NAME: create $SECRETS/NAME (0600, 32 random bytes hex) if missing.
ensure_secret() {
  local f="$SECRETS/$1"
  if [[ ! -s "$f" ]]; then
    (umask 077 && "$PY" -c 'import secrets,sys; sys.stdout.write(secrets.token_hex(32))' >"$f")
    log "generated secret $f (0600)"
  fi
  chmod 600 "$f"
}

# --- PostgreSQL ------------------------------------------------------------------

pg_bindir() {
  if [[ -n "${SEEDLAB_PG_BINDIR:-}" ]]; then echo "$SEEDLAB_PG_BINDIR"; return 0; fi
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
  if [[ -n "$d" && -x "$d/initdb" ]]; then echo "$d"; return 0; fi
  d="$(command -v initdb 2>/dev/null || true)"
  if [[ -n "$d" ]]; then dirname "$d"; return 0; fi
  return 1
}

# PostgreSQL refuses to run as root, so as root we run it as the `postgres`
# system user (created by the Debian package) and it owns $PGDIR.
pg_os_user() { if [[ $EUID -eq 0 ]]; then echo postgres; else id -un; fi; }

as_pg() { # as_pg CMD...: run as the PostgreSQL OS user, from / (cwd may be private)
  if [[ $EUID -eq 0 ]]; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}
