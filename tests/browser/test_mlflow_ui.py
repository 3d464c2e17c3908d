"""The MLflow UI (a real `mlflow server` on the analysed store) in Chromium: the experiment lists the trial
runs, their sweep/import parents and the `analysis` run; the compare view plots eval_accuracy against the
numeric seed params. Screenshots are kept.

The MLflow 3 UI is a React app that keeps polling, so "network idle" never comes: the tests wait for the
text they need instead. It opens on the GenAI view unless told `workflowType=machine_learning`. Its
Assistant side panel opens by itself on a first visit, at a moment of its own; `new_page` (conftest.py)
marks it as already shown, so the layout does not change under the test.
"""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest

# tests/browser/conftest.py skips them without Chromium or Playwright; the store holds the Zhou et al. import
pytestmark = [pytest.mark.browser,
              pytest.mark.needs_data("predictions/zhou2020_instability_bert_base_mnli", "glue/MNLI")]

expect = pytest.importorskip("playwright.sync_api").expect  # without it, conftest.py says why it skips

UI_TIMEOUT_MS = 60_000


def test_experiment_page_lists_trials_and_the_analysis_run(analysed_store, mlflow_server, new_page, artifacts_dir):
    tab = new_page(1400, 1000)
    page = tab.page
    page.goto(f"{mlflow_server}/#/experiments/{analysed_store.experiment_id}/runs?workflowType=machine_learning")
    page.get_by_text("analysis", exact=True).first.wait_for(timeout=UI_TIMEOUT_MS)
    # every run of the experiment is counted: trials, the sweep and import parents, the analysis
    page.get_by_text(re.compile(rf"^\s*{analysed_store.n_runs}\s+matching runs")).wait_for(timeout=UI_TIMEOUT_MS)
    assert page.locator("[role=row]", has_text="sweep/smoke").count() == 1
    assert page.locator("[role=row]", has_text="import/zhou2020").count() == 1
    assert page.get_by_text("analysis", exact=True).count() == 1

    # trial runs are nested under their parent: expand the parents and find them by name
    for toggle in page.locator("button[data-component-id*='runnamecellrenderer']").all():
        toggle.click()
    for name in ("sst2/tiny/p0/f0", "sst2/small/p2/f1", "mnli/bert-base-zhou2020/p0/f1"):
        page.get_by_text(name, exact=True).first.wait_for(timeout=UI_TIMEOUT_MS)
    page.get_by_text("analysis", exact=True).first.scroll_into_view_if_needed()  # back to the top rows
    page.screenshot(path=str(artifacts_dir / "mlflow-runs.png"))
    (artifacts_dir / "mlflow-runs-console.json").write_text(json.dumps(tab.console_errors, indent=1))
    assert not tab.page_errors, tab.page_errors

    # the analysis run page shows its headline metrics and artifacts
    page.goto(f"{mlflow_server}/#/experiments/{analysed_store.experiment_id}/runs/"
              f"{analysed_store.analysis_run_id}?workflowType=machine_learning")
    page.get_by_text("sst2.small.accuracy_mean").first.wait_for(timeout=UI_TIMEOUT_MS)
    page.get_by_text("the seed alone moved accuracy by up to", exact=False).first.wait_for(timeout=UI_TIMEOUT_MS)
    page.screenshot(path=str(artifacts_dir / "mlflow-analysis-run.png"))


def test_compare_view_plots_eval_accuracy_against_seed_params(analysed_store, mlflow_server, new_page,
                                                              artifacts_dir):
    tab = new_page(1400, 1000)
    page = tab.page
    runs = urllib.parse.quote(json.dumps(analysed_store.trial_ids["sst2"]))
    experiments = urllib.parse.quote(json.dumps([analysed_store.experiment_id]))
    page.goto(f"{mlflow_server}/#/compare-runs?runs={runs}&experiments={experiments}&workflowType=machine_learning")
    page.get_by_text(f"Comparing {len(analysed_store.trial_ids['sst2'])} Runs").wait_for(timeout=UI_TIMEOUT_MS)
    # Everything below is looked up inside the tab panel it belongs to: the compare view has a plot per tab
    # (and the box plot tab has its own #x-axis-selector), so a page-wide `.js-plotly-plot` is whichever plot
    # comes first in the document, not necessarily the one on screen.
    scatter = _open_tab(page, "Scatter Plot")
    for axis, value in (("x", "pretrain_seed"), ("y", "eval_accuracy")):
        selector = scatter.locator(f"#{axis}-axis-selector")
        selector.click()
        page.get_by_role("option", name=value, exact=True).click()
        expect(selector).to_have_text(value, timeout=UI_TIMEOUT_MS)
    plot = scatter.locator(".js-plotly-plot")
    expect(plot).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(plot).to_be_visible(timeout=UI_TIMEOUT_MS)
    # Plotly redraws after each axis change in a promise chain: wait for the chosen axes' titles, which it
    # draws after it has set the new data on the graph div
    expect(plot.locator("text.xtitle")).to_have_text("pretrain_seed", timeout=UI_TIMEOUT_MS)
    expect(plot.locator("text.ytitle")).to_have_text("eval_accuracy", timeout=UI_TIMEOUT_MS)
    # the plotted data (Plotly keeps it on its graph div; the markers may be drawn with WebGL): one point per
    # run at its numeric pretrain_seed (MLflow stores params as strings; the UI parses them) and eval_accuracy
    traces = plot.evaluate("el => el.data.map(t => ({type: t.type, x: t.x, y: t.y}))")
    xs = [float(x) for t in traces for x in t["x"]]
    ys = [float(y) for t in traces for y in t["y"]]
    plotted = sorted((x, round(y, 9)) for x, y in zip(xs, ys))
    assert plotted == sorted((x, round(y, 9)) for x, y in analysed_store.sst2_points), traces
    ticks = {t.text_content() for t in plot.locator(".xtick text").all()}
    assert {"0", "1", "2"} <= ticks, ticks
    plot.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "mlflow-compare-scatter.png"))

    parallel = _open_tab(page, "Parallel Coordinates Plot").locator(".js-plotly-plot")
    expect(parallel).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(parallel).to_be_visible(timeout=UI_TIMEOUT_MS)
    assert parallel.evaluate("el => el.data.map(t => t.type)") == ["parcoords"]
    page.screenshot(path=str(artifacts_dir / "mlflow-compare-parallel.png"))
    assert not tab.page_errors, tab.page_errors


def _open_tab(page, name: str):
    """Select the compare view's tab `name` and return its panel, once the panel is the one shown."""
    trigger = page.get_by_role("tab", name=name, exact=True)
    trigger.click()
    expect(trigger).to_have_attribute("aria-selected", "true", timeout=UI_TIMEOUT_MS)
    panel = page.get_by_role("tabpanel", name=name, exact=True)
    expect(panel).to_be_visible(timeout=UI_TIMEOUT_MS)
    return panel
