"""How many requests a trial's logging makes against a real tracking server (`mlflow server` on 127.0.0.1 with
a SQLite backend and served artifacts), counted by a recording proxy in front of it.

A trial's store traffic is its skip check and `log_run`: one runs/search, then create, one log-batch (params
and metrics within MLflow's limits), one upload per artifact file, update. The old `log_run` fetched the run
back (runs/get) to find its artifact repository, and its workers let `set_terminated` fetch it once more to
print the run's URL: 7 requests where 5 do (this test fails on it with the extra runs/get).
"""

from __future__ import annotations

import http.client
import http.server
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager

import numpy as np
import pytest

from seedlab.store import contract
from seedlab.store.contract import (KIND_TRIAL, MAX_METRICS_PER_BATCH, TAG_KIND, TAG_TRIAL_KEY, first_run,
                                    log_run)
from seedlab.store.predictions import write_predictions
from local_http import serving

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The base URL of a real `mlflow server` (its own process group, stopped by its pid at the end)."""
    tmp = tmp_path_factory.mktemp("server")
    port = _free_port()
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                             f"sqlite:///{tmp}/mlflow.db", "--artifacts-destination", str(tmp / "artifacts"),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not start in 180 s"
                time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@contextmanager
def recording(target: str):
    """A proxy on 127.0.0.1 passing every request on to `target`; yields (its URL, [(method, path), ...])."""
    host, port = target.removeprefix("http://").split(":")
    seen: list[tuple[str, str]] = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _forward(self):
            seen.append((self.command, self.path.split("?")[0]))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            upstream = http.client.HTTPConnection(host, int(port), timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            upstream.request(self.command, self.path, body=body, headers={**headers, "Host": f"{host}:{port}"})
            answer = upstream.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for k, v in answer.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            upstream.close()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    with serving(Proxy) as url:
        yield url, seen


def _endpoints(seen) -> list[str]:
    """Each request as `METHOD endpoint`; an artifact upload as `PUT artifact`."""
    return [f"{m} artifact" if "/mlflow-artifacts/" in p else f"{m} {p.split('/mlflow/', 1)[-1]}" for m, p in seen]


def _log_trial(client, experiment_id, tmp_path, *, steps: int):
    parquet = write_predictions(tmp_path / "validation.parquet", ["a", "b", "c"], [0, 1, 1], [0, 1, 0],
                                np.full((3, 2), 0.5, dtype=np.float32))
    metrics = [("eval_accuracy", 2 / 3, 0)] + [("train_loss", 1.0 / (s + 1), s) for s in range(steps)]
    return log_run(client, experiment_id, "rte/tiny/p0/f0", {f"p{i}": i for i in range(30)}, metrics,
                   {TAG_KIND: KIND_TRIAL, TAG_TRIAL_KEY: "k"}, {"predictions": str(parquet)})


def test_a_trial_logs_in_five_requests_and_fetches_no_run(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # as trial workers set it
    experiment_id = contract.get_or_create_experiment(contract.client(server), "trips", server)
    with recording(server) as (url, seen):
        client = contract.client(url)
        assert first_run(client, [experiment_id], KIND_TRIAL, tags={TAG_TRIAL_KEY: "k"}) is None  # the skip check
        run_id = _log_trial(client, experiment_id, tmp_path, steps=40)
    assert _endpoints(seen) == ["POST runs/search", "POST runs/create", "POST runs/log-batch", "PUT artifact",
                                "POST runs/update"]
    run = contract.client(server).get_run(run_id)  # everything arrived
    assert run.info.status == "FINISHED" and len(run.data.params) == 30
    assert len(contract.client(server).get_metric_history(run_id, "train_loss")) == 40
    assert [a.path for a in contract.client(server).list_artifacts(run_id, "predictions")] == \
        ["predictions/validation.parquet"]


def test_a_long_loss_curve_takes_as_few_batches_as_mlflows_limits_allow(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    experiment_id = contract.get_or_create_experiment(contract.client(server), "trips-long", server)
    steps = MAX_METRICS_PER_BATCH + 10  # one batch more than the metric limit allows in one
    with recording(server) as (url, seen):
        run_id = _log_trial(contract.client(url), experiment_id, tmp_path, steps=steps)
    assert _endpoints(seen).count("POST runs/log-batch") == 2  # ceil((steps + 1) / limit), and no more
    assert len(contract.client(server).get_metric_history(run_id, "train_loss")) == steps
