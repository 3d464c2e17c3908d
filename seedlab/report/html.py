"""The report page: one self-contained HTML file (inline CSS, figures as base64 PNG, no script, no URL).

Built only from the analysis result dict (`seedlab.analysis.analyze`, shaped as `seedlab/analysis/schema.json`
says: keys it requires are read as such, so a malformed result raises); figures and their tables come from
`seedlab.report.figures`.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
from pathlib import Path

from seedlab.data.catalog import display_name
from seedlab.report.figures import Plot, Section, Table, Unavailable, all_plots, slug, task_sections

CSS = """
:root { color-scheme: light; }
body { font: 15px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans", Arial, sans-serif;
       color: #1a1a1a; background: #fff; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.3em; margin: 40px 0 8px; padding-top: 8px; border-top: 2px solid #0072B2; }
h3 { font-size: 1.08em; margin: 28px 0 6px; }
h4 { font-size: 0.98em; margin: 16px 0 4px; }
p.meta, p.intro, figcaption, .caption { color: #444; }
p.meta { margin: 0 0 16px; font-size: 0.9em; overflow-wrap: anywhere; }
p.unavailable { color: #6b4e00; background: #fff6dc; border-left: 4px solid #E69F00; padding: 6px 10px; }
figure { margin: 10px 0 4px; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid #eee; }
figcaption { font-size: 0.9em; margin-top: 4px; }
.table-wrap { overflow-x: auto; margin: 6px 0 10px; }
table { border-collapse: collapse; font-size: 0.84em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; vertical-align: top; white-space: nowrap; }
thead th { white-space: normal; }
th { background: #f3f6f9; }
td:first-child, th:first-child { text-align: left; }
td.text, th.text { text-align: left; }
td.wrap, th.wrap { white-space: normal; max-width: 560px; overflow-wrap: anywhere; }
caption { caption-side: top; text-align: left; color: #444; padding-bottom: 3px; font-size: 0.95em; }
details > summary { cursor: pointer; color: #0072B2; font-size: 0.9em; margin: 4px 0; }
nav ul { columns: 2; padding-left: 18px; font-size: 0.92em; }
.headline p.summary { margin: 4px 0; }
"""


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "\u2013"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "\u2013"
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.4g}"
    return str(value)


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def render_table(table: Table) -> str:
    head = "".join(f"<th scope=\"col\">{_e(h)}</th>" for h in table.header)
    body = []
    for row in table.rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ""
            if isinstance(cell, str) and (cell[:1].isalpha() or len(cell) > 40):  # words; long text wraps
                cls = ' class="text wrap"' if len(cell) > 40 else ' class="text"'

            tag = "th scope=\"row\"" if i == 0 else "td"
            cells.append(f"<{tag}{cls}>{_e(_fmt(cell))}</{tag.split()[0]}>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"<caption>{_e(table.caption)}</caption>" if table.caption else ""
    out = (f'<div class="table-wrap"><table>{caption}<thead><tr>{head}</tr></thead>'
           f'<tbody>{"".join(body)}</tbody></table></div>')
    if table.collapsed:
        what = f"{table.label}: " if table.label else ""
        return f"<details><summary>Numbers behind the figure: {_e(what)}{len(table.rows)} rows</summary>{out}</details>"
    return out


def render_plot(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    w, h = plot.size
    size = f' width="{w}" height="{h}"' if w and h else ""
    tables = "".join(render_table(t) for t in plot.tables)
    return (f'<figure class="plot" id="fig-{_e(plot.key)}"><img alt="{_e(plot.alt)}"{size} '
            f'src="data:image/png;base64,{data}"><figcaption>{_e(plot.caption)}</figcaption></figure>'
            f'<div class="figure-tables" data-figure="{_e(plot.key)}">{tables}</div>')


def render_item(item, section_title: str) -> str:
    if isinstance(item, Plot):
        sub = f"<h4>{_e(item.title)}</h4>" if item.title != section_title else ""
        return sub + render_plot(item)
    if isinstance(item, Unavailable):
        what = "" if item.title == section_title else f"{item.title}: "
        return f'<p class="unavailable">{_e(what)}not available: {_e(item.reason)}</p>'
    if isinstance(item, Table):
        return render_table(item)
    raise TypeError(f"unknown report item {type(item).__name__}")


def render_section(section: Section) -> str:
    body = "".join(render_item(i, section.title) for i in section.items)
    return (f'<section id="{_e(section.id)}"><h3>{_e(section.title)}</h3>'
            f'<p class="intro">{_e(section.intro)}</p>{body}</section>')


# --------------------------------------------------------------------------------------------------
# headline
# --------------------------------------------------------------------------------------------------


def _noise(t: dict) -> dict:
    """A task's zhong.noise; {} for a regression task, which has no Zhong et al. section."""
    return t["zhong"]["noise"] if "zhong" in t else {}


def headline_rows(result: dict) -> list[tuple]:
    """Per task x model: how much the seed mattered, from figures already in the result."""
    rows = []
    for task, t in result["tasks"].items():
        metric = t["metrics"][0]
        noise, boot = _noise(t), t["multibootstrap"]["models"]
        for model, m in t["models"].items():
            s = m["metrics"][metric]
            n = noise[model] if noise else {}
            means = n.get("means")  # absent where the decomposition is unavailable (P or F < 2)
            b = boot[model]
            ci = None if b["ci_low"] is None else f"[{b['ci_low']:.4f}, {b['ci_high']:.4f}]"
            rows.append((task, display_name(model), m["n_runs"], metric, f"{s['mean']:.4f} \u00b1 {_fmt(s['sd'])}",
                         f"{s['min']:.4f} \u2013 {s['max']:.4f}", m["consistency_all"], m["agreement_pairwise"],
                         None if not means else means["pretrain_var"], None if not means else means["finetune_var"],
                         n.get("finetune_share"), ci))
    return rows


HEADLINE_HEADER = ("task", "model", "runs", "metric", "mean \u00b1 SD", "min \u2013 max", "all runs agree",
                   "pairwise agreement", "PretVar", "FineVar", "FineVar share", "Multi-Bootstrap 95%")


def headline_sentences(result: dict) -> list[str]:
    out = []
    for task, t in result["tasks"].items():
        metric = t["metrics"][0]
        spans = [(m["metrics"][metric]["max"] - m["metrics"][metric]["min"], model, m["n_runs"])
                 for model, m in t["models"].items()]
        width, model, n = max(spans)
        runs = sorted({s[2] for s in spans})
        text = (f"{task}: with {'/'.join(map(str, runs))} runs per model, the seed alone moved {metric} by up to "
                f"{width:.4f} (max \u2212 min, {model})")
        cons = [(m["consistency_all"], model) for model, m in t["models"].items() if m["consistency_all"] is not None]
        if cons:
            low, low_model = min(cons)
            text += f"; all runs agreed on {100 * low:.1f}% of instances ({low_model}, the least)"
        shares = [(n["finetune_share"], model) for model, n in _noise(t).items()
                  if "unavailable" not in n and n["finetune_share"] is not None]
        if shares:
            text += ("; fine-tuning seeds make " + ", ".join(f"{100 * s:.0f}% ({mm})" for s, mm in shares)
                     + " of the seed variance")
        out.append(text + ".")
    return out


def render_headline(result: dict) -> str:
    rows = headline_rows(result)
    sentences = "".join(f'<p class="summary">{_e(s)}</p>' for s in headline_sentences(result))
    table = Table(HEADLINE_HEADER, tuple(rows),
                  "SD is the population SD over runs (ddof=0). All runs agree (consistency_all): share of instances on "
                  "which every run predicts the same label; pairwise agreement (agreement_pairwise): mean share over "
                  "run pairs. FineVar share: FineVar / (PretVar + FineVar) of Zhong et al.'s decomposition "
                  "(\u2013 when not estimable).")
    body = render_table(table) if rows else '<p class="unavailable">not available: the result has no task</p>'
    return (f'<section id="headline" class="headline"><h2>Headline: how much did the seed matter?</h2>'
            f"{sentences}{body}</section>")


def render_runs(result: dict) -> str:
    runs = result["runs"]
    parts = [", ".join(f"{k} {v}" for k, v in sorted(runs["by_status"].items())) or "none"]
    text = f"Trial runs by status: {parts[0]}."
    if runs["unfinished"]:
        text += f" Not analysed (not FINISHED): {', '.join(runs['unfinished'])}."
    if runs["duplicates"]:
        text += f" Ignored duplicates of finished cells: {', '.join(runs['duplicates'])}."
    return f'<p class="meta">{_e(text)}</p>'


def build_sections(result: dict) -> dict[str, list[Section]]:
    return {task: task_sections(task, t) for task, t in result["tasks"].items()}


def render_report(result: dict, sections: dict[str, list[Section]] | None = None) -> str:
    sections = build_sections(result) if sections is None else sections
    experiment = result["experiment"]
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = ['<li><a href="#headline">Headline</a></li>']
    body = []
    for task, secs in sections.items():
        tid = f"task-{slug(task)}"
        t = result["tasks"][task]
        nav.append(f'<li><a href="#{_e(tid)}">Task {_e(task)}</a></li>')
        notes = [f"{m}: ragged design, missing cells {d['missing_cells']}" for m, d in t["design"].items()
                 if not d["complete"]]
        notes += list(t["zhong"]["design_notes"].values()) if "zhong" in t else []
        note_html = "".join(f'<p class="unavailable">{_e(n)}</p>' for n in notes)
        body.append(f'<section id="{_e(tid)}" class="task"><h2>Task {_e(task)}</h2>'
                    f'<p class="meta">{_e(t["n_instances"])} evaluation instances; metrics: '
                    f'{_e(", ".join(t["metrics"]))}; models: {_e(", ".join(t["models"]))}.</p>'
                    f'{note_html}{"".join(render_section(s) for s in secs)}</section>')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>seedlab report: {_e(experiment)}</title><style>{CSS}</style></head><body><main>"
        f"<h1>seedlab report: {_e(experiment)}</h1>"
        f'<p class="meta">Tracking store {_e(result["tracking_uri"])}; result schema '
        f'{_e(result["schema"])}; written {created}.</p>{render_runs(result)}'
        f'<nav><ul>{"".join(nav)}</ul></nav>{render_headline(result)}{"".join(body)}</main></body></html>\n'
    )


def write_report(result: dict, path, figures_dir=None) -> Path:
    """Write the self-contained HTML report of `result` to `path` (atomically) and return the path.

    With `figures_dir`, every figure is also written there as ``<key>.png`` (the files MLflow gets)."""
    path = Path(path)
    sections = build_sections(result)
    page = render_report(result, sections)
    if figures_dir is not None:
        figures_dir = Path(figures_dir)
        figures_dir.mkdir(parents=True, exist_ok=True)
        for plot in all_plots(sections):
            (figures_dir / f"{plot.key}.png").write_bytes(plot.png)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
