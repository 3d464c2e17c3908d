"""The HTML report and the MLflow `analysis` run, without a browser (tests/browser/ has the browser tests).

Results come from the real analysis (`analyze`) of simulated experiments and of a real SQLite store.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from seedlab.analysis.analyze import SCHEMA, AnalysisOptions, analyze
from seedlab.report import write_report
from seedlab.report.figures import SECTIONS, slug
from seedlab.stats.agreement import agreement_matrix
from seedlab.stats.simulate import simulate_experiment
from store_builder import build_store, drop_runs, loaded_experiment, regression_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def simulated_result(representations: bool = True) -> dict:
    table, _ = simulate_experiment(n_models=3, model_names=["tiny", "mini", "small"], P=2, F=3, m=120, rng=1,
                                   task="sst2")
    reps = None
    if representations:
        gen = np.random.default_rng(0)
        base = gen.normal(size=(4, 120, 8))
        reps = {"sst2": {r: base + 0.3 * (i % 3 + 1) * gen.normal(size=base.shape)
                         for i, r in enumerate(table.run_ids)}}
    options = AnalysisOptions(compare=("tiny", "small"), n_bootstrap=50, decay_bootstrap=20, seed=0)
    return analyze(loaded_experiment([table], reps, experiment="report-test"), options)


@pytest.fixture(scope="module")
def full_result() -> dict:
    return simulated_result()


@pytest.fixture(scope="module")
def written(full_result, tmp_path_factory):
    """The report of `full_result`, written once: (report path, figures dir)."""
    tmp = tmp_path_factory.mktemp("report")
    return write_report(full_result, tmp / "report.html", figures_dir=tmp / "figures"), tmp / "figures"


class _Page(HTMLParser):
    """Collects what the checks need: img srcs, every src/href, section ids, and tables per figure."""

    def __init__(self):
        super().__init__()
        self.imgs, self.links, self.ids, self.scripts = [], [], set(), 0
        self.figures, self.tables_per_figure = [], {}
        self._figure_stack: list[tuple[str, int]] = []  # (figure key, div depth)
        self._div_depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("src", "href"):
            if key in a:
                self.links.append(a[key])
        if tag == "img":
            self.imgs.append(a)
        if tag == "script":
            self.scripts += 1
        if tag == "figure":
            self.figures.append(a["id"].removeprefix("fig-"))
        if tag == "div":
            self._div_depth += 1
            if "data-figure" in a:
                self._figure_stack.append((a["data-figure"], self._div_depth))
                self.tables_per_figure.setdefault(a["data-figure"], 0)
        if tag == "table" and self._figure_stack:
            self.tables_per_figure[self._figure_stack[-1][0]] += 1

    def handle_endtag(self, tag):
        if tag == "div":
            if self._figure_stack and self._figure_stack[-1][1] == self._div_depth:
                self._figure_stack.pop()
            self._div_depth -= 1


def parse(path) -> tuple[str, _Page]:
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    return text, page


def test_report_is_self_contained_with_every_section_and_a_table_per_figure(written):
    out, figures = written
    assert out.name == "report.html" and out.is_file()
    assert not out.with_name("report.html.tmp").exists()
    text, page = parse(out)

    # self-contained: no script, no external reference of any kind
    assert page.scripts == 0
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert "@import" not in text and not re.search(r"url\(\s*['\"]?(?:https?:)?//", text, re.I)
    assert all(link.startswith(("data:image/png;base64,", "#")) for link in page.links), page.links
    for img in page.imgs:
        assert base64.b64decode(img["src"].removeprefix("data:image/png;base64,"))[:8] == PNG_MAGIC
        assert img.get("alt") and int(img["width"]) > 0 and int(img["height"]) > 0

    # every section of the task, and the headline
    assert "headline" in page.ids and "task-sst2" in page.ids
    for name, title, _, _ in SECTIONS:
        if name != "methods":  # one mitigation method here: no methods section
            assert f"sst2-{name}" in page.ids, name
    assert "sst2-methods" not in page.ids
    assert "not available" not in text and "could not be drawn" not in text

    # one figure per section that has one (instability is a table), each with its table(s)
    expected = {f"sst2-{n}" for n in ("distributions", "agreement", "instance-accuracy", "decay", "noise",
                                      "representations", "multibootstrap", "expected-max", "aso", "seed-budget",
                                      "multiplicity", "ensembles")}
    assert set(page.figures) == expected
    assert all(page.tables_per_figure.get(key, 0) >= 1 for key in page.figures), page.tables_per_figure
    assert sorted(p.stem for p in figures.glob("*.png")) == sorted(expected)
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in figures.glob("*.png"))


def test_report_tables_carry_the_plotted_numbers(full_result, written):
    text, _ = parse(written[0])
    t = full_result["tasks"]["sst2"]
    # per-run metric values, agreement matrix cells, noise components, bootstrap interval ends, decay bound
    for v in t["models"]["mini"]["metrics"]["accuracy"]["values"]:
        assert f"{v:.4f}" in text
    cell = t["models"]["small"]["agreement_matrix"]["matrix"][0][1]
    assert f"{cell:.4f}" in text
    assert f"{t['zhong']['noise']['tiny']['means']['finetune_var']:.4f}" in text
    assert f"{t['multibootstrap']['models']['small']['ci_high']:.4f}" in text
    assert f"{t['multibootstrap']['comparison']['seeds_only']['delta']['ci_low']:.4f}" in text
    assert f"{t['zhong']['decay'][0]['lower_bound']:.4f}" in text
    assert f"{t['representations']['mini']['by_layer']['cka'][2]:.4f}" in text
    pairs = t["models"]["small"]["pairwise_consistency"]  # Bui/Zhou et al.'s readings over pairs of runs
    assert f"{pairs['correct_consistency']['mean']:.4f}" in text and f"{pairs['consistency']['min']:.4f}" in text
    # headline: mean ± SD and the fine-tuning share of seed variance, per model
    head = text[text.index('id="headline"'):text.index('id="task-sst2"')]
    for model, m in t["models"].items():
        s = m["metrics"]["accuracy"]
        assert f"{s['mean']:.4f} \u00b1 {s['sd']:.4f}" in head


def test_report_shows_the_finetune_share_of_the_result_and_computes_none(full_result, tmp_path):
    noise = full_result["tasks"]["sst2"]["zhong"]["noise"]
    for n in noise.values():  # the analysis: FineVar / (PretVar + FineVar) of its own means
        pv, fv = n["means"]["pretrain_var"], n["means"]["finetune_var"]
        assert n["finetune_share"] == (fv / (pv + fv) if pv >= 0 and fv >= 0 and pv + fv > 0 else None)
    result = copy.deepcopy(full_result)
    planted = {}
    for i, (model, n) in enumerate(result["tasks"]["sst2"]["zhong"]["noise"].items()):
        n["finetune_share"] = planted[model] = 0.1234 + 0.1111 * i  # not what the means give
    text = write_report(result, tmp_path / "r.html").read_text(encoding="utf-8")
    head = text[text.index('id="headline"'):text.index('id="task-sst2"')]
    noise_section = text[text.index('id="sst2-noise"'):]
    for model, share in planted.items():
        assert f"{share:.4f}" in head and f"{share:.4f}" in noise_section
        assert f"{100 * share:.0f}% ({model})" in head  # the headline sentence


def test_report_says_why_a_figure_cannot_exist(tmp_path):
    """The documented absences, from a real analysis: a regression task, no logged representations, no
    --compare, P = 1."""
    sst2, _ = simulate_experiment(n_models=2, model_names=["tiny", "mini"], P=1, F=3, m=60, rng=3, task="sst2")
    sst2 = drop_runs(sst2, ~((sst2.model == "mini") & (sst2.finetune_seed == 2)))  # mini: 1 x 2 seeds
    stsb = regression_table("stsb", ["tiny", "mini"], P=1, F=3, m=40, rng=4)
    result = analyze(loaded_experiment([sst2, stsb]), AnalysisOptions(n_bootstrap=20, decay_bootstrap=10))
    text, page = parse(write_report(result, tmp_path / "r.html"))
    for task in ("sst2", "stsb"):
        for name, _, _, _ in SECTIONS:
            assert (f"{task}-{name}" in page.ids) == (name != "methods")
    reasons = re.findall(r'class="unavailable">([^<]*)', text)
    assert any("regression task" in r for r in reasons)
    assert any("label agreement is undefined for a regression task" in r for r in reasons)
    assert any("no run logged representations" in r for r in reasons)
    assert any("tiny: needs &gt;= 2 pretraining and &gt;= 2 fine-tuning seeds (P=1, F=3)" in r for r in reasons)
    assert "No comparison was requested" in text
    assert {"sst2-distributions", "sst2-agreement", "stsb-distributions", "stsb-multibootstrap"} <= set(page.figures)
    assert "could not be drawn" not in text

    empty = {**result, "tasks": {}}  # not an analysis output (the loader refuses an empty experiment), but drawable
    text, page = parse(write_report(empty, tmp_path / "empty.html"))
    assert "headline" in page.ids and "not available: the result has no task" in text


@pytest.mark.parametrize("breaks", [
    lambda t: t.pop("zhong"),  # a classification task always has it
    lambda t: t.pop("multibootstrap"),
    lambda t: t["models"]["tiny"].pop("agreement_matrix"),  # 6 runs and no note saying why not
    lambda t: t["models"]["mini"]["metrics"]["accuracy"].pop("values"),
    lambda t: t["zhong"]["decay"][0].update(lower_bound="0.12"),
    lambda t: t["zhong"]["noise"]["small"].pop("finetune_share"),
])
def test_a_malformed_result_raises_instead_of_a_missing_figure(full_result, tmp_path, breaks):
    result = copy.deepcopy(full_result)
    breaks(result["tasks"]["sst2"])
    with pytest.raises((KeyError, TypeError, ValueError)):
        write_report(result, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_mitigation_methods_get_a_figure_with_their_intervals_and_ranking_agreement(tmp_path):
    from dataclasses import replace

    table, _ = simulate_experiment(n_models=3, model_names=["standard", "mixout", "llrd"], P=1, F=5, m=80, rng=4,
                                   task="rte")
    table = replace(table, method=table.model, model=np.full(table.n_runs, "tiny"))  # 3 methods of one model
    result = analyze(loaded_experiment([table]), AnalysisOptions(n_bootstrap=40, decay_bootstrap=10, seed=0))
    text, page = parse(write_report(result, tmp_path / "r.html", figures_dir=tmp_path / "figures"))
    assert {"rte-methods-tiny", "rte-expected-max"} <= set(page.figures)
    assert page.tables_per_figure["rte-methods-tiny"] == 2  # measures with intervals and ranks; Kendall tau
    c = result["tasks"]["rte"]["methods"]["tiny"]
    assert f"{c['bootstrap']['intervals']['mixout']['pd']['ci_high']:.4f}" in text
    assert f"{c['ranking_agreement']['tau'][0][1]:.4f}" in text
    curve = result["tasks"]["rte"]["expected_max"]["tiny/llrd"]
    assert f"{curve['expected_max'][1]:.4f}" in text
    assert (tmp_path / "figures" / "rte-methods-tiny.png").read_bytes()[:8] == PNG_MAGIC


def test_single_model_task_says_why_pairs_are_missing(tmp_path):
    table, _ = simulate_experiment(n_models=1, model_names=["base"], P=1, F=4, m=60, rng=2, task="rte")
    result = analyze(loaded_experiment([table]), AnalysisOptions(n_bootstrap=20, decay_bootstrap=10))
    text, page = parse(write_report(result, tmp_path / "r.html"))
    assert "needs at least two models; this task has 1 (base)" in text
    assert "needs &gt;= 2 pretraining and &gt;= 2 fine-tuning seeds (P=1, F=4)" in text
    assert {"rte-distributions", "rte-multibootstrap"} <= set(page.figures)


def test_agreement_matrix_matches_agreement_pairwise():
    from seedlab.stats.agreement import agreement_pairwise

    gen = np.random.default_rng(3)
    preds = gen.integers(0, 3, size=(7, 50))
    a = agreement_matrix(preds)
    assert np.allclose(a, a.T) and np.allclose(np.diag(a), 1.0)
    assert a[1, 4] == pytest.approx(np.mean(preds[1] == preds[4]))
    assert a[~np.eye(7, dtype=bool)].mean() == pytest.approx(agreement_pairwise(preds))


def test_slug_keeps_figure_names_file_safe():
    assert slug("bert-base/zhou 2020") == "bert-base_zhou_2020"


# --------------------------------------------------------------------------------------------------
# publish_analysis
# --------------------------------------------------------------------------------------------------


def test_publish_analysis_logs_one_new_analysis_run_each_time(tmp_path):
    from seedlab.analysis.loader import load_experiment
    from seedlab.analysis.publish import TAG_SUPERSEDED_BY, headline_metrics, publish_analysis
    from seedlab.errors import SeedlabError
    from seedlab.store.contract import TAG_KIND, client, find_experiment

    table, _ = simulate_experiment(n_models=2, model_names=["tiny", "mini"], P=2, F=2, m=40, rng=4, task="sst2")
    uri = build_store(tmp_path, "pub", [table])
    store = client(uri)
    exp_id = find_experiment(store, "pub").experiment_id

    result = analyze(load_experiment("pub", uri), AnalysisOptions(n_bootstrap=20, decay_bootstrap=10))
    report = write_report(result, tmp_path / "report.html", figures_dir=tmp_path / "figs")
    json_path = tmp_path / "analysis.json"
    json_path.write_text(json.dumps(result))
    first = publish_analysis(result, report, json_path, tmp_path / "figs", uri, "pub")

    run = store.get_run(first)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.runName"] == "analysis" and run.data.tags[TAG_KIND] == "analysis"
    top = {a.path for a in store.list_artifacts(first)}
    assert top == {"report", "analysis", "figures"}
    assert [a.path for a in store.list_artifacts(first, "report")] == ["report/report.html"]
    assert [a.path for a in store.list_artifacts(first, "analysis")] == ["analysis/analysis.json"]
    figs = sorted(a.path for a in store.list_artifacts(first, "figures"))
    assert figs == sorted(f"figures/{p.name}" for p in (tmp_path / "figs").glob("*.png")) and len(figs) >= 5
    metrics = run.data.metrics
    s = result["tasks"]["sst2"]["models"]["mini"]
    assert metrics["sst2.mini.accuracy_mean"] == pytest.approx(s["metrics"]["accuracy"]["mean"])
    assert metrics["sst2.mini.accuracy_sd"] == pytest.approx(s["metrics"]["accuracy"]["sd"])
    assert metrics["sst2.mini.consistency_all"] == pytest.approx(s["consistency_all"])
    noise = result["tasks"]["sst2"]["zhong"]["noise"]["tiny"]["means"]
    assert metrics["sst2.tiny.pretrain_var"] == pytest.approx(noise["pretrain_var"])
    assert metrics["sst2.tiny.finetune_var"] == pytest.approx(noise["finetune_var"])
    assert "sst2.decay.tiny_to_mini.lower_bound" in metrics
    assert set(metrics) == set(headline_metrics(result))
    assert run.data.params["schema"] == SCHEMA and run.data.params["trial_runs_finished"] == "8"

    # the loader still sees only the trial runs
    assert load_experiment("pub", uri).run_status == {"FINISHED": 8}

    # analysing again adds a run and marks the earlier one; nothing is replaced
    second = publish_analysis(result, report, None, None, uri, "pub")
    runs = store.search_runs([exp_id], filter_string=f"tags.`{TAG_KIND}` = 'analysis'")
    assert {r.info.run_id for r in runs} == {first, second}
    assert store.get_run(first).data.tags[TAG_SUPERSEDED_BY] == second
    assert TAG_SUPERSEDED_BY not in store.get_run(second).data.tags
    assert store.get_run(second).data.tags["seedlab.analysis_supersedes"] == "1"
    assert {a.path for a in store.list_artifacts(second)} == {"report", "analysis"}  # JSON written from result
    assert store.get_run(first).data.metrics == metrics  # untouched
    assert store.get_run(first).data.tags["mlflow.note.content"].startswith(f"**Superseded by analysis run {second}")
    assert "report/report.html" in store.get_run(second).data.tags["mlflow.note.content"]

    with pytest.raises(SeedlabError, match="unknown experiment 'nope' \\(valid: pub\\)"):
        publish_analysis(result, report, None, None, uri, "nope")
