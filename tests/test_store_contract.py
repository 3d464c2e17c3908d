"""The trial-run contract on a real SQLite MLflow store: paged queries, retries of transient errors only,
log_run, and the loader naming what went wrong."""

import socket
import sqlite3

import numpy as np
import pytest
from mlflow.exceptions import MlflowException

from seedlab.analysis.loader import load_experiment
from seedlab.errors import SeedlabError
from seedlab.store.contract import (KIND_TRIAL, PREDICTIONS_DIR, TAG_KIND, TAG_TRIAL_KEY, client, find_runs,
                                    finished_trial_runs, get_or_create_experiment, is_transient, log_run, retry)
from seedlab.store.predictions import write_predictions


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow = client(uri)
    return uri, mlflow, get_or_create_experiment(mlflow, "contract", uri)


def log_trials(mlflow, experiment_id, tmp_path, n: int) -> None:
    for seed in range(n):
        path = write_predictions(tmp_path / f"r{seed}" / "validation.parquet", np.array(["a", "b", "c"]),
                                 np.array([0, 1, 1]), np.array([0, 1, seed % 2]))
        log_run(mlflow, experiment_id, f"sst2/tiny/p0/f{seed}",
                {"task": "sst2", "model": "tiny", "pretrain_seed": 0, "finetune_seed": seed}, [("eval_accuracy", 1.0, 0)],
                {TAG_KIND: KIND_TRIAL, TAG_TRIAL_KEY: f"k{seed}"}, {PREDICTIONS_DIR: str(path)})


def test_every_query_reads_every_page(store, tmp_path):
    uri, mlflow, experiment_id = store
    log_trials(mlflow, experiment_id, tmp_path, 7)
    assert len(mlflow.search_runs([experiment_id], max_results=3)) == 3  # one page is not the experiment
    assert len(find_runs(mlflow, [experiment_id], KIND_TRIAL, page_size=3)) == 7
    assert len(finished_trial_runs(mlflow, experiment_id, page_size=3)) == 7
    loaded = load_experiment("contract", uri, page_size=3)
    assert len(loaded.tables["sst2"].run_ids) == 7


def test_log_run_logs_files_and_directories_and_finishes(store, tmp_path):
    _, mlflow, experiment_id = store
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (tmp_path / "note.txt").write_text("x")
    run_id = log_run(mlflow, experiment_id, "r", {"a": 1}, [("m", 2.0, 0)], {TAG_KIND: "test"},
                     {"checkpoint": str(folder), "notes": str(tmp_path / "note.txt")})
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"a": "1"} and run.data.metrics == {"m": 2.0}
    assert [a.path for a in mlflow.list_artifacts(run_id, "checkpoint")] == ["checkpoint/config.json"]
    assert [a.path for a in mlflow.list_artifacts(run_id, "notes")] == ["notes/note.txt"]


def test_a_run_that_fails_part_way_is_marked_failed(store, tmp_path):
    _, mlflow, experiment_id = store
    with pytest.raises(Exception):
        log_run(mlflow, experiment_id, "broken", {}, [], {TAG_KIND: "test"}, {"x": str(tmp_path / "vanished.txt")})
    (run,) = mlflow.search_runs([experiment_id], filter_string="attributes.run_name = 'broken'")
    assert run.info.status == "FAILED"


def test_permanent_errors_are_raised_at_once(store):
    _, mlflow, _ = store
    calls = []

    def missing_run():
        calls.append(1)
        return mlflow.get_run("0" * 32)

    with pytest.raises(MlflowException) as err:
        retry(missing_run)
    assert not is_transient(err.value) and len(calls) == 1  # a missing run is not worth a minute of retries
    assert not is_transient(FileNotFoundError("no such file")) and not is_transient(PermissionError("denied"))


def test_transient_errors_are_retried_until_they_pass():
    calls = []

    def locked_then_fine():
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "ok"

    assert retry(locked_then_fine) == "ok" and len(calls) == 3


def test_a_refused_connection_is_transient(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Exception) as err:
        client(f"http://127.0.0.1:{port}").get_experiment_by_name("x")
    assert is_transient(err.value)


def test_the_loader_says_an_artifact_is_missing_not_something_else(store, tmp_path):
    uri, mlflow, experiment_id = store
    log_run(mlflow, experiment_id, "sst2/tiny/p0/f0", {"task": "sst2", "model": "tiny", "pretrain_seed": 0,
            "finetune_seed": 0}, [], {TAG_KIND: KIND_TRIAL, TAG_TRIAL_KEY: "k0"}, {})
    with pytest.raises(SeedlabError, match=r"run sst2/tiny/p0/f0 \(\w+\) has no predictions/validation.parquet"):
        load_experiment("contract", uri)
