#!/usr/bin/env bash
# Install what the local cluster needs beyond the Python venv:
#   * PostgreSQL server binaries (Debian package `postgresql`), without letting
#     Debian create/start its default system-wide "main" cluster on a fresh
#     install (up.sh runs a private instance instead);
#   * psycopg2-binary into the venv (SQLAlchemy's PostgreSQL driver for MLflow) and
#     Flask-WTF (the `mlflow[auth]` extra, needed by `mlflow server --app-name basic-auth`).
#
# Usage: cluster/local/install.sh [VENV]       (default: $SEEDLAB_VENV or <repo>/.venv)
# Idempotent: a no-op when everything is already installed. Needs root for apt.
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

VENV="${1:-$VENV}"
PY="$VENV/bin/python"
[[ -x "$PY" ]] || die "no Python at $PY (create the venv first, e.g. 'make venv')"

if bindir="$(pg_bindir)"; then
  log "PostgreSQL already installed: $bindir"
else
  [[ $EUID -eq 0 ]] || die "PostgreSQL is missing and installing it needs root (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  log "installing PostgreSQL (apt-get install postgresql) ..."
  apt-get update -qq
  # postgresql-common first, so that we can switch off the automatic creation of
  # the system "main" cluster (which would listen on 5432 as a system service).
  apt-get install -y -qq --no-install-recommends postgresql-common >/dev/null
  if [[ -f /etc/postgresql-common/createcluster.conf ]] &&
     ! grep -q '^create_main_cluster *= *false' /etc/postgresql-common/createcluster.conf; then
    sed -i 's/^#\? *create_main_cluster.*/create_main_cluster = false/' \
      /etc/postgresql-common/createcluster.conf
    grep -q '^create_main_cluster' /etc/postgresql-common/createcluster.conf ||
      echo 'create_main_cluster = false' >>/etc/postgresql-common/createcluster.conf
    log "set create_main_cluster = false in /etc/postgresql-common/createcluster.conf"
  fi
  apt-get install -y -qq --no-install-recommends postgresql postgresql-client >/dev/null
  bindir="$(pg_bindir)" || die "PostgreSQL installed but initdb not found"
  log "installed PostgreSQL: $bindir"
fi
command -v runuser >/dev/null || [[ $EUID -ne 0 ]] || die "runuser (util-linux) is required"

for tool in ray mlflow; do
  [[ -x "$VENV/bin/$tool" ]] || die "$VENV/bin/$tool missing: install the project with ray[tune,default] and mlflow"
done

# psycopg2: SQLAlchemy driver for postgresql+psycopg2:// URIs (MLflow backend + auth store).
# flask_wtf: what the `mlflow[auth]` extra adds (CSRF for `--app-name basic-auth`).
missing=()
"$PY" -c 'import psycopg2' 2>/dev/null || missing+=(psycopg2-binary)
"$PY" -c 'import flask_wtf' 2>/dev/null || missing+=("Flask-WTF<2")
if ((${#missing[@]} == 0)); then
  log "psycopg2 and Flask-WTF already importable in $VENV"
else
  log "installing ${missing[*]} into $VENV ..."
  "$PY" -m pip install -q --disable-pip-version-check "${missing[@]}"
  "$PY" -c 'import psycopg2, flask_wtf; print("[seedlab-cluster] psycopg2", psycopg2.__version__, "| Flask-WTF", flask_wtf.__version__)'
fi
log "install ok"
