"""Shared set-up of the cluster tests: one local stack (cluster/local/up.sh) for the whole session.

`stack` brings PostgreSQL + MLflow (basic auth) + a 2-node Ray cluster (head and one worker node, one
logical CPU each) up in a private temporary state dir on free loopback ports, and down (`down.sh
--purge`) at the end, asserting nothing of it survives. Tests that break part of it (stop MLflow, kill
the worker node) restore it with `stack.up()` (up.sh is idempotent: it restarts only what is down).

The helpers (tests/cluster/_stack.py) only read what the stack and seedlab write: MLflow's REST API with
the client credentials, Ray's state API through the `ray` CLI, /proc, log files. Nothing is patched.

Set SEEDLAB_TEST_CLUSTER_REUSE=<state dir> to run against a stack you keep between runs (it is brought
up if needed and left running).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from _stack import VENV, Stack, assert_nothing_left, stack_leftovers, stack_skip_reason


def pytest_configure(config):
    config.addinivalue_line("markers", "faults: kills parts of a running local cluster (trial, driver, MLflow "
                                       "server, a Ray node) and checks the sweep recovers")


@pytest.fixture(scope="session")
def stack():
    reason = stack_skip_reason()
    if reason:
        pytest.skip(reason)
    reuse = os.environ.get("SEEDLAB_TEST_CLUSTER_REUSE")
    if reuse:
        base = Path(reuse).parent
    else:
        # Under /tmp, 0711: PostgreSQL runs as its own OS user and must traverse to its data dir.
        base = Path(tempfile.mkdtemp(prefix="seedlab-cluster-", dir="/tmp"))
        base.chmod(0o711)
    state = Path(reuse) if reuse else base / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "SEEDLAB_RAY", "PG"))}
    env.update(SEEDLAB_CLUSTER_STATE=str(state), SEEDLAB_VENV=str(VENV), SEEDLAB_PG_PORT="0",
               SEEDLAB_MLFLOW_PORT="0", SEEDLAB_RAY_PORT="0", SEEDLAB_RAY_DASHBOARD_PORT="0",
               SEEDLAB_RAY_WORKERS="1", SEEDLAB_RAY_HEAD_CPUS="1", SEEDLAB_RAY_WORKER_CPUS="1")
    s = Stack(base, state, env, reused=bool(reuse))
    try:
        started = time.time()
        s.up()
        print(f"\n[stack] up in {time.time() - started:.0f}s: {s.mlflow_uri}, jobs {s.client['RAY_ADDRESS']}")
        yield s
    finally:
        if not reuse:
            ports = {int(v) for k, v in s.ports.items() if k.endswith("_PORT") or k.startswith("RAY_AGENT_PORT_")}
            down = s.down()
            print(down.stdout[-2000:], down.stderr[-2000:])
            leftovers = stack_leftovers(ports, base)
            shutil.rmtree(base, ignore_errors=True)
            assert down.returncode == 0, down.stdout + down.stderr
            assert_nothing_left(*leftovers)
