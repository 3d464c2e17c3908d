"""Log an analysis back into its MLflow experiment, beside the trial runs it analysed.

Each call creates ONE new FINISHED run named ``analysis`` (tag ``seedlab.kind=analysis``; the loader reads
only ``seedlab.kind=trial``, so an analysis is never mistaken for a trial). Nothing is replaced: analysing
again adds a new ``analysis`` run, and every earlier analysis run of the experiment is marked with the tag
``seedlab.superseded_by=<new run id>`` (their params, metrics and artifacts stay as they were). The newest
analysis is the ``analysis`` run without that tag; the new run records the number of runs it supersedes in
the tag ``seedlab.analysis_supersedes``.

The run holds:

* artifacts: ``report/<report file>`` (the HTML report), ``analysis/<json file>`` (the full result),
  ``figures/*.png`` (every figure of the report);
* metrics (step 0, headline figures from the result, nothing recomputed), named ``<task>.<model>.<name>``:
  ``<metric>_mean``, ``<metric>_sd``, ``<metric>_min``, ``<metric>_max``, ``n_runs``, ``consistency_all``,
  ``agreement_pairwise``, ``fleiss_kappa``, ``pd``, ``jsd``, ``bias2``, ``pretrain_var``, ``finetune_var``,
  ``mb_point``, ``mb_ci_low``, ``mb_ci_high``; per ordered model pair ``<task>.decay.<from>_to_<to>.lower_bound``;
  with ``--compare`` ``<task>.compare.<scheme>.delta`` / ``.delta_ci_low`` / ``.delta_ci_high``. Undefined
  values (None) are left out. Characters MLflow does not allow in a name become ``_``;
* params: the result schema, the tasks, the bootstrap settings and the compared pair;
* tags: ``seedlab.kind``, ``seedlab.git_commit``, ``seedlab.version``, ``seedlab.analysis_schema``, and the
  run description (``mlflow.note.content``, shown by the MLflow UI): where the report is and the headline
  sentences of the report. A superseded run's description starts with "Superseded by analysis run <id>".
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

from seedlab import __version__
from seedlab.errors import SeedlabError
from seedlab.store.contract import (ANALYSIS_RUN_NAME, KIND_ANALYSIS, NOTE_TAG, TAG_GIT, TAG_KIND, TAG_VERSION, client,
                                    find_experiment, find_runs, git_commit, log_run, retry)

RUN_NAME = ANALYSIS_RUN_NAME
KIND = KIND_ANALYSIS
TAG_SCHEMA = "seedlab.analysis_schema"
TAG_SUPERSEDED_BY = "seedlab.superseded_by"
TAG_SUPERSEDES = "seedlab.analysis_supersedes"
TAG_NOTE = NOTE_TAG
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")


def metric_name(*parts) -> str:
    """MLflow allows letters, digits, ``_ - . /`` and spaces in a metric name; anything else becomes ``_``."""
    return ".".join(_UNSAFE.sub("_", str(p)) for p in parts)


def headline_metrics(result: dict) -> dict[str, float]:
    """The headline figures of `result` as {metric name: value}; values taken as they are, None left out."""
    out: dict[str, float] = {}

    def put(value, *parts):
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, (int, float)):
            out[metric_name(*parts)] = float(value)

    for task, t in result["tasks"].items():  # the result as seedlab/analysis/schema.json shapes it
        noise = t["zhong"]["noise"] if "zhong" in t else {}  # a regression task has no Zhong et al. section
        boot = t["multibootstrap"]
        for model, m in t["models"].items():
            put(m["n_runs"], task, model, "n_runs")
            for metric, s in m["metrics"].items():
                for stat in ("mean", "sd", "min", "max"):
                    put(s[stat], task, model, f"{metric}_{stat}")
            for key in ("consistency_all", "agreement_pairwise", "fleiss_kappa"):
                put(m[key], task, model, key)
            if m["instability"] is not None:
                put(m["instability"]["pd"], task, model, "pd")
                put(m["instability"]["jsd"], task, model, "jsd")
            means = noise[model].get("means") if noise else None  # absent where P or F < 2
            for key in ("bias2", "pretrain_var", "finetune_var"):
                put(None if means is None else means[key], task, model, key)
            est = boot["models"][model]
            put(est["point"], task, model, "mb_point")
            put(est["ci_low"], task, model, "mb_ci_low")
            put(est["ci_high"], task, model, "mb_ci_high")
        for d in t["zhong"]["decay"] if "zhong" in t else []:
            put(d["lower_bound"], task, "decay", f"{d['from']}_to_{d['to']}", "lower_bound")
        comp = boot.get("comparison")  # only with --compare
        for scheme in ("seeds_and_examples", "seeds_only", "examples_only") if comp else ():
            delta = comp[scheme]["delta"]
            put(delta["point"], task, "compare", scheme, "delta")
            put(delta["ci_low"], task, "compare", scheme, "delta_ci_low")
            put(delta["ci_high"], task, "compare", scheme, "delta_ci_high")
    return out


def analysis_params(result: dict) -> dict[str, str]:
    tasks = result["tasks"]
    params = {"schema": result["schema"], "tasks": ",".join(tasks)}
    boots = [t["multibootstrap"] for t in tasks.values()]
    if boots:
        params["bootstrap"] = boots[0]["n_boot"]
        params["seed"] = boots[0]["seed"]
        comp = next((b["comparison"] for b in boots if "comparison" in b), None)
        if comp:
            params["compare"] = f"{comp['baseline']},{comp['intervention']}"
            params["paired"] = comp["paired"]
    params["trial_runs_finished"] = result["runs"]["by_status"].get("FINISHED", 0)
    return {k: str(v)[:500] for k, v in params.items() if v is not None}


def description(result: dict, report_name: str, json_name: str) -> str:
    from seedlab.report.html import headline_sentences

    finished = result["runs"]["by_status"].get("FINISHED", 0)
    lines = [f"seedlab analysis of {finished} finished trial runs ({result['schema']}). Open the report: "
             f"artifact `report/{report_name}`; every figure: `analysis/{json_name}`; images: `figures/`.", ""]
    lines += [f"- {s}" for s in headline_sentences(result)]
    return "\n".join(lines)


def _stage(report_path, json_path, figures_dir, result: dict, tmp: Path) -> Path:
    """The run's artifact tree in a local folder: report/, analysis/, figures/."""
    root = tmp / "artifacts"
    (root / "report").mkdir(parents=True)
    (root / "analysis").mkdir()
    report_path = Path(report_path)
    if not report_path.is_file():
        raise SeedlabError(f"report {report_path} does not exist")
    shutil.copy2(report_path, root / "report" / report_path.name)
    if json_path is not None:
        json_path = Path(json_path)
        if not json_path.is_file():
            raise SeedlabError(f"analysis JSON {json_path} does not exist")
        shutil.copy2(json_path, root / "analysis" / json_path.name)
    else:  # the run always carries the full result
        (root / "analysis" / "analysis.json").write_text(json.dumps(result, indent=2, allow_nan=False))
    if figures_dir is not None:
        figures = sorted(Path(figures_dir).glob("*.png"))
        if figures:
            (root / "figures").mkdir()
            for f in figures:
                shutil.copy2(f, root / "figures" / f.name)
    return root


def publish_analysis(result: dict, report_path, json_path=None, figures_dir=None, tracking_uri: str | None = None,
                     experiment: str | None = None) -> str:
    """Log `result` as a new FINISHED ``analysis`` run in `experiment` (default: the result's) and return its id.

    `report_path`: the HTML report; `json_path`: the result JSON (None: written from `result`); `figures_dir`:
    a folder of figure PNGs (None or empty: no figures/). Earlier analysis runs get ``seedlab.superseded_by``.
    """
    experiment = experiment or result["experiment"]
    if not experiment:
        raise SeedlabError("publish_analysis: no experiment given and the result names none")
    store = client(tracking_uri or result["tracking_uri"])
    exp = find_experiment(store, experiment)
    earlier = find_runs(store, [exp.experiment_id], KIND, status=None)
    earlier = [r for r in earlier if TAG_SUPERSEDED_BY not in r.data.tags]
    tags = {TAG_KIND: KIND, TAG_GIT: git_commit(), TAG_VERSION: __version__,
            TAG_SCHEMA: str(result["schema"]), TAG_SUPERSEDES: str(len(earlier))}
    with tempfile.TemporaryDirectory(prefix="seedlab-publish-") as tmp:
        staged = _stage(report_path, json_path, figures_dir, result, Path(tmp))
        tags[TAG_NOTE] = description(result, Path(report_path).name,
                                     Path(json_path).name if json_path is not None else "analysis.json")
        metrics = [(k, v, 0) for k, v in headline_metrics(result).items()]
        run_id = log_run(store, exp.experiment_id, RUN_NAME, analysis_params(result), metrics, tags, {"": str(staged)})
    for r in earlier:  # only once the new run is complete
        retry(store.set_tag, r.info.run_id, TAG_SUPERSEDED_BY, run_id)
        note = r.data.tags.get(TAG_NOTE, "")
        retry(store.set_tag, r.info.run_id, TAG_NOTE, f"**Superseded by analysis run {run_id}.**\n\n{note}")
    return run_id
