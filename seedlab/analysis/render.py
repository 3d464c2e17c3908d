"""Rendering: the analysis result as terminal tables. Computes nothing new."""

from __future__ import annotations


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def render_summary(result: dict) -> str:
    out = [f"Experiment {result['experiment']!r}  ({result['tracking_uri']})"]
    runs = result["runs"]
    out.append("trial runs by status: " + ", ".join(f"{k} {v}" for k, v in sorted(runs["by_status"].items())))
    if runs["unfinished"]:
        out.append(f"not analysed (not FINISHED): {', '.join(runs['unfinished'])}")
    if runs["duplicates"]:
        out.append(f"ignored duplicate FINISHED runs of an already-finished cell: {', '.join(runs['duplicates'])}")
    for task, t in result["tasks"].items():
        out += ["", f"== {task}: {t['n_instances']} eval instances; SD is the population SD over runs (ddof=0) =="]
        for model, design in t["design"].items():
            if not design.get("complete", True):
                out.append(f"  ! {model}: ragged design, missing (pretrain, finetune) cells {design['missing_cells']}")
        header = ["model", "runs"]
        for metric in t["metrics"]:
            header += [f"{metric} mean", "sd", "min", "max"]
        header += ["consistency_all", "agreement_pairwise", "fleiss_kappa"]
        rows = []
        for model, m in t["models"].items():
            row = [model, str(m["n_runs"])]
            for metric in t["metrics"]:
                s = m["metrics"][metric]
                row += [_fmt(s["mean"]), _fmt(s["sd"]), _fmt(s["min"]), _fmt(s["max"])]
            row += [_fmt(m["consistency_all"]), _fmt(m["agreement_pairwise"]), _fmt(m["fleiss_kappa"])]
            rows.append(row)
        out += _table(header, rows)
        out.append("consistency_all: share of instances on which all N runs agree (falls as N grows); "
                   "agreement_pairwise: mean share over run pairs (= 1 - PD); N = runs.")
    return "\n".join(out)
