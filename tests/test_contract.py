"""The trial-run contract (seedlab/store/contract.py) on real stores: a SQLite MLflow store in tmp_path, a
real lock held on its database, real closed ports, a small real HTTP server on 127.0.0.1 that answers what
a refusing or overloaded tracking server answers, and real Ray Tune trials.

- queries page through every result (the old code asked once with max_results and lost the rest);
- `retry` retries transient store errors only, and raises anything else at once;
- `log_run` logs a run whole, and marks it FAILED when a step fails;
- the loader says what went wrong (a missing artifact vs. a store that refuses);
- a trial leaves no temporary directory behind; the tuning stage fine-tunes from the sweep's first
  pretraining seed.
"""

from __future__ import annotations

import http.server
import io
import json
import socket
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from seedlab.errors import SeedlabError
from seedlab.store import contract
from seedlab.store.contract import (KIND_SWEEP, KIND_TRIAL, TAG_KIND, TAG_TRIAL_KEY, find_runs, finished_trial_runs,
                                    first_run, is_transient, log_run, retry)
from seedlab.store.predictions import write_predictions
from local_http import serving

# the task and the tokenizer's corpus of the Ray trials below
needs_trial_data = pytest.mark.needs_data("glue/SST-2", "corpus/wikitext-2")
TINY_CELL = {"task": "sst2", "model": "tiny", "pretrain_seed": 0, "finetune_seed": 0,
             "hparams": {"learning_rate": 1e-3, "batch_size": 16, "epochs": 1, "max_seq_length": 32},
             "data": {"max_train": 32, "max_eval": 16}}


@pytest.fixture(autouse=True)
def _http_client_fails_fast(monkeypatch):
    """MLflow's HTTP client retries and waits by itself; here each store call is one request."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


@pytest.fixture
def store(tmp_path):
    """(client, experiment id, tracking URI, database path) of a fresh SQLite store."""
    db = tmp_path / "store" / "mlflow.db"
    uri = f"sqlite:///{db}"
    client = contract.client(uri)
    return client, contract.get_or_create_experiment(client, "contract", uri), uri, db


class Counted:
    """A store method that counts its calls and keeps the errors it raised; `on_error` runs after each."""

    def __init__(self, call, on_error=None):
        self.call, self.on_error, self.calls, self.errors = call, on_error, 0, []

    def __call__(self, *args, **kwargs):
        self.calls += 1
        try:
            return self.call(*args, **kwargs)
        except Exception as exc:
            self.errors.append(exc)
            if self.on_error:
                self.on_error(exc)
            raise


@contextmanager
def answering(*answers):
    """A real HTTP server on 127.0.0.1 giving `answers` in turn, (status, content type, body) each, the last
    one to every later request. Yields (base URL, the paths it was asked for)."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self):
            asked.append(self.path)
            status, ctype, body = answers[min(len(asked), len(answers)) - 1]
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

    with serving(Handler) as url:
        yield url, asked


def closed_port() -> int:
    with socket.socket() as s:  # bound, then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def experiment_json(experiment_id: str, name: str) -> str:
    return json.dumps({"experiment": {"experiment_id": experiment_id, "name": name, "lifecycle_stage": "active",
                                      "artifact_location": "file:///nowhere"}})


def _trial_run(client, experiment_id, tmp_path, i, *, artifacts=True, ids=("a", "b", "c")):
    params = {"task": "sst2", "model": "tiny", "pretrain_seed": i, "finetune_seed": 0}
    parquet = write_predictions(tmp_path / f"run{i}" / "validation.parquet", list(ids), [0, 1, 1],
                                [0, 1, i % 2], np.full((3, 2), 0.5))
    return log_run(client, experiment_id, f"sst2/tiny/p{i}/f0", params, [("eval_accuracy", 0.5, 0)],
                   {TAG_KIND: KIND_TRIAL, TAG_TRIAL_KEY: f"key-{i}"},
                   {"predictions": str(parquet)} if artifacts else {})


# --------------------------------------------------------------------------------------------------
# paged queries
# --------------------------------------------------------------------------------------------------


def test_every_query_reads_every_page(store, tmp_path):
    from seedlab.analysis.loader import load_experiment

    client, experiment_id, uri, _ = store
    ids = [_trial_run(client, experiment_id, tmp_path, i) for i in range(7)]
    contract.start_sweep_run(client, experiment_id, "s", {"tasks": "sst2"})
    # one request of that size sees one page: what a query without page tokens would have returned
    assert len(client.search_runs([experiment_id], contract.run_filter(KIND_TRIAL), max_results=3)) == 3

    assert sorted(r.info.run_id for r in find_runs(client, [experiment_id], KIND_TRIAL, page_size=3)) == sorted(ids)
    assert finished_trial_runs(client, experiment_id, page_size=3) == {f"key-{i}": ids[i] for i in range(7)}
    assert len(find_runs(client, [experiment_id], KIND_TRIAL, page_size=3, limit=5)) == 5
    assert len(find_runs(client, [experiment_id], status=None, page_size=3)) == 8  # every kind: the sweep too
    assert first_run(client, [experiment_id], KIND_SWEEP, status="RUNNING").data.tags[TAG_KIND] == KIND_SWEEP
    loaded = load_experiment("contract", uri, page_size=3)
    assert sorted(loaded.tables["sst2"].run_ids) == sorted(ids)
    assert loaded.run_status == {"FINISHED": 7}


# --------------------------------------------------------------------------------------------------
# retry: transient errors only
# --------------------------------------------------------------------------------------------------


def test_a_locked_sqlite_database_is_waited_for(store):
    """A writer holds the database's write lock; the store call fails with a real "database is locked"
    (after MLflow's own 20 s busy timeout), the lock is released, and the retry succeeds."""
    client, experiment_id, _, db = store
    run_id = client.create_run(experiment_id).info.run_id
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    call = Counted(client.set_tag, on_error=lambda exc: holder.in_transaction and holder.rollback())
    try:
        retry(call, run_id, "after", "the lock")
    finally:
        if holder.in_transaction:
            holder.rollback()
        holder.close()
    assert call.calls == 2 and "database is locked" in str(call.errors[0]) and is_transient(call.errors[0])
    assert client.get_run(run_id).data.tags["after"] == "the lock"


def test_a_refused_connection_is_retried(monkeypatch):
    client = contract.client(f"http://127.0.0.1:{closed_port()}")
    call = Counted(client.get_experiment_by_name)
    with pytest.raises(Exception) as raised:
        retry(call, "x", attempts=3)
    assert call.calls == 3 and "Connection refused" in str(raised.value)
    assert all(is_transient(e) for e in call.errors)


@pytest.mark.parametrize("status", [503, 429])
def test_an_overloaded_server_is_retried_until_it_answers(status):
    with answering((status, "text/plain", "busy"), (200, "application/json", experiment_json("7", "x"))) as (url, asked):
        call = Counted(contract.client(url).get_experiment_by_name)
        found = retry(call, "x")
    assert found.experiment_id == "7" and call.calls == 2 and len(asked) == 2
    assert is_transient(call.errors[0])


def test_a_server_that_stays_unavailable_is_given_up_on():
    with answering((503, "text/plain", "down for maintenance")) as (url, asked):
        call = Counted(contract.client(url).get_experiment_by_name)
        with pytest.raises(Exception, match="503"):
            retry(call, "x", attempts=3)
    assert call.calls == 3 and len(asked) == 3


@pytest.mark.parametrize("answer", [
    (403, "text/plain", "forbidden"),
    (401, "text/plain", "who are you"),
    (403, "application/json", json.dumps({"error_code": "PERMISSION_DENIED", "message": "no access"})),
    (401, "application/json", json.dumps({"error_code": "UNAUTHENTICATED", "message": "no credentials"})),
    (200, "text/html", "<html>the Ray dashboard, not MLflow</html>"),  # a wrong port answers, and not in JSON
], ids=["403", "401", "403-json", "401-json", "200-not-mlflow"])
def test_a_refusing_or_wrong_server_is_raised_at_once(answer):
    with answering(answer) as (url, asked):
        call = Counted(contract.client(url).get_experiment_by_name)
        with pytest.raises(Exception):
            retry(call, "x")
    assert call.calls == 1 and len(asked) == 1 and not is_transient(call.errors[0])


def test_a_missing_file_and_a_missing_run_are_raised_at_once(store, tmp_path):
    client, experiment_id, _, _ = store
    run_id = client.create_run(experiment_id).info.run_id
    log = Counted(client.log_artifact)
    with pytest.raises(FileNotFoundError):
        retry(log, run_id, str(tmp_path / "never-written.parquet"))
    get = Counted(client.get_run)
    with pytest.raises(Exception, match="not found") as raised:
        retry(get, "0" * 32)
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert log.calls == 1 and get.calls == 1


def test_a_broken_database_is_raised_at_once(store):
    """MLflow wraps every SQLite OperationalError as TEMPORARILY_UNAVAILABLE (503); a missing table is not
    going to come back, so it must not be retried for a minute."""
    client, experiment_id, _, db = store
    run_id = client.create_run(experiment_id).info.run_id
    with sqlite3.connect(db) as raw:
        raw.execute("ALTER TABLE tags RENAME TO tags_gone")
    call = Counted(client.set_tag)
    with pytest.raises(Exception, match="no such table"):
        retry(call, run_id, "k", "v")
    assert call.calls == 1 and call.errors[0].error_code == "TEMPORARILY_UNAVAILABLE"


# --------------------------------------------------------------------------------------------------
# log_run
# --------------------------------------------------------------------------------------------------


def test_log_run_logs_a_directory_a_file_and_every_batch(store, tmp_path):
    client, experiment_id, _, _ = store
    folder = tmp_path / "checkpoint"
    (folder / "nested").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "nested" / "weights.bin").write_bytes(b"\0" * 10)
    single = tmp_path / "notes.txt"
    single.write_text("a file at the root")
    params = {f"p{i:03d}": i for i in range(150)}  # more than one log_batch takes (100 params)
    metrics = [("train_loss", 1.0 / (1 + s), s) for s in range(1200)]  # and more than 1000 metrics
    run_id = log_run(client, experiment_id, "logged", params, metrics, {TAG_KIND: KIND_TRIAL},
                     {"checkpoint": str(folder), "": str(single)})
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "logged"
    assert run.data.params == {k: str(v) for k, v in params.items()}
    history = client.get_metric_history(run_id, "train_loss")
    assert sorted(m.step for m in history) == list(range(1200))
    root = {a.path for a in client.list_artifacts(run_id)}
    assert root == {"checkpoint", "notes.txt"}
    assert {a.path for a in client.list_artifacts(run_id, "checkpoint")} == {"checkpoint/config.json",
                                                                            "checkpoint/nested"}
    assert [a.path for a in client.list_artifacts(run_id, "checkpoint/nested")] == ["checkpoint/nested/weights.bin"]


def test_log_run_marks_the_run_failed_when_an_artifact_vanishes(store, tmp_path):
    client, experiment_id, _, _ = store
    kept = tmp_path / "kept.parquet"
    kept.write_bytes(b"kept")
    vanished = tmp_path / "vanished.parquet"
    vanished.write_bytes(b"gone before it was logged")
    vanished.unlink()
    with pytest.raises(FileNotFoundError):
        log_run(client, experiment_id, "half", {"a": 1}, [], {TAG_KIND: KIND_TRIAL},
                {"predictions": str(kept), "representations": str(vanished)})
    (run,) = find_runs(client, [experiment_id], status=None)
    assert run.info.status == "FAILED" and run.info.run_name == "half"
    assert first_run(client, [experiment_id], KIND_TRIAL) is None  # no FINISHED run to be taken for a result


# --------------------------------------------------------------------------------------------------
# the loader says what went wrong
# --------------------------------------------------------------------------------------------------


def test_a_run_without_its_predictions_is_named(store, tmp_path):
    from seedlab.analysis.loader import load_experiment

    client, experiment_id, uri, _ = store
    _trial_run(client, experiment_id, tmp_path, 0)
    missing = _trial_run(client, experiment_id, tmp_path, 1, artifacts=False)
    with pytest.raises(SeedlabError, match=rf"run sst2/tiny/p1/f0 \({missing}\) has no "
                                           r"predictions/validation.parquet artifact"):
        load_experiment("contract", uri)


def test_an_artifact_store_that_refuses_is_named_as_refusing(tmp_path):
    """The runs are readable but their artifacts sit on an HTTP artifact store (the REST form an MLflow
    artifact server serves) that answers 403: the error must say 403, not that the artifact is missing."""
    from seedlab.analysis.loader import load_experiment

    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    client = contract.client(uri)
    with answering((403, "text/plain", "forbidden")) as (url, asked):
        experiment_id = client.create_experiment(
            "refused", artifact_location=f"{url}/api/2.0/mlflow-artifacts/artifacts/refused")
        run_id = _trial_run(client, experiment_id, tmp_path, 0, artifacts=False)
        with pytest.raises(SeedlabError) as raised:
            load_experiment("refused", uri)
    message = str(raised.value)
    assert f"could not read predictions/validation.parquet of run sst2/tiny/p0/f0 ({run_id})" in message
    assert "403" in message and "has no" not in message
    assert len(asked) == 1  # refused once, not retried


def test_a_tracking_server_that_refuses_is_named_as_refusing():
    from seedlab.analysis.loader import load_experiment

    body = json.dumps({"error_code": "PERMISSION_DENIED", "message": "user alice may not read experiment x"})
    with answering((403, "application/json", body)) as (url, asked):
        with pytest.raises(Exception, match="PERMISSION_DENIED: user alice may not read experiment x"):
            load_experiment("x", url)
    assert len(asked) == 1


# --------------------------------------------------------------------------------------------------
# real Ray Tune trials
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_tmpdir(tmp_path_factory):
    """A local Ray runtime whose workers get their own empty TMPDIR (yielded) and checkpoint cache."""
    ray = pytest.importorskip("ray")
    tmpdir = tmp_path_factory.mktemp("worker-tmp")
    checkpoints = tmp_path_factory.mktemp("checkpoints")  # workers read their environment at ray.init
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"TMPDIR": str(tmpdir), "SEEDLAB_CHECKPOINTS": str(checkpoints)}})
    try:
        yield tmpdir
    finally:
        ray.shutdown()


@pytest.mark.integration
@needs_trial_data
def test_a_trial_leaves_no_temporary_directory_behind(ray_tmpdir, tmp_path):
    from ray import tune

    from seedlab.run.trial import run_trial, trial_key

    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    client = contract.client(uri)
    experiment_id = contract.get_or_create_experiment(client, "tmpdir", uri)
    context = {"tracking_uri": uri, "experiment_id": experiment_id, "sweep": "tmpdir"}
    seen, stop = set(), threading.Event()

    def watch():  # the trial's own directory, while it exists: proof that the check below looks in the right place
        while not stop.is_set():
            seen.update(p.name for p in ray_tmpdir.glob("seedlab-*"))
            stop.wait(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = tune.Tuner(run_trial, param_space={"cell": TINY_CELL, "context": context},
                             run_config=tune.RunConfig(storage_path=str(tmp_path / "ray_results"), verbose=0)).fit()
    finally:
        stop.set()
        watcher.join()
    assert not [r.error for r in results if r.error]
    run = first_run(client, [experiment_id], KIND_TRIAL)
    assert run is not None and run.data.tags[TAG_TRIAL_KEY] == trial_key(TINY_CELL)
    assert seen and all(name.startswith(f"seedlab-{trial_key(TINY_CELL)}-") for name in seen), seen
    assert list(ray_tmpdir.glob("seedlab-*")) == []


@pytest.mark.integration
@needs_trial_data
def test_tuning_fine_tunes_from_the_first_pretraining_seed(ray_tmpdir, tmp_path, monkeypatch):
    """A sweep with a pretraining stage and a tuning stage whose only pretraining seed is 3: the tuning
    trials must fine-tune from seed 3's checkpoint (it used to ask for seed 0 with seed 3's checkpoint key,
    and found none)."""
    from ray import tune

    from seedlab.run.sweep import SweepSpec, run_sweep
    from seedlab.run.tuning import TuningSpec
    from seedlab.store.contract import KIND_PRETRAIN, KIND_TUNING, KIND_TUNING_CHOICE

    monkeypatch.setenv("SEEDLAB_RAY_STORAGE", str(tmp_path / "ray_results"))  # the driver's Tune results
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    spec = SweepSpec(name="p3", tasks=("sst2",), models=("tiny",), pretrain_seeds=(3,), finetune_seeds=(0,),
                     hparams=TINY_CELL["hparams"], data=TINY_CELL["data"], pretrained=True,
                     pretrain={"tiny": {"max_steps": 2, "max_seq_length": 32, "max_train_lines": 60, "batch_size": 8,
                                        "eval_blocks": 4, "log_every": 1}},
                     tuning=TuningSpec(search_space={"learning_rate": tune.choice([1e-3])}, num_samples=1, seeds=(0,)))
    result = run_sweep(spec, "p3", uri, out=io.StringIO())
    assert (result.finished, result.failed) == (1, 0)
    client = contract.client(uri)
    experiment_id = client.get_experiment_by_name("p3").experiment_id
    (pretrained,) = find_runs(client, [client.get_experiment_by_name("p3-pretrain").experiment_id], KIND_PRETRAIN)
    assert pretrained.data.params["pretrain_seed"] == "3"
    (tuning,) = find_runs(client, [experiment_id], KIND_TUNING)
    assert tuning.data.params["pretrain_seed"] == "3"
    assert tuning.data.params["init_source"].startswith("checkpoint:")
    assert pretrained.info.run_id in tuning.data.params["init_source"]  # downloaded from that run
    assert tuning.data.params["init_source"].startswith(f"checkpoint:{ray_tmpdir.parent}")  # the test's own cache
    assert first_run(client, [experiment_id], KIND_TUNING_CHOICE) is not None
    (trial,) = find_runs(client, [experiment_id], KIND_TRIAL)
    assert trial.data.params["pretrain_seed"] == "3" and trial.data.params["init_source"].startswith("checkpoint:")
