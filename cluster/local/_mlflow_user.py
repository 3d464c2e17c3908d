"""Ensure a (non-admin) MLflow basic-auth user exists with the password in a file.

Usage: python _mlflow_user.py URL ADMIN_USER ADMIN_PASSWORD_FILE USER PASSWORD_FILE

Passwords are read from files (never argv) and never printed. Uses only the
stdlib so it works before/without importing mlflow.
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.parse
import urllib.request


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip()


def _call(url: str, method: str, auth: tuple[str, str], body: dict | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback URL)
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def main(argv: list[str]) -> int:
    base, admin_user, admin_pw_file, user, pw_file = argv
    base = base.rstrip("/")
    admin = (admin_user, _read(admin_pw_file))
    password = _read(pw_file)

    status, _ = _call(
        f"{base}/api/2.0/mlflow/users/get?" + urllib.parse.urlencode({"username": user}),
        "GET",
        admin,
    )
    if status == 200:
        status, text = _call(
            f"{base}/api/2.0/mlflow/users/update-password",
            "PATCH",
            admin,
            {"username": user, "password": password},
        )
        action = "exists, password synced"
    else:
        status, text = _call(
            f"{base}/api/2.0/mlflow/users/create",
            "POST",
            admin,
            {"username": user, "password": password},
        )
        action = "created"
    if status != 200:
        print(f"[seedlab-cluster] ERROR: MLflow user '{user}': HTTP {status}: {text[:300]}", file=sys.stderr)
        return 1
    print(f"[seedlab-cluster] MLflow basic-auth user '{user}' (non-admin): {action}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
