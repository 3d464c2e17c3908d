"""Browser tests: Debian's Chromium (/usr/bin/chromium) driven by Playwright for Python.

No browser is downloaded (never `playwright install`): Playwright launches the system Chromium. Without it,
or without the `playwright` package, every test here is skipped with the reason.

Screenshots and page logs go to `$SEEDLAB_TEST_ARTIFACTS` (default `tests/artifacts/`, git-ignored).

The shared store (`analysed_store`) is built with the real pipeline: the Zhou et al. 2020 predictions
(`seedlab import`, one model, 10 runs of MNLI), plus a simulated 3-size x 3 x 3 sweep of "sst2" logged as
trial runs under a sweep parent the way `seedlab.run.trial` logs them; then `load_experiment` -> `analyze` ->
`write_report` -> `publish_analysis`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ZHOU = "predictions/zhou2020_instability_bert_base_mnli"
EXPERIMENT = "browser-report"
SERVER_START_TIMEOUT_S = 120


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (Debian: apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; never `playwright install`)"
    return None


MISSING = _missing()
HERE = Path(__file__).resolve().parent


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives a real Chromium through Playwright (tests/browser)")


def pytest_collection_modifyitems(config, items):
    """Every test in this folder is a browser test, skipped with the reason when the browser is missing."""
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.browser)
            if MISSING:
                item.add_marker(pytest.mark.skip(reason=f"browser test: {MISSING}"))


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    root = Path(__file__).resolve().parents[2]
    path = Path(os.environ.get("SEEDLAB_TEST_ARTIFACTS", root / "tests" / "artifacts")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    ignore = path / ".gitignore"
    if not ignore.exists():  # never committed, whatever the repository's .gitignore says
        ignore.write_text("# written by tests/browser: screenshots and logs of the browser tests\n*\n")
    return path


@pytest.fixture(scope="session")
def browser():
    if MISSING:
        pytest.skip(MISSING)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Page:
    """A Playwright page with what it logged: console errors, uncaught page errors, requested URLs."""

    page: object
    console_errors: list = field(default_factory=list)
    page_errors: list = field(default_factory=list)
    requests: list = field(default_factory=list)


# The MLflow UI opens its Assistant side panel by itself on a browser's first visit, once its own requests
# have answered: it narrows the page at a moment no test can wait for, moving what a test is about to click.
# These are the UI's localStorage entries (key_v<version>, JSON) for "already auto-opened" and "closed".
NO_ASSISTANT_AUTO_OPEN = """try {
  localStorage.setItem("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "true");
  localStorage.setItem("mlflow.assistant.panelOpen_v1", "false");
} catch (e) {}"""


@pytest.fixture
def new_page(browser):
    contexts = []

    def make(width: int = 1280, height: int = 900) -> Page:
        context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
        context.add_init_script(NO_ASSISTANT_AUTO_OPEN)
        contexts.append(context)
        page = context.new_page()
        logged = Page(page)
        page.on("console", lambda m: logged.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: logged.page_errors.append(str(e)))
        page.on("request", lambda r: logged.requests.append(r.url))
        return logged

    yield make
    for context in contexts:
        context.close()


# --------------------------------------------------------------------------------------------------
# the analysed store
# --------------------------------------------------------------------------------------------------


from seedlab.stats.agreement import agreement_matrix  # noqa: E402  (the library function, tested here too)


@dataclass
class AnalysedStore:
    uri: str
    db: Path
    experiment: str
    experiment_id: str
    result: dict
    report: Path
    analysis_run_id: str
    trial_names: dict  # task -> [run names]
    trial_ids: dict  # task -> [run ids]
    n_runs: int  # every run of the experiment: trials, their parents, the analysis
    sst2_points: list  # (pretrain_seed, eval_accuracy) of each sst2 trial run, as logged


def _log_simulated_sweep(store, experiment_id: str, tmp: Path) -> None:
    """A simulated tiny/mini/small x 3 pretraining x 3 fine-tuning seed sweep of sst2, logged like seedlab.run.trial."""
    from seedlab.stats.metrics import score
    from seedlab.store.predictions import write_predictions
    from seedlab.stats.simulate import simulate_experiment
    from seedlab.store.contract import TAG_KIND, TAG_SWEEP, TAG_TRIAL_KEY, log_run, start_sweep_run

    table, _ = simulate_experiment(n_models=3, model_names=["tiny", "mini", "small"], P=3, F=3, m=300, rng=0,
                                   task="sst2")
    parent = start_sweep_run(store, experiment_id, "smoke", {"tasks": "sst2", "models": "tiny,mini,small"})
    for i in range(len(table.run_ids)):
        model, p, f = table.model[i], int(table.pretrain_seed[i]), int(table.finetune_seed[i])
        parquet = write_predictions(tmp / f"run{i}" / "validation.parquet", table.instance_ids, table.labels,
                                    table.predictions[i], table.probs[i])
        params = {"task": "sst2", "model": model, "pretrain_seed": p, "finetune_seed": f, "learning_rate": 2e-5}
        metrics = [("eval_accuracy", score("accuracy", table.labels, table.predictions[i]), 0)]
        metrics += [("train_loss", float(0.7 / (1 + s)), s) for s in range(5)]
        log_run(store, experiment_id, f"sst2/{model}/p{p}/f{f}", params, metrics,
                {TAG_KIND: "trial", TAG_SWEEP: "smoke", TAG_TRIAL_KEY: f"sim-{model}-{p}-{f}"},
                {"predictions": str(parquet)}, parent_run_id=parent)
    retry_terminate(store, parent)


def retry_terminate(store, run_id: str) -> None:
    from seedlab.store.contract import retry

    retry(store.set_terminated, run_id, "FINISHED")


@pytest.fixture(scope="session")
def analysed_store(tmp_path_factory) -> AnalysedStore:
    from seedlab.analysis.analyze import AnalysisOptions, analyze, analyze_table, jsonable
    from seedlab.analysis.loader import load_experiment
    from seedlab.analysis.publish import publish_analysis
    from seedlab.store.importer import import_predictions
    from seedlab.data.paths import local_data_dir
    from seedlab.report import write_report
    from seedlab.store.contract import TAG_KIND, client, get_or_create_experiment

    data = local_data_dir()  # the tests that use this store are marked needs_data(ZHOU, "glue/MNLI")
    tmp = tmp_path_factory.mktemp("browser-store")
    db = tmp / "store" / "mlflow.db"
    uri = f"sqlite:///{db}"
    import_predictions(data / ZHOU, experiment=EXPERIMENT, tracking_uri=uri)
    store = client(uri)
    exp_id = get_or_create_experiment(store, EXPERIMENT, uri)
    _log_simulated_sweep(store, exp_id, tmp / "sim")

    loaded = load_experiment(EXPERIMENT, uri)
    result = analyze(loaded, AnalysisOptions(n_bootstrap=200, decay_bootstrap=50, seed=0))
    # the sst2 section with a Multi-Bootstrap comparison (--compare applies to one task's models)
    result["tasks"]["sst2"] = jsonable(analyze_table(
        "sst2", loaded.tables["sst2"], AnalysisOptions(compare=("tiny", "small"), n_bootstrap=200, decay_bootstrap=50)))
    for task, table in loaded.tables.items():  # until seedlab analyze writes agreement_matrix itself
        for model, m in result["tasks"][task]["models"].items():
            rows = np.flatnonzero(table.model == model)
            if "agreement_matrix" not in m and len(rows) >= 2 and not table.is_regression:
                names = [f"{task}/{model}/p{p}/f{f}" for p, f in zip(table.pretrain_seed[rows],
                                                                     table.finetune_seed[rows])]
                m["agreement_matrix"] = {"run_names": names,
                                         "matrix": agreement_matrix(table.predictions[rows]).tolist()}
    report = write_report(result, tmp / f"seedlab-report-{EXPERIMENT}.html", figures_dir=tmp / "figures")
    run_id = publish_analysis(result, report, None, tmp / "figures", uri, EXPERIMENT)

    trials = store.search_runs([exp_id], filter_string=f"tags.`{TAG_KIND}` = 'trial'", max_results=1000)
    names, ids, points = {}, {}, []
    for r in trials:
        if r.data.params["task"] == "sst2":
            points.append((float(r.data.params["pretrain_seed"]), r.data.metrics["eval_accuracy"]))
        names.setdefault(r.data.params["task"], []).append(r.data.tags["mlflow.runName"])
        ids.setdefault(r.data.params["task"], []).append(r.info.run_id)
    n_runs = len(store.search_runs([exp_id], max_results=1000))
    return AnalysedStore(uri, db, EXPERIMENT, exp_id, result, report, run_id, names, ids, n_runs, points)


# --------------------------------------------------------------------------------------------------
# a real MLflow server on the store
# --------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process_group(proc: subprocess.Popen) -> None:
    """Stop the server we started, and only it: its own process group (start_new_session), by its id."""
    if proc.poll() is not None:
        return
    pgid = proc.pid  # start_new_session=True: the group id is the server's pid
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # workers left behind in the group after the parent exited
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def mlflow_server(analysed_store, artifacts_dir, tmp_path_factory):
    if MISSING:
        pytest.skip(MISSING)
    port = free_port()
    log_path = tmp_path_factory.mktemp("mlflow-server") / "server.log"
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", analysed_store.uri,
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": analysed_store.uri}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server not up after {SERVER_START_TIMEOUT_S}s: "
                                   f"{log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        stop_process_group(proc)
        shutil.copy(log_path, artifacts_dir / "mlflow-server.log")
