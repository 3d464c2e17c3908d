#!/usr/bin/env bash
# Generate the secret files docker-compose.yaml mounts (cluster/mlflow/secrets/, dir 0700, gitignored).
# Idempotent: existing files are kept. For Kubernetes, load the same files into a Secret:
#   kubectl -n mlflow create secret generic mlflow-server --from-file=cluster/mlflow/secrets/
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/secrets"
mkdir -p "$dir" && chmod 700 "$dir"
gen() { [[ -s "$dir/$1" ]] || (umask 077 && python3 -c 'import secrets,sys; sys.stdout.write(secrets.token_hex(int(sys.argv[1])))' "$2" >"$dir/$1"); }
gen pg_password 32
gen mlflow_admin_password 32
gen flask_secret_key 32
gen s3_secret_access_key 32
[[ -s "$dir/s3_access_key_id" ]] || (umask 077 && printf 'mlflow' >"$dir/s3_access_key_id")
# The password of the non-admin `seedlab` user that clients and Ray workers use
# (create it once with the admin credentials, see docs/cluster.md).
gen seedlab_password 32
# The directory is 0700 (nobody else on the host can reach the files). The files themselves are
# 0644 because Compose bind-mounts file secrets with their host mode and the MLflow container
# runs as an unprivileged user (uid 10001) that must be able to read them.
chmod 644 "$dir"/*
echo "secrets in $dir:"; ls -1 "$dir"
