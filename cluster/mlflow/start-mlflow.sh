#!/bin/sh
# Entrypoint of the MLflow server container (docker-compose.yaml and kubernetes.yaml).
# Secrets are read from files (Docker secrets / a mounted Kubernetes Secret) and exported, so
# they never appear on a command line, in `ps`, or in the config file:
#   $SECRETS_DIR/pg_password            password of PostgreSQL role `mlflow` (libpq: PGPASSWORD)
#   $SECRETS_DIR/s3_access_key_id       S3/MinIO credentials for the artifact bucket
#   $SECRETS_DIR/s3_secret_access_key
#   $SECRETS_DIR/mlflow_admin_password  bootstrap password of the basic-auth `admin` user
#   $SECRETS_DIR/flask_secret_key       CSRF key of the basic-auth app (same on every replica)
# Non-secret settings come from the environment; defaults suit docker-compose.yaml.
set -eu
SECRETS_DIR="${SECRETS_DIR:-/run/secrets}"
secret() { cat "$SECRETS_DIR/$1"; }

export PGPASSWORD="$(secret pg_password)"
export AWS_ACCESS_KEY_ID="$(secret s3_access_key_id)"
export AWS_SECRET_ACCESS_KEY="$(secret s3_secret_access_key)"
export MLFLOW_AUTH_ADMIN_PASSWORD="$(secret mlflow_admin_password)"
export MLFLOW_FLASK_SERVER_SECRET_KEY="$(secret flask_secret_key)"

PGHOST="${PGHOST:-postgres}"
PGPORT="${PGPORT:-5432}"
# Tracking store and basic-auth user store: two databases, role `mlflow`, no password in the URIs.
export MLFLOW_BACKEND_STORE_URI="postgresql+psycopg2://mlflow@${PGHOST}:${PGPORT}/mlflow"

# basic_auth.ini (no secret in it: the admin password comes from MLFLOW_AUTH_ADMIN_PASSWORD).
AUTH_INI="${TMPDIR:-/tmp}/basic_auth.ini"
cat >"$AUTH_INI" <<INI
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = postgresql+psycopg2://mlflow@${PGHOST}:${PGPORT}/mlflow_auth
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# Verified passwords are cached this long per worker. Without the cache every request re-checks the
# (deliberately slow) password hash, which dominated trial logging. A changed or deleted password may
# keep working on the other workers for up to this long.
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL_SECONDS:-60}
INI
export MLFLOW_AUTH_CONFIG_PATH="$AUTH_INI"

# MLFLOW_SERVER_ALLOWED_HOSTS (Host-header allow-list, DNS-rebinding protection) and
# MLFLOW_S3_ENDPOINT_URL (MinIO) are read by the server from the environment.
# Inside a container the server must listen on all of the container's interfaces (0.0.0.0);
# what is reachable from outside is decided by the published port / Service, not here.
exec mlflow server \
  --host "${MLFLOW_HOST:-0.0.0.0}" --port "${MLFLOW_PORT:-5000}" \
  --serve-artifacts --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-s3://mlflow-artifacts}" \
  --app-name basic-auth \
  --workers "${MLFLOW_WORKERS:-2}"
