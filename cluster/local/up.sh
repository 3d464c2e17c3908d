#!/usr/bin/env bash
# Bring up the local seedlab stack on this one machine (idempotent):
#   1. PostgreSQL  - private instance in $STATE/pg, 127.0.0.1 only, generated password
#   2. MLflow      - `mlflow server` (basic auth, PostgreSQL backend, proxied artifacts
#                    in $STATE/mlflow/artifacts), 127.0.0.1 only
#   3. Ray         - a real multi-node cluster: `ray start --head` + N x `ray start
#                    --address=...` worker nodes, token auth, dashboard on 127.0.0.1
# and write $STATE/env.sh for clients.  Settings: see _common.sh.  Secrets are
# generated into $STATE/secrets (0600) and passed to processes through files or
# exported environment variables, never on command lines or in logs.
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

[[ -x "$VENV/bin/ray" && -x "$VENV/bin/mlflow" ]] || die "ray/mlflow not found in $VENV (set SEEDLAB_VENV)"
"$PY" -c 'import psycopg2, flask_wtf' 2>/dev/null || die "psycopg2/Flask-WTF missing in $VENV: run cluster/local/install.sh"
PG_BIN="$(pg_bindir)" || die "PostgreSQL binaries not found: run cluster/local/install.sh"
PG_USER_OS="$(pg_os_user)"

HEAD_CPUS="${SEEDLAB_RAY_HEAD_CPUS:-1}"
N_WORKERS="${SEEDLAB_RAY_WORKERS:-1}"
WORKER_CPUS="${SEEDLAB_RAY_WORKER_CPUS:-1}"
WORKER_GPUS="${SEEDLAB_RAY_WORKER_GPUS:-0}"
OBJ_BYTES="${SEEDLAB_RAY_OBJECT_STORE_BYTES:-268435456}"
MLFLOW_WORKERS="${SEEDLAB_MLFLOW_WORKERS:-1}"

mkdir -p "$STATE" "$SECRETS" "$LOGS" "$PIDS" "$MLFLOW_DIR/artifacts"
chmod 711 "$STATE"        # traversable (PostgreSQL runs as its own user), not listable
# Never committable, even before the repo's .gitignore lists it (it holds secrets).
[[ -f "$STATE/.gitignore" ]] || printf '# created by cluster/local/up.sh: nothing here is committed\n*\n' >"$STATE/.gitignore"
chmod 700 "$SECRETS" "$LOGS" "$PIDS" "$MLFLOW_DIR"
log "state dir: $STATE"

# ---------------------------------------------------------------- ports
load_ports
# set_port KEY DEFAULT_PORT OVERRIDE_VAR COMPONENT: keep KEY from ports.env unless
# it is unset or (component not running and port now busy).
set_port() {
  local key="$1" def="$2" var="$3" comp="$4" cur p
  cur="${!key-}"
  if [[ -n "$cur" ]] && is_running "$comp"; then
    [[ -z "${!var-}" || "${!var}" == 0 || "${!var}" == "$cur" ]] ||
      log "$comp is running on port $cur; ignoring $var=${!var} (run down.sh first to change it)"
    return
  fi
  if [[ -n "${!var-}" && "${!var}" != 0 && "${!var}" != "$cur" ]]; then cur=""; fi  # explicit override changed
  if [[ -n "$cur" ]] && port_free "$cur"; then return; fi
  [[ -n "$cur" ]] && log "port $cur for $key is busy; choosing another"
  p="$(choose_port "$var" "$def")"
  printf -v "$key" '%s' "$p"
}
set_port PG_PORT "" SEEDLAB_PG_PORT postgres
set_port MLFLOW_PORT 5000 SEEDLAB_MLFLOW_PORT mlflow
set_port RAY_PORT 6379 SEEDLAB_RAY_PORT ray-head
set_port RAY_DASHBOARD_PORT 8265 SEEDLAB_RAY_DASHBOARD_PORT ray-head
set_port RAY_CLIENT_PORT "" SEEDLAB_RAY_CLIENT_PORT_UNUSED ray-head
for ((i = 0; i <= N_WORKERS; i++)); do
  comp=ray-head; ((i > 0)) && comp="ray-worker-$i"
  set_port "RAY_AGENT_PORT_$i" "" SEEDLAB_RAY_AGENT_PORT_UNUSED "$comp"
done
# Each node gets its own block of 64 worker ports (Ray's default range would be
# shared by all nodes on this host and by any other Ray instance here).
if [[ -z "${RAY_WORKER_PORT_BASE-}" || "${RAY_WORKER_PORT_NODES:-0}" -lt $((N_WORKERS + 1)) ]]; then
  RAY_WORKER_PORT_BASE="$(free_port_block $((64 * (N_WORKERS + 1))) 20000 30000)"
  RAY_WORKER_PORT_NODES=$((N_WORKERS + 1))
fi
if [[ -z "${RAY_TEMP_DIR-}" ]]; then
  RAY_TEMP_DIR="$STATE/ray"
  # Ray puts unix sockets under <temp>/session_*/sockets/ (worker node i: <temp>/w<i>/session_*/...);
  # keep the path short (<108 bytes).
  if ((${#RAY_TEMP_DIR} > 40)); then
    RAY_TEMP_DIR="/tmp/seedlab-ray-$(printf '%s' "$STATE" | sha1sum | cut -c1-10)"
  fi
fi
{
  echo "# ports chosen by cluster/local/up.sh"
  for k in PG_PORT MLFLOW_PORT RAY_PORT RAY_DASHBOARD_PORT RAY_CLIENT_PORT RAY_WORKER_PORT_BASE \
           RAY_WORKER_PORT_NODES RAY_TEMP_DIR; do
    printf '%s=%q\n' "$k" "${!k}"
  done
  for ((i = 0; i <= N_WORKERS; i++)); do k="RAY_AGENT_PORT_$i"; printf '%s=%q\n' "$k" "${!k}"; done
} >"$PORTS_FILE"

# ---------------------------------------------------------------- secrets
for s in pg_password mlflow_admin_password mlflow_password flask_secret_key ray_auth_token; do
  ensure_secret "$s"
done

# ---------------------------------------------------------------- PostgreSQL
start_postgres() {
  if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
    mkdir -p "$PGDIR"
    chown "$PG_USER_OS" "$PGDIR"
    chmod 700 "$PGDIR"
    log "initdb $PGDATA (superuser '$PG_USER_OS', local socket: peer auth; TCP: scram-sha-256)"
    as_pg "$PG_BIN/initdb" -D "$PGDATA" -U "$PG_USER_OS" --auth-local=peer \
      --auth-host=scram-sha-256 -E UTF8 --no-locale >"$LOGS/initdb.log" 2>&1 ||
      { cat "$LOGS/initdb.log" >&2; die "initdb failed"; }
  fi
  as_pg mkdir -p "$PGSOCK"
  as_pg chmod 700 "$PGSOCK"
  # Our settings live in an include file rewritten on every start (the port may change).
  as_pg tee "$PGDATA/seedlab.conf" >/dev/null <<EOF
# written by cluster/local/up.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGSOCK'
unix_socket_permissions = 0700
password_encryption = 'scram-sha-256'
max_connections = 50
shared_buffers = 64MB
EOF
  grep -q "^include_if_exists = 'seedlab.conf'" "$PGDATA/postgresql.conf" ||
    echo "include_if_exists = 'seedlab.conf'" | as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null

  if as_pg "$PG_BIN/pg_ctl" status -D "$PGDATA" >/dev/null 2>&1; then
    log "PostgreSQL already running (pid $(head -n1 "$PGDATA/postmaster.pid"), 127.0.0.1:$PG_PORT)"
  else
    as_pg "$PG_BIN/pg_ctl" start -D "$PGDATA" -l "$PGLOG" -w -t 60 -s ||
      { tail -n 20 "$PGLOG" >&2; die "PostgreSQL failed to start"; }
    log "started PostgreSQL pid $(head -n1 "$PGDATA/postmaster.pid") on 127.0.0.1:$PG_PORT (data: $PGDATA, log: $PGLOG)"
  fi
  head -n1 "$PGDATA/postmaster.pid" >"$PIDS/postgres.pid"

  # Role + databases (idempotent). SQL goes through stdin so the password is not in argv.
  local pw
  pw="$(cat "$SECRETS/pg_password")"
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGSOCK" -p "$PG_PORT" -U "$PG_USER_OS" -d postgres >/dev/null <<EOF
SELECT 'CREATE ROLE $PG_ROLE LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE')\gexec
ALTER ROLE $PG_ROLE WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '$pw';
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_ROLE' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')\gexec
SELECT 'CREATE DATABASE $PG_AUTH_DB OWNER $PG_ROLE' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_AUTH_DB')\gexec
EOF
  # libpq password file: lets MLflow connect with a password-free URI.
  (umask 077 && printf '127.0.0.1:%s:*:%s:%s\n' "$PG_PORT" "$PG_ROLE" "$pw" >"$SECRETS/pgpass")
  log "PostgreSQL databases '$PG_DB', '$PG_AUTH_DB' owned by role '$PG_ROLE' (password: $SECRETS/pg_password)"
}

# ---------------------------------------------------------------- MLflow
wait_http_ok() { # wait_http_ok URL TIMEOUT PIDNAME
  local url="$1" timeout="$2" name="$3" i
  for ((i = 0; i < timeout; i++)); do
    if "$PY" -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url" 2>/dev/null; then
      return 0
    fi
    is_running "$name" || return 1
    sleep 1
  done
  return 1
}

launch_mlflow() {
  local url="http://127.0.0.1:$MLFLOW_PORT"
  (umask 077 && cat >"$MLFLOW_DIR/basic_auth.ini" <<EOF
# written by cluster/local/up.sh; admin password comes from \$MLFLOW_AUTH_ADMIN_PASSWORD
[mlflow]
default_permission = READ
database_uri = postgresql+psycopg2://$PG_ROLE@127.0.0.1:$PG_PORT/$PG_AUTH_DB
admin_username = $MLFLOW_ADMIN_USER
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# Without this cache every request re-checks the password hash (deliberately slow): it was most of a
# trial's logging time (~8 requests per trial). A changed or deleted password stops working at once on
# this single-worker server (the API invalidates the cache), on other workers within the TTL.
auth_cache_ttl_seconds = ${SEEDLAB_MLFLOW_AUTH_CACHE_TTL:-60}
EOF
  )
  if is_running mlflow; then
    log "MLflow already running (pid $(pid_of mlflow), $url)"
    return
  fi
  (
    # Secrets are exported (not passed as arguments) so they never show in `ps`.
    export PGPASSFILE="$SECRETS/pgpass"
    export MLFLOW_AUTH_CONFIG_PATH="$MLFLOW_DIR/basic_auth.ini"
    export MLFLOW_AUTH_ADMIN_PASSWORD="$(cat "$SECRETS/mlflow_admin_password")"
    export MLFLOW_FLASK_SERVER_SECRET_KEY="$(cat "$SECRETS/flask_secret_key")"
    export MLFLOW_BACKEND_STORE_URI="postgresql+psycopg2://$PG_ROLE@127.0.0.1:$PG_PORT/$PG_DB"
    unset MLFLOW_TRACKING_URI MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD
    # No server-side job runner (huey consumers for GenAI scoring): seedlab does not use it, and
    # it is ~8 extra processes on a 2-core machine.
    export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${SEEDLAB_MLFLOW_JOB_EXECUTION:-false}"
    cd "$MLFLOW_DIR"
    exec setsid "$VENV/bin/mlflow" server --host 127.0.0.1 --port "$MLFLOW_PORT" \
      --serve-artifacts --artifacts-destination "$MLFLOW_DIR/artifacts" \
      --app-name basic-auth --workers "$MLFLOW_WORKERS"
  ) >>"$LOGS/mlflow.log" 2>&1 </dev/null &
  echo $! >"$PIDS/mlflow.pid"
  MLFLOW_LAUNCHED=1
  log "launched MLflow server pid $(pid_of mlflow) (log $LOGS/mlflow.log); Ray starts while it initialises"
}

wait_mlflow() {
  local url="http://127.0.0.1:$MLFLOW_PORT"
  if ! wait_http_ok "$url/health" 240 mlflow; then
    tail -n 30 "$LOGS/mlflow.log" >&2
    die "MLflow server did not become healthy (log: $LOGS/mlflow.log)"
  fi
  if [[ -n "${MLFLOW_LAUNCHED:-}" ]]; then
    log "started MLflow server pid $(pid_of mlflow) at $url (basic auth; backend postgresql+psycopg2://$PG_ROLE@127.0.0.1:$PG_PORT/$PG_DB; artifacts $MLFLOW_DIR/artifacts)"
  fi
  "$PY" "$CLUSTER_LOCAL_DIR/_mlflow_user.py" "$url" "$MLFLOW_ADMIN_USER" \
    "$SECRETS/mlflow_admin_password" "$MLFLOW_CLIENT_USER" "$SECRETS/mlflow_password"
}

# ---------------------------------------------------------------- Ray
ray_env() {
  # Environment every Ray node (and so every job driver, task and actor) inherits:
  # token auth, the venv on PATH, and the MLflow tracking URI + client credentials.
  export RAY_AUTH_MODE=token
  export RAY_AUTH_TOKEN_PATH="$SECRETS/ray_auth_token"
  export RAY_USAGE_STATS_ENABLED=0
  export PATH="$VENV/bin:$PATH"
  export MLFLOW_TRACKING_URI="http://127.0.0.1:$MLFLOW_PORT"
  export MLFLOW_TRACKING_USERNAME="$MLFLOW_CLIENT_USER"
  export MLFLOW_TRACKING_PASSWORD="$(cat "$SECRETS/mlflow_password")"
  # Data and storage. A `ray job submit --working-dir` job runs from a copy of the checkout inside the
  # Ray temp dir, where seedlab's `../shared/data` lookup finds nothing: every node gets SEEDLAB_DATA.
  # Tune's experiment state goes into the state dir (removed by `down.sh --purge`), not ~/ray_results.
  if [[ -n "$NODE_DATA" ]]; then export SEEDLAB_DATA="$NODE_DATA"; fi
  export SEEDLAB_RAY_STORAGE="${SEEDLAB_RAY_STORAGE:-$STATE/ray-results}"
  if [[ "${SEEDLAB_CLUSTER_OFFLINE:-1}" == 1 ]]; then
    # A loopback-only stack: data is read in place, nothing is fetched from the Hugging Face hub.
    export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
  fi
  unset RAY_ADDRESS RAY_AUTH_TOKEN
}

# The data dir the nodes get: $SEEDLAB_DATA, else the nearest shared/data above the checkout.
node_data_dir() {
  if [[ -n "${SEEDLAB_DATA:-}" ]]; then echo "$SEEDLAB_DATA"; return; fi
  local d="$REPO_ROOT"
  while [[ "$d" != / ]]; do
    if [[ -d "$d/shared/data" ]]; then echo "$d/shared/data"; return; fi
    d="$(dirname "$d")"
  done
}
NODE_DATA="$(node_data_dir)"

wait_log() { # wait_log FILE PATTERN TIMEOUT PIDNAME
  local i
  for ((i = 0; i < $3 * 2; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    is_running "$4" || return 1
    sleep 0.5
  done
  return 1
}

ray_node_count() {
  (ray_env; "$VENV/bin/ray" status --address "127.0.0.1:$RAY_PORT" 2>/dev/null) |
    awk '/^Active:/{a=1;next} /^Pending:/{a=0} a && /node_/{n++} END{print n+0}'
}

start_ray() {
  local wlo whi name logf i
  if is_running ray-head; then
    log "Ray head already running (pid $(pid_of ray-head), GCS 127.0.0.1:$RAY_PORT)"
  else
    wlo=$RAY_WORKER_PORT_BASE; whi=$((wlo + 63))
    logf="$LOGS/ray-head.log"
    : >"$logf"
    (
      ray_env
      exec setsid "$VENV/bin/ray" start --head --block \
        --node-ip-address=127.0.0.1 --port="$RAY_PORT" \
        --dashboard-host=127.0.0.1 --dashboard-port="$RAY_DASHBOARD_PORT" \
        --ray-client-server-port="$RAY_CLIENT_PORT" \
        --dashboard-agent-listen-port="$RAY_AGENT_PORT_0" \
        --min-worker-port="$wlo" --max-worker-port="$whi" \
        --num-cpus="$HEAD_CPUS" --num-gpus=0 --resources='{"seedlab_head": 1}' \
        --object-store-memory="$OBJ_BYTES" --temp-dir="$RAY_TEMP_DIR" \
        --disable-usage-stats --log-style=record
    ) >>"$logf" 2>&1 </dev/null &
    echo $! >"$PIDS/ray-head.pid"
    wait_log "$logf" "Ray runtime started" 120 ray-head ||
      { tail -n 30 "$logf" >&2; die "Ray head failed to start (log: $logf)"; }
    log "started Ray head pid $(pid_of ray-head): GCS 127.0.0.1:$RAY_PORT, dashboard/jobs http://127.0.0.1:$RAY_DASHBOARD_PORT, $HEAD_CPUS CPU (log $logf)"
    log "Ray nodes' data dir: ${NODE_DATA:-none found (set SEEDLAB_DATA)}; Tune storage: ${SEEDLAB_RAY_STORAGE:-$STATE/ray-results}"
  fi
  for ((i = 1; i <= N_WORKERS; i++)); do
    name="ray-worker-$i"
    if is_running "$name"; then
      log "Ray worker node $i already running (pid $(pid_of "$name"))"
      continue
    fi
    wlo=$((RAY_WORKER_PORT_BASE + 64 * i)); whi=$((wlo + 63))
    # Its own temp dir (inside the head's): nodes sharing one session dir on one host share
    # runtime_resources/, and a second node unpacking a job's working_dir there deletes and
    # re-creates the directory the job's driver is running in (its cwd vanishes).
    local agent="RAY_AGENT_PORT_$i"
    logf="$LOGS/$name.log"
    : >"$logf"
    (
      ray_env
      exec setsid "$VENV/bin/ray" start --block --address="127.0.0.1:$RAY_PORT" \
        --node-ip-address=127.0.0.1 \
        --dashboard-agent-listen-port="${!agent}" \
        --min-worker-port="$wlo" --max-worker-port="$whi" \
        --num-cpus="$WORKER_CPUS" --num-gpus="$WORKER_GPUS" \
        --resources="{\"seedlab_worker\": 1, \"seedlab_worker_$i\": 1}" \
        --object-store-memory="$OBJ_BYTES" --temp-dir="$RAY_TEMP_DIR/w$i" \
        --disable-usage-stats --log-style=record
    ) >>"$logf" 2>&1 </dev/null &
    echo $! >"$PIDS/$name.pid"
    wait_log "$logf" "Ray runtime started" 120 "$name" ||
      { tail -n 30 "$logf" >&2; die "Ray worker node $i failed to start (log: $logf)"; }
    log "started Ray worker node $i pid $(pid_of "$name"): $WORKER_CPUS CPU, $WORKER_GPUS GPU, resource seedlab_worker (log $logf)"
  done
  local want=$((N_WORKERS + 1)) n=0
  for ((i = 0; i < 60; i++)); do
    n="$(ray_node_count)"
    ((n >= want)) && break
    sleep 1
  done
  ((n >= want)) || die "Ray reports $n alive nodes, expected $want"
  log "Ray cluster: $n nodes alive"
}

# ---------------------------------------------------------------- env.sh
write_env() {
  cat >"$STATE/env.sh" <<EOF
# Generated by cluster/local/up.sh -- source it:  . $STATE/env.sh
# Secrets are read from 0600 files at source time; this file holds none.
export SEEDLAB_CLUSTER_STATE=$(printf '%q' "$STATE")
# Ray Jobs API / dashboard URL: 'ray job submit|logs|list', 'ray list nodes' (state API).
export RAY_ADDRESS=http://127.0.0.1:$RAY_DASHBOARD_PORT
export RAY_API_SERVER_ADDRESS=http://127.0.0.1:$RAY_DASHBOARD_PORT
# GCS address. ray.init() and 'ray status' reject an http:// RAY_ADDRESS, so for a driver
# run directly on this machine use:  RAY_ADDRESS=\$SEEDLAB_RAY_GCS_ADDRESS python script.py
# and 'ray status --address \$SEEDLAB_RAY_GCS_ADDRESS'.
export SEEDLAB_RAY_GCS_ADDRESS=127.0.0.1:$RAY_PORT
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$(printf '%q' "$SECRETS/ray_auth_token")
# Tune experiment state of sweep drivers started from this machine (the nodes' drivers use the same).
export SEEDLAB_RAY_STORAGE=$(printf '%q' "${SEEDLAB_RAY_STORAGE:-$STATE/ray-results}")
export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT
export MLFLOW_TRACKING_USERNAME=$MLFLOW_CLIENT_USER
MLFLOW_TRACKING_PASSWORD="\$(cat $(printf '%q' "$SECRETS/mlflow_password"))"
export MLFLOW_TRACKING_PASSWORD
EOF
  chmod 600 "$STATE/env.sh"
}

start_postgres
launch_mlflow
start_ray
wait_mlflow
write_env

log "up: PostgreSQL 127.0.0.1:$PG_PORT | MLflow http://127.0.0.1:$MLFLOW_PORT | Ray GCS 127.0.0.1:$RAY_PORT, jobs http://127.0.0.1:$RAY_DASHBOARD_PORT ($((N_WORKERS + 1)) nodes)"
log "client environment: . $STATE/env.sh"
