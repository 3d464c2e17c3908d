"""The HTML report of a real analysis, opened in Chromium: images decode, every section is there, the
page logs no error, loads nothing from outside, and fits its width. A full-page screenshot is kept."""

from __future__ import annotations

import json

import pytest

from seedlab.report.figures import SECTIONS

# tests/browser/conftest.py skips them without Chromium or Playwright; the store holds the Zhou et al. import
pytestmark = [pytest.mark.browser,
              pytest.mark.needs_data("predictions/zhou2020_instability_bert_base_mnli", "glue/MNLI")]


def test_report_renders_in_chromium(analysed_store, new_page, artifacts_dir):
    tab = new_page(1280, 900)
    page = tab.page
    page.goto(analysed_store.report.as_uri())
    page.wait_for_load_state("load")

    images = page.evaluate("""() => Array.from(document.images).map(i => ({
        alt: i.alt, complete: i.complete, natural: i.naturalWidth, shown: i.getBoundingClientRect().width}))""")
    assert len(images) >= 10, images  # mnli: 4; sst2: 8 (no representations)
    broken = [i["alt"] for i in images if not (i["complete"] and i["natural"] > 0 and i["shown"] > 0)]
    assert not broken, f"broken images: {broken}"

    headings = page.evaluate("() => Array.from(document.querySelectorAll('h2, h3')).map(h => h.textContent)")
    assert "Headline: how much did the seed matter?" in headings
    for task in ("mnli", "sst2"):
        assert f"Task {task}" in headings
        for name, title, _, _ in SECTIONS:
            section = page.locator(f"section#{task}-{name} > h3")
            if name == "methods":  # one mitigation method in this store: the section is left out
                assert section.count() == 0, task
                continue
            assert section.count() == 1 and section.inner_text() == title, (task, name)
    # every figure has its table right after it
    missing_tables = page.evaluate("""() => Array.from(document.querySelectorAll('figure.plot')).filter(f => {
        const next = f.nextElementSibling; return !next || !next.querySelector('table'); }).map(f => f.id)""")
    assert not missing_tables

    assert not tab.console_errors, tab.console_errors
    assert not tab.page_errors, tab.page_errors
    outside = [u for u in tab.requests if not u.startswith(("file:", "data:"))]
    assert not outside, f"the report requested {outside}"
    # nothing wider than the window: wide tables scroll inside their own box
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")

    page.screenshot(path=str(artifacts_dir / "report-full.png"), full_page=True)
    (artifacts_dir / "report-images.json").write_text(json.dumps(images, indent=1))


def test_report_headline_and_unavailable_sections_read_right(analysed_store, new_page, artifacts_dir):
    page = new_page(1280, 900).page
    page.goto(analysed_store.report.as_uri())
    headline = page.locator("section#headline")
    text = headline.inner_text()
    assert "the seed alone moved accuracy by up to" in text
    assert "fine-tuning seeds make" in text  # sst2 has P = F = 3: Zhong et al.'s decomposition
    rows = headline.locator("tbody tr")
    assert rows.count() == 4  # mnli: 1 model, sst2: 3 models
    # mnli has one model with one pretraining seed: the pairwise sections say why they are missing
    mnli = page.locator("section#task-mnli").inner_text()
    assert "not available: needs at least two models; this task has 1 (bert-base-zhou2020)" in mnli
    assert "not available: no run logged representations" in mnli
    headline.screenshot(path=str(artifacts_dir / "report-headline.png"))
    page.locator("section#sst2-agreement").screenshot(path=str(artifacts_dir / "report-agreement.png"))
