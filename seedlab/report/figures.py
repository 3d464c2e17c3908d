"""The report's figures, drawn with matplotlib (Agg, no pyplot state) from the analysis result dict only.

Every builder takes one task's part of the result (``result["tasks"][task]``, shaped as
``seedlab/analysis/schema.json`` says) and returns a list of `Plot` (a PNG and the tables of the numbers it
draws) or `Unavailable` (a title and why). `Unavailable` is only for the reasons a figure cannot exist that the
result documents: a regression task, too few models, runs or seeds (the analysis's own `unavailable` and
`agreement_note` texts), no logged representations. Keys the schema requires are read as such, so a malformed
result raises instead of turning into a missing figure. No builder
computes a statistic: they draw and tabulate numbers that are in the result. The only arithmetic is for
display (counting how many instances share a pair of instance accuracies, to size scatter markers; a
max - min range); shares such as FineVar / (PretVar + FineVar) come from the result.

Conventions: the Okabe-Ito palette (colour-blind safe, in this order), constrained layout, axis labels
with units, tick labels shortened and rotated when long or many.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from seedlab.data.catalog import display_name

# Okabe & Ito (2008), "Color Universal Design": blue, orange, bluish green, reddish purple, sky blue,
# vermillion, black, yellow (yellow last: weak on white).
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
GREY = "#777777"
DPI = 110
MAX_TICK_LABELS = 30  # heatmap axes: at most this many labelled ticks
MAX_ANNOTATED_RUNS = 12  # heatmap cells carry their value up to this many runs
MAX_CROSSTAB_LEVELS = 21  # instance-accuracy levels beyond this are binned (width 0.05) for display
LABEL_CHARS = 18  # tick labels longer than this are cut with an ellipsis

METRIC_LABELS = {
    "accuracy": "accuracy (fraction correct, 0-1)",
    "f1": "F1 (binary, 0-1)",
    "f1_macro": "macro F1 (0-1)",
    "mcc": "Matthews corr. coef. (-1 to 1)",
    "pearson": "Pearson r (-1 to 1)",
    "spearman": "Spearman rho (-1 to 1)",
}
MEASURE_LABELS = {
    "svcca": "SVCCA distance (1 - mean CCA)",
    "procrustes": "orthogonal Procrustes distance",
    "cka": "linear CKA distance (1 - CKA)",
}
SCHEME_LABELS = {
    "seeds_and_examples": "seeds and examples",
    "seeds_only": "seeds only",
    "examples_only": "examples only",
}

_RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "svg.fonttype": "none",
}


@dataclass(frozen=True)
class Table:
    """The numbers behind a figure. Cells: str, int, float (formatted by the page) or None (shown as -)."""

    header: tuple
    rows: tuple
    caption: str = ""
    collapsed: bool = False  # long tables go in a closed <details>
    label: str = ""  # what the closed <details> says it holds, e.g. the model


@dataclass(frozen=True)
class Plot:
    key: str  # file-safe and unique within a report: "<task>-<section>[-<model>]"
    title: str
    caption: str
    alt: str
    png: bytes
    tables: tuple = ()
    size: tuple = (0, 0)  # (width, height) in pixels


@dataclass(frozen=True)
class Unavailable:
    title: str
    reason: str


@dataclass
class Section:
    id: str  # "<task>-<name>", an HTML id
    title: str
    intro: str
    items: list = field(default_factory=list)  # Plot | Unavailable | Table


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def slug(text: str) -> str:
    """A file- and id-safe form of a task or model name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "x"


def short(label: str, limit: int = LABEL_CHARS) -> str:
    label = str(label)
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def colour(i: int) -> str:
    return OKABE_ITO[i % len(OKABE_ITO)]


def _figure(width: float, height: float):
    """A figure on its own Agg canvas: no pyplot, no global backend, safe beside other matplotlib users."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _render(fig) -> tuple[bytes, tuple[int, int]]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, facecolor="white")
    width, height = fig.canvas.get_width_height()
    return buf.getvalue(), (int(width), int(height))


def _plot(key: str, title: str, caption: str, alt: str, draw: Callable, tables) -> Plot:
    """Run ``draw() -> Figure`` under the report style and wrap the PNG with its tables."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = draw()
        png, size = _render(fig)
    return Plot(key, title, caption, alt, png, tuple(tables), size)


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return (n + cols - 1) // cols, cols


def _model_ticks(ax, names, axis: str = "x") -> None:
    """Model names as tick labels: their display names, shortened, rotated when many or long."""
    labels = [short(display_name(n)) for n in names]
    rotate = len(names) > 4 or max((len(s) for s in labels), default=0) > 10
    pos = np.arange(len(names))
    if axis == "x":
        ax.set_xticks(pos, labels, rotation=30 if rotate else 0, ha="right" if rotate else "center",
                      rotation_mode="anchor")
    else:
        ax.set_yticks(pos, labels)


# --------------------------------------------------------------------------------------------------
# metric distributions across seeds
# --------------------------------------------------------------------------------------------------


def metric_distributions(task: str, t: dict) -> list:
    title = "Metric distributions across seeds"
    models, metrics = t["models"], t["metrics"]
    names = list(models)

    def draw():
        rows, cols = _grid(len(metrics))
        width = min(9.0, max(3.2, 0.9 * len(names) + 1.6) * cols)
        fig = _figure(width, 3.3 * rows)
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, metric in zip(axes, metrics):
            data = [np.asarray(models[n]["metrics"][metric]["values"], dtype=float) for n in names]
            ax.boxplot(data, positions=np.arange(len(names)), widths=0.5, showfliers=False, whis=(0, 100),
                       medianprops={"color": "black"}, boxprops={"color": GREY}, whiskerprops={"color": GREY},
                       capprops={"color": GREY})
            for i, v in enumerate(data):
                k = np.arange(len(v))
                jitter = ((k * 0.6180339887) % 1.0 - 0.5) * 0.3  # deterministic, spreads equal values
                ax.scatter(i + jitter, v, s=18, color=colour(i), alpha=0.85, edgecolors="white", linewidths=0.4,
                           zorder=3)
                ax.scatter([i + 0.32], [models[names[i]]["metrics"][metric]["mean"]], marker="D", s=22, color="black",
                           zorder=4)
            _model_ticks(ax, names)
            ax.set_xlabel("model")
            ax.set_ylabel(METRIC_LABELS.get(metric, metric))
            counts = sorted({len(v) for v in data})
            ax.set_title(f"{metric}: one point per run ({'/'.join(map(str, counts))} runs)")
        for ax in axes[len(metrics):]:
            ax.set_visible(False)
        return fig

    summary_rows, value_rows = [], []
    for metric in metrics:
        for n in names:
            s = models[n]["metrics"][metric]
            summary_rows.append((n, metric, s["n"], s["mean"], s["sd"], s["min"], s["max"], s["max"] - s["min"]))
            value_rows.append((n, metric, ", ".join(f"{v:.4f}" for v in s["values"])))
    ddof = next(iter(models.values()))["metrics"][metrics[0]]["ddof"]
    tables = [
        Table(("model", "metric", "runs", "mean", f"SD (ddof={ddof})", "min", "max", "max - min"),
              tuple(summary_rows), "Per model and metric, over runs."),
        Table(("model", "metric", "per-run values (as plotted)"), tuple(value_rows), collapsed=True,
              label="per-run values"),
    ]
    caption = ("Each point is one fine-tuning run; boxes span the quartiles, whiskers the full range, the "
               "line is the median and the diamond the mean. The spread is what the random seed alone moves.")
    return [_plot(f"{slug(task)}-distributions", title, caption,
                  f"{task}: per-run {', '.join(metrics)} by model", draw, tables)]


# --------------------------------------------------------------------------------------------------
# run x run agreement
# --------------------------------------------------------------------------------------------------


def _run_labels(names: list[str]) -> list[str]:
    """Drop the path prefix all run names share ("sst2/mini/"), keeping e.g. "p3/f1"."""
    parts = [str(n).split("/") for n in names]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    return ["/".join(p[common:]) for p in parts]


def agreement_heatmaps(task: str, t: dict) -> list:
    title = "Run \u00d7 run agreement"
    if t["is_regression"]:
        return [Unavailable(title, "label agreement is undefined for a regression task")]
    panels, missing = [], {}
    for model, m in t["models"].items():
        if "agreement_matrix" not in m:  # the analysis says why (fewer than 2 runs)
            missing[model] = m["agreement_note"]
            continue
        am = m["agreement_matrix"]
        panels.append((model, np.asarray(am["matrix"], dtype=float), list(am["run_names"])))
    if not panels:
        return [Unavailable(title, "; ".join(f"{m}: {r}" for m, r in missing.items()))]
    # one colour scale for every model of the task, spanning the off-diagonal pairs
    off = np.concatenate([mat[~np.eye(len(mat), dtype=bool)] for _, mat, _ in panels])
    off = off[np.isfinite(off)]
    vmin, vmax = (float(off.min()), float(off.max())) if off.size else (0.0, 1.0)
    if vmax - vmin < 1e-3:  # all pairs (nearly) equal: a small band around the value
        vmin, vmax = vmin - 5e-4, vmax + 5e-4
    n_max = max(len(mat) for _, mat, _ in panels)
    digits = 3 if vmax - vmin < 0.05 else 2  # close values need the third decimal to differ

    def draw():
        import matplotlib

        cols = min(len(panels), 3 if n_max <= 10 else 2 if n_max <= 20 else 1)
        rows = (len(panels) + cols - 1) // cols
        panel = min(8.4 / cols, 2.4 + 0.34 * n_max)
        fig = _figure(panel * cols + 1.0, panel * rows + 0.3)
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        cmap = matplotlib.colormaps["cividis"].with_extremes(bad="#eeeeee")
        im = None
        for ax, (model, matrix, names) in zip(axes, panels):
            n = len(matrix)
            labels = [short(s, 14) for s in _run_labels(names)]
            offdiag = ~np.eye(n, dtype=bool)
            im = ax.imshow(np.where(offdiag, matrix, np.nan), cmap=cmap, vmin=vmin, vmax=vmax,
                           interpolation="nearest")
            ax.grid(False)
            step = max(1, int(np.ceil(n / MAX_TICK_LABELS)))
            ticks = np.arange(0, n, step)
            ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=90)
            ax.set_yticks(ticks, [labels[i] for i in ticks])
            ax.set_xlabel("run")
            ax.set_ylabel("run")
            ax.set_title(f"{short(display_name(model))} ({n} runs)")
            if n <= MAX_ANNOTATED_RUNS and (panel - 0.9) / n >= 0.2 + 0.09 * digits:  # room for the digits (inches)
                mid = (vmin + vmax) / 2
                for i in range(n):
                    for j in range(n):
                        if i != j and np.isfinite(matrix[i, j]):
                            ax.text(j, i, f"{matrix[i, j]:.{digits}f}", ha="center", va="center", fontsize=6.5,
                                    color="black" if matrix[i, j] > mid else "white")
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        bar = fig.colorbar(im, ax=list(axes[: len(panels)]), shrink=0.9)
        bar.set_label("agreement (share of instances)")
        return fig

    tables = []
    for model, matrix, names in panels:
        rows = tuple((names[i], *matrix[i].tolist()) for i in range(len(matrix)))
        tables.append(Table(("run", *_run_labels(names)), rows, f"{model}: share of evaluation instances on which "
                            "two runs predict the same label.", collapsed=True, label=f"{model}, {len(matrix)} runs"))
    caption = ("Cell (i, j) is the share of evaluation instances on which runs i and j predict the same label. "
               "One colour scale for all models, from the lowest to the highest pair; the diagonal (a run with "
               "itself, always 1) is left blank. Runs listed by pretraining seed: runs sharing one form blocks "
               "along the diagonal.")
    if missing:
        caption += " Not available: " + "; ".join(f"{m} ({r})" for m, r in missing.items()) + "."
    return [_plot(f"{slug(task)}-agreement", title, caption, f"{task}: run by run agreement heatmaps", draw, tables)]


# --------------------------------------------------------------------------------------------------
# instance accuracy between models (Zhong et al.)
# --------------------------------------------------------------------------------------------------


def _model_pairs(models: list[str], limit: int = 6) -> list[tuple[str, str]]:
    """Neighbouring sizes, then smallest vs largest; at most `limit` pairs."""
    pairs = list(zip(models, models[1:]))
    if len(models) > 2:
        pairs.append((models[0], models[-1]))
    return pairs[:limit]


def _levels(x: np.ndarray) -> np.ndarray:
    """Display levels of instance accuracies: exact when few, else rounded to 0.05."""
    if len(np.unique(x)) > MAX_CROSSTAB_LEVELS:
        return np.round(x * 20) / 20
    return np.round(x, 10)


def _zhong_unavailable(t: dict) -> str | None:
    """Why a task has no Zhong et al. section (the schema: exactly the regression tasks), or None."""
    if t["is_regression"]:
        return "per-instance correctness (Zhong et al.) is undefined for a regression task"
    return None


def instance_accuracy_scatter(task: str, t: dict) -> list:
    title = "Instance accuracy between models"
    if reason := _zhong_unavailable(t):
        return [Unavailable(title, reason)]
    ia = t["zhong"]["instance_accuracy"]
    models = list(ia)
    if len(models) < 2:
        return [Unavailable(title, f"needs at least two models; this task has {len(models)} "
                                   f"({', '.join(models) or 'none'})")]
    pairs = _model_pairs(models)
    crosstabs = []
    for a, b in pairs:
        xa, xb = _levels(np.asarray(ia[a], dtype=float)), _levels(np.asarray(ia[b], dtype=float))
        la, lb = np.unique(xa), np.unique(xb)
        counts = np.zeros((len(la), len(lb)), dtype=np.int64)
        np.add.at(counts, (np.searchsorted(la, xa), np.searchsorted(lb, xb)), 1)
        crosstabs.append((a, b, la, lb, counts))
    m = len(ia[models[0]])

    def draw():
        rows, cols = _grid(len(pairs))
        fig = _figure(min(9.0, 3.1 * cols + 0.4), 3.1 * rows)
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, (a, b, la, lb, counts) in zip(axes, crosstabs):
            ii, jj = np.nonzero(counts)
            c = counts[ii, jj]
            ax.scatter(la[ii], lb[jj], s=8 + 220 * np.sqrt(c / counts.max()), color=OKABE_ITO[0], alpha=0.6,
                       edgecolors="white", linewidths=0.4, zorder=3)
            ax.plot([0, 1], [0, 1], ls="--", color=GREY, lw=0.9, zorder=2)
            ax.set_xlim(-0.06, 1.06)
            ax.set_ylim(-0.06, 1.06)
            ax.set_aspect("equal")
            ax.set_xlabel(f"{short(display_name(a))}: instance accuracy")
            ax.set_ylabel(f"{short(display_name(b))}: instance accuracy")
            ax.set_title(f"{short(display_name(b))} vs {short(display_name(a))}")
        for ax in axes[len(pairs):]:
            ax.set_visible(False)
        return fig

    tables = []
    for a, b, la, lb, counts in crosstabs:
        rows = tuple((f"{x:g}", *counts[i].tolist()) for i, x in enumerate(la))
        tables.append(Table((f"{a} \\ {b}", *(f"{y:g}" for y in lb)), rows,
                            f"Number of instances by instance accuracy: rows {a}, columns {b}.", collapsed=True,
                            label=f"{b} vs {a}, instance counts"))
    caption = (f"Instance accuracy = share of a model's runs that get an instance right ({m} instances). Each "
               "marker is the set of instances with one pair of instance accuracies; marker area grows with "
               "their number. Below the dashed diagonal: instances the second model gets right less often.")
    return [_plot(f"{slug(task)}-instance-accuracy", title, caption, f"{task}: instance accuracy scatter plots",
                  draw, tables)]


# --------------------------------------------------------------------------------------------------
# decaying instances: Decayhat(t) vs Decay'(t)
# --------------------------------------------------------------------------------------------------


def decay_curves(task: str, t: dict) -> list:
    title = "Decaying instances: Decayhat(t) vs Decay\u2032(t)"  # = the SECTIONS title
    if reason := _zhong_unavailable(t):
        return [Unavailable(title, reason)]
    decay = t["zhong"]["decay"]
    skipped = t["zhong"].get("decay_unavailable", [])
    if not decay:
        if skipped:
            return [Unavailable(title, "; ".join(f"{d['from']} \u2192 {d['to']}: {d['unavailable']}" for d in skipped))]
        return [Unavailable(title, "needs at least two models with runs to compare")]

    def draw():
        rows, cols = _grid(len(decay))
        fig = _figure(min(9.0, 3.0 * cols + 0.4), 2.7 * rows + 0.4)
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)).ravel()
        for ax, d in zip(axes, decay):
            x = np.asarray(d["t"], dtype=float)
            ax.plot(x, np.asarray(d["decay_hat"], dtype=float), color=OKABE_ITO[0], lw=1.6,
                    label=r"$\widehat{\mathrm{Decay}}(t)$: observed")
            ax.plot(x, np.asarray(d["decay_baseline"], dtype=float), color=OKABE_ITO[1], lw=1.6, ls="--",
                    label=r"$\mathrm{Decay}'(t)$: random baseline (same model)")
            ax.axvline(d["argmax_t"], color=GREY, lw=0.8, ls=":", label="t of the largest gap")
            ax.set_title(f"{short(display_name(d['from']), 14)} \u2192 {short(display_name(d['to']), 14)} "
                         f"(bound {d['lower_bound']:.3f})")
            ax.set_xlim(-1.0, 0.0)
        for ax in axes[len(decay):]:
            ax.set_visible(False)
        for ax in axes[(rows - 1) * cols:]:
            ax.set_xlabel("threshold t (accuracy difference)")
        for ax in axes[::cols]:
            ax.set_ylabel("share of instances \u2264 t")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False)
        return fig

    summary = tuple((d["from"], d["to"], d["max_difference"], d["bias"], d["lower_bound"], d["argmax_t"],
                     d["fisher_bh"]["fraction"]) for d in decay)
    tables = [Table(("from", "to", "raw max gap", "bootstrap bias", "lower bound", "at t", "Fisher+BH share"),
                    summary, "Lower bound on the share of instances where the second model is "
                                         "truly worse (Zhong et al. Theorem 1, bias-corrected).")]
    header = ["t"]
    cols = []
    for d in decay:
        header += [f"{d['from']}\u2192{d['to']} Decayhat", f"{d['from']}\u2192{d['to']} Decay\u2032"]
        cols += [d["decay_hat"], d["decay_baseline"]]
    ts = decay[0]["t"]
    if all(d["t"] == ts for d in decay):
        curve_rows = tuple((ts[i], *(c[i] for c in cols)) for i in range(len(ts)))
        tables.append(Table(tuple(header), curve_rows, "The curves as plotted.", collapsed=True,
                            label=f"the curves, {len(ts)} thresholds"))
    caption = ("For each ordered pair (from \u2192 to): Decayhat(t) is the share of instances whose "
               "instance-accuracy difference (to \u2212 from) is \u2264 t; Decay\u2032(t) is the same share between "
               "two random halves of one model's runs, where no true difference exists. The largest gap, "
               "bias-corrected, is the lower bound on the share of decaying instances.")
    caveats = list(dict.fromkeys(part for d in decay if d["caveat"] for part in d["caveat"].split("; ")))
    if caveats:
        caption += " Note: " + " ".join(c[0].upper() + c[1:] + ("" if c.endswith(".") else ".") for c in caveats)
    if skipped:
        caption += " Not available: " + "; ".join(f"{d['from']} \u2192 {d['to']} ({d['unavailable']})"
                                                  for d in skipped) + "."
    return [_plot(f"{slug(task)}-decay", title, caption, f"{task}: decay curves per model pair", draw, tables)]


# --------------------------------------------------------------------------------------------------
# variance decomposition by size
# --------------------------------------------------------------------------------------------------


def noise_bars(task: str, t: dict) -> list:
    title = "Variance decomposition by model size"
    if reason := _zhong_unavailable(t):
        return [Unavailable(title, reason)]
    noise = t["zhong"]["noise"]
    have = {m: n for m, n in noise.items() if "unavailable" not in n}
    missing = {m: n["unavailable"] for m, n in noise.items() if "unavailable" in n}
    if not have:
        return [Unavailable(title, "; ".join(f"{m}: {r}" for m, r in missing.items()))]
    names = list(have)

    def draw():
        width = float(np.clip(2.0 + 1.3 * len(names), 6.0, 9.0))
        fig = _figure(width, 3.4)
        ax1, ax2 = fig.subplots(1, 2, width_ratios=(1, 1.6))
        x = np.arange(len(names))
        ax1.bar(x, [have[m]["means"]["bias2"] for m in names], width=0.6, color=OKABE_ITO[2])
        ax1.set_ylabel("mean over instances (squared 0/1 loss)")
        ax1.set_title("Bias\u00b2")
        _model_ticks(ax1, names)
        ax1.set_xlabel("model")
        w = 0.38
        ax2.bar(x - w / 2, [have[m]["means"]["pretrain_var"] for m in names], width=w, color=OKABE_ITO[0],
                label="PretVar (pretraining seed)")
        ax2.bar(x + w / 2, [have[m]["means"]["finetune_var"] for m in names], width=w, color=OKABE_ITO[1],
                label="FineVar (fine-tuning seed)")
        ax2.axhline(0, color="black", lw=0.6)
        ax2.set_ylabel("mean over instances (squared 0/1 loss)")
        ax2.set_title("Seed variance")
        ax2.legend(frameon=False, loc="upper left", bbox_to_anchor=(0, 1), ncols=1)
        _model_ticks(ax2, names)
        ax2.set_xlabel("model")
        top = max(max(have[m]["means"]["pretrain_var"], have[m]["means"]["finetune_var"]) for m in names)
        ax2.set_ylim(top=max(top, 1e-9) * 1.35)  # room for the legend above the bars
        return fig

    rows = tuple((m, f"{have[m]['P']}\u00d7{have[m]['F']}", have[m]["means"]["loss"], have[m]["means"]["bias2"],
                  have[m]["means"]["pretrain_var"], have[m]["means"]["finetune_var"], have[m]["finetune_share"])
                 for m in names)
    tables = [Table(("model", "P\u00d7F seeds", "loss", "Bias\u00b2", "PretVar", "FineVar",
                     "FineVar / (PretVar + FineVar)"), rows,
                    "Means over instances; unbiased estimators, so a component can be slightly negative.")]
    caption = ("Zhong et al.'s decomposition of each instance's 0/1 loss: Bias\u00b2 (what no seed fixes), "
               "PretVar (variance from the pretraining seed) and FineVar (variance from the fine-tuning seed).")
    if missing:
        caption += " Not estimated: " + "; ".join(f"{m} ({r})" for m, r in missing.items()) + "."
    return [_plot(f"{slug(task)}-noise", title, caption, f"{task}: bias and seed variance by model", draw, tables)]


# --------------------------------------------------------------------------------------------------
# representation distance by layer
# --------------------------------------------------------------------------------------------------


def representation_curves(task: str, t: dict) -> list:
    title = "Representation distance by layer"
    if "representations" not in t:  # no run logged any
        return [Unavailable(title, "no run logged representations (sweep option log_representations)")]
    reps = t["representations"]
    have = {m: r for m, r in reps.items() if "unavailable" not in r}
    missing = {m: r["unavailable"] for m, r in reps.items() if "unavailable" in r}
    if not have:
        return [Unavailable(title, "; ".join(f"{m}: {r}" for m, r in missing.items()))]
    measures = list(dict.fromkeys(mm for r in have.values() for mm in r["measures"]))

    def draw():
        rows, cols = _grid(len(measures))
        fig = _figure(min(9.0, 3.0 * cols + 0.4), 2.9 * rows + 0.4)
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, measure in zip(axes, measures):
            for i, (model, r) in enumerate(have.items()):
                ys = np.array([np.nan if y is None else y for y in r["by_layer"][measure]], dtype=float)
                ax.plot(np.arange(1, len(ys) + 1), ys, marker="o", ms=3.5, lw=1.4, color=colour(i),
                        label=short(model))
            ax.set_title(MEASURE_LABELS.get(measure, measure))
            ax.set_xlabel("layer (1 = lowest transformer layer)")
            ax.set_ylabel("mean distance over run pairs")
            ax.xaxis.get_major_locator().set_params(integer=True)
        for ax in axes[len(measures):]:
            ax.set_visible(False)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(6, len(labels)), frameon=False)
        return fig

    tables = []
    for model, r in have.items():
        n_layers = r["n_layers"]
        rows = tuple((layer + 1, *(r["by_layer"][mm][layer] for mm in measures)) for layer in range(n_layers))
        tables.append(Table(("layer", *measures), rows, f"{model} ({r['n_runs']} runs): mean distance over "
                            f"run pairs of the first-token states.", collapsed=n_layers > 6,
                            label=f"{model}, {n_layers} layers"))
    caption = ("Du & Nguyen's representation instability: per layer, the distance between two runs' first-token "
               "hidden states, averaged over run pairs (0 = identical up to rotation).")
    if missing:
        caption += " Not available: " + "; ".join(f"{m} ({r})" for m, r in missing.items()) + "."
    return [_plot(f"{slug(task)}-representations", title, caption, f"{task}: representation distance by layer",
                  draw, tables)]


# --------------------------------------------------------------------------------------------------
# Multi-Bootstrap
# --------------------------------------------------------------------------------------------------


def multibootstrap_intervals(task: str, t: dict) -> list:
    title = "Multi-Bootstrap comparisons"
    b = t["multibootstrap"]
    metric = b["metric"]
    per_model = b["models"]
    names = [m for m in t["models"] if m in per_model]
    comp = b.get("comparison")  # only with --compare
    schemes = list(SCHEME_LABELS) if comp else []

    def interval(ax, y, est, col, label=None):
        lo, hi, pt = est["ci_low"], est["ci_high"], est["point"]  # None where undefined
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [y, y], color=col, lw=2.2, solid_capstyle="butt", label=label)
            ax.plot([lo, lo], [y - 0.15, y + 0.15], color=col, lw=1.2)
            ax.plot([hi, hi], [y - 0.15, y + 0.15], color=col, lw=1.2)
        if pt is not None:
            ax.plot([pt], [y], "o", color=col, ms=5)

    def draw():
        height = max(2.4, 0.45 * len(names) + 1.3)
        if schemes:
            fig = _figure(9.0, max(height, 0.45 * len(schemes) + 1.3))
            ax1, ax2 = fig.subplots(1, 2)
        else:
            fig = _figure(6.0, height)
            ax1, ax2 = fig.add_subplot(), None
        for i, model in enumerate(names):
            interval(ax1, i, per_model[model], colour(i))
        _model_ticks(ax1, names, axis="y")
        ax1.invert_yaxis()
        ax1.set_xlabel(f"{metric} (point and 95% interval)")
        ax1.set_title(f"Per model, B = {b['n_boot']}")
        ax1.grid(axis="y", visible=False)
        if ax2 is not None:
            for i, s in enumerate(schemes):
                interval(ax2, i, comp[s]["delta"], colour(i))
            ax2.axvline(0, color="black", lw=0.7)
            ax2.set_yticks(np.arange(len(schemes)), [SCHEME_LABELS[s] for s in schemes])
            ax2.invert_yaxis()
            ax2.set_xlabel(f"difference in {metric}: {short(comp['intervention'])} \u2212 {short(comp['baseline'])}")
            ax2.set_ylabel("resampled")
            ax2.set_title("Comparison (" + ("paired" if comp["paired"] else "unpaired") + ")")
            ax2.grid(axis="y", visible=False)
        return fig

    rows = tuple((m, *(per_model[m][k] for k in ("point", "mean", "sd", "ci_low", "ci_high"))) for m in names)
    tables = [Table(("model", metric, "bootstrap mean", "bootstrap SD", "95% low", "95% high"), rows,
                    f"{b['estimator']}; B = {b['n_boot']}, seed = {b['seed']}.")]
    if schemes:
        crow = tuple((SCHEME_LABELS[s], comp[s]["delta"]["point"], comp[s]["delta"]["sd"], comp[s]["delta"]["ci_low"],
                      comp[s]["delta"]["ci_high"], comp[s]["p_value"])
                     for s in schemes)
        header = ("resampled", f"\u0394 {metric}", "bootstrap SD", "95% low", "95% high", "p (\u0394 \u2264 0)")
        tables.append(Table(header,
                            crow, f"{comp['intervention']} \u2212 {comp['baseline']}, resampling both sources of "
                                  "variation, the seeds only, or the examples only."))
    caption = ("Multi-Bootstrap (Sellam et al. 2022): the metric resampled over pretraining seeds and evaluation "
               "examples together, with 95% percentile intervals.")
    if not comp:
        caption += " No comparison was requested (seedlab analyze --compare BASELINE INTERVENTION)."
    return [_plot(f"{slug(task)}-multibootstrap", title, caption, f"{task}: Multi-Bootstrap intervals", draw, tables)]


# --------------------------------------------------------------------------------------------------
# mitigation methods (Du & Nguyen 2023) and expected best score (Dodge et al. 2019)
# --------------------------------------------------------------------------------------------------

MEASURE_TITLES = {"sd": "SD of the metric", "pd": "PD (pairwise disagreement)", "jsd": "JSD (nats)",
                  "one_minus_fleiss_kappa": "1 \u2212 Fleiss \u03ba"}


def method_instability(task: str, t: dict) -> list:
    title = "Mitigation methods compared"
    if "methods" not in t:
        return []  # a single mitigation method: no section
    per_model = {m: c for m, c in t["methods"].items() if "unavailable" not in c}
    if not per_model:
        return [Unavailable(title, "; ".join(f"{m}: {c['unavailable']}" for m, c in t["methods"].items()))]
    out = []
    for model, c in per_model.items():
        methods, measures, ci = c["methods"], c["measures"], c["bootstrap"]["intervals"]

        def draw(c=c, methods=methods, measures=measures, ci=ci):
            rows, cols = _grid(len(measures), max_cols=4)
            fig = _figure(2.6 * cols + 0.8, 0.35 * len(methods) * rows + 1.2 * rows)
            axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
            for ax, measure in zip(axes, measures):
                for i, method in enumerate(methods):
                    iv = ci[method][measure]
                    ax.plot([iv["ci_low"], iv["ci_high"]], [i, i], color=colour(i), lw=2.2, solid_capstyle="butt")
                    ax.plot([iv["point"]], [i], "o", color=colour(i), ms=5)
                    ax.annotate(f"#{int(c['ranks'][measure][method])}", (iv["point"], i), xytext=(0, 5),
                                textcoords="offset points", ha="center", fontsize=7)
                _model_ticks(ax, methods, axis="y")
                ax.invert_yaxis()
                ax.set_title(MEASURE_TITLES.get(measure, measure))
                ax.set_xlabel("instability (lower = more stable)")
                ax.grid(axis="y", visible=False)
            for ax in axes[len(measures):]:
                ax.set_visible(False)
            return fig

        rows = tuple((method, *(x for measure in measures for x in (c["values"][method][measure],
                                                                   ci[method][measure]["ci_low"],
                                                                   ci[method][measure]["ci_high"],
                                                                   int(c["ranks"][measure][method]))))
                     for method in methods)
        header = ("method", *(h for measure in measures for h in (measure, "95% low", "95% high", "rank")))
        tau = c["ranking_agreement"]
        tau_rows = tuple((a, *(tau["tau"][i][j] for j in range(len(tau["measures"])))) for i, a in enumerate(tau["measures"]))
        tables = [Table(header, rows, f"{model}: each measure on {c['k']} runs per method (equal seed counts); "
                                      f"bootstrap over seeds without self-pairs, B = {c['bootstrap']['n_boot']}; "
                                      "rank 1 = most stable."),
                  Table(("Kendall \u03c4", *tau["measures"]), tau_rows,
                        "Agreement of the methods' rankings under each pair of measures.")]
        caption = (f"{model}: instability of each mitigation method under Du & Nguyen's measures, point and 95% "
                   f"bootstrap interval over seeds; the label is the method's rank under that measure.")
        out.append(_plot(f"{slug(task)}-methods-{slug(model)}", f"{title}: {model}", caption,
                         f"{task}, {model}: instability by mitigation method", draw, tables))
    return out


def expected_max_curves(task: str, t: dict) -> list:
    title = "Expected best score of n runs"
    curves = t["expected_max"]
    if not curves:
        return [Unavailable(title, "no condition has at least 2 runs")]
    metric = t["metrics"][0]
    names = list(curves)

    def draw():
        fig = _figure(6.0, 3.4)
        ax = fig.add_subplot()
        for i, name in enumerate(names):
            e = curves[name]
            ax.fill_between(e["n"], e["ci_low"], e["ci_high"], color=colour(i), alpha=0.15, lw=0)
            ax.plot(e["n"], e["expected_max"], "-o", color=colour(i), ms=3, label=short(name))
        ax.set_xlabel("n (runs tried)")
        ax.set_ylabel(f"expected best {METRIC_LABELS.get(metric, metric)}")
        ax.legend(loc="lower right")
        return fig

    rows = tuple((name, e["N"], *(e["expected_max"][n - 1] if n <= len(e["expected_max"]) else None for n in (1, 2, 5, 10)))
                 for name, e in curves.items())
    caption = (f"Dodge et al. (2019): the expected maximum of {metric} over n runs drawn from the N observed ones "
               f"(with replacement), with a 95% bootstrap band. {t['expected_max_note']}")
    return [_plot(f"{slug(task)}-expected-max", title, caption, f"{task}: expected best {metric} of n runs", draw,
                  [Table(("condition", "N runs", "n=1", "n=2", "n=5", "n=10"), rows, "Expected best score.")])]


# --------------------------------------------------------------------------------------------------
# instability table (no figure)
# --------------------------------------------------------------------------------------------------


def instability_table(task: str, t: dict) -> list:
    title = "Prediction-level instability"
    models = t["models"]
    rows = tuple((m, mm["n_runs"], *(i[k] for k in ("sd", "pd", "jsd", "one_minus_fleiss_kappa", "consistency_all",
                                                    "agreement_pairwise")))
                 for m, mm in models.items() if (i := mm["instability"]) is not None)
    if not rows:  # every model: a regression task or fewer than 2 runs, as the analysis notes
        return [Unavailable(title, "; ".join(sorted({mm["agreement_note"] for mm in models.values()})))]
    metric = t["metrics"][0]
    return [Table(("model", "runs", f"SD of {metric}", "PD", "JSD", "1 \u2212 Fleiss \u03ba", "consistency_all",
                   "agreement_pairwise"), rows,
                  "Du & Nguyen (2023): PD = mean pairwise disagreement, JSD = mean pairwise Jensen-Shannon "
                  "divergence of class probabilities (nats); consistency_all = share of instances on which all "
                  "runs agree (falls as runs grow).")]


def paper_consistency_table(task: str, t: dict) -> list:
    """Bui/Zhou et al.'s readings per pair of runs of different seeds (older results lack them: no section)."""
    models = t["models"]
    if not any("pairwise_consistency" in mm for mm in models.values()):
        return []  # a result written before these readings
    have = {m: mm["pairwise_consistency"] for m, mm in models.items() if mm["pairwise_consistency"]}
    if not have:
        return [Unavailable("Consistency between pairs of runs", "every model has fewer than 2 runs")]
    spread = lambda s: (None, None, None, None) if s is None else (s["mean"], s["sd"], s["min"], s["max"])  # noqa: E731
    if t["is_regression"]:
        rows = tuple((m, p["n_runs"], p["n_pairs"], *spread(p["pearson"]), p["n_undefined"]) for m, p in have.items())
        return [Table(("model", "runs", "pairs", "Pearson: mean", "SD", "min", "max", "undefined pairs"), rows,
                      "Pearson correlation of two runs' predicted values, over every pair of runs (SD with ddof=0); "
                      "a pair with a constant run has none and is left out.")]
    rows = tuple((m, p["n_runs"], p["n_pairs"], *spread(p["consistency"]), *spread(p["correct_consistency"]))
                 for m, p in have.items())
    return [Table(("model", "runs", "pairs", "consistency: mean", "SD", "min", "max", "correct consistency: mean",
                   "SD", "min", "max"), rows,
                  "Over every pair of runs i, j (SD with ddof=0): consistency = (1/m) \u2211_k [\u0177_ik = \u0177_jk], "
                  "the share of instances the two label alike (its mean is agreement_pairwise); correct consistency "
                  "= (1/m) \u2211_k [\u0177_ik = y_k][\u0177_jk = y_k], the share both get right.")]


# --------------------------------------------------------------------------------------------------
# issue 15: almost stochastic order, seed budget, predictive multiplicity, seed ensembles
# --------------------------------------------------------------------------------------------------


def _log2_axis(ax, ticks, axis: str = "x") -> None:
    """A base-2 log axis labelled with the plain numbers (1, 2, 4, ...), not 2^k."""
    from matplotlib.ticker import FixedLocator, NullLocator

    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log", base=2)
    target.set_major_locator(FixedLocator(list(ticks)))
    target.set_major_formatter(lambda v, _: f"{v:g}")
    target.set_minor_locator(NullLocator())


def _aso_heatmap(ax, fam: dict, threshold: float):
    """eps_min of row A over column B; cells below the threshold (A dominates B) outlined."""
    import matplotlib

    names = fam["names"]
    mat = np.array([[np.nan if x is None else x for x in row] for row in fam["eps_min"]], dtype=float)
    cmap = matplotlib.colormaps["cividis"].with_extremes(bad="#eeeeee")
    im = ax.imshow(mat, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.grid(False)
    labels = [short(n, 14) for n in names]
    ax.set_xticks(np.arange(len(names)), labels, rotation=90 if len(names) > 3 else 0)
    ax.set_yticks(np.arange(len(names)), labels)
    ax.set_xlabel("B (compared against)")
    ax.set_ylabel("A (suspected better)")
    if len(names) <= MAX_ANNOTATED_RUNS:
        for i in range(len(names)):
            for j in range(len(names)):
                if i != j:
                    ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if mat[i, j] > 0.5 else "white",
                            fontweight="bold" if mat[i, j] < threshold else "normal")
    return im


def aso_matrix(task: str, t: dict) -> list:
    title = "Almost Stochastic Order"
    a = t["aso"]
    families = [("models", a["models"])] + [(f"methods of {m}", fam) for m, fam in (a.get("methods") or {}).items()]
    have = [(name, fam) for name, fam in families if "unavailable" not in fam]
    missing = [(name, fam["unavailable"]) for name, fam in families if "unavailable" in fam]
    if not have:
        return [Unavailable(title, "; ".join(f"{n}: {r}" for n, r in missing))]
    threshold = a["threshold"]

    def draw():
        n_max = max(len(fam["names"]) for _, fam in have)
        panel = min(4.2, 1.8 + 0.5 * n_max)
        fig = _figure(panel * len(have) + 1.0, panel + 0.4)
        axes = np.atleast_1d(fig.subplots(1, len(have), squeeze=False)).ravel()
        im = None
        for ax, (name, fam) in zip(axes, have):
            im = _aso_heatmap(ax, fam, threshold)
            ax.set_title(f"{name} ({fam['n_comparisons']} ordered pairs)")
        bar = fig.colorbar(im, ax=list(axes), shrink=0.9)
        bar.set_label("eps_min of A over B (0: A dominates)")
        return fig

    tables = []
    for name, fam in have:
        rows = tuple((p["a"], p["b"], p["n_a"], p["n_b"], p["violation_ratio"], p["sigma"], p["eps_min"],
                      "yes" if p["dominates"] else "no") for p in fam["pairs"])
        tables.append(Table(("A", "B", "runs A", "runs B", "eps_W2", "sigma", "eps_min", f"eps_min < {threshold:g}"),
                            rows, f"{name}: {fam['decision_rule']}."))
    caption = (f"Cell (A, B): eps_min of A over B from the runs' {a['metric']} (del Barrio et al. 2018; Dror et al. "
               f"2019), the test's upper bound on how far A's score distribution falls short of stochastically "
               f"dominating B's; bold where eps_min < {threshold:g}, the decision rule. Bootstrap B = "
               f"{a['n_bootstrap']}, confidence {a['confidence_level']:g} before the Bonferroni correction.")
    if missing:
        caption += " Not available: " + "; ".join(f"{n} ({r})" for n, r in missing) + "."
    return [_plot(f"{slug(task)}-aso", title, caption, f"{task}: eps_min of every ordered pair", draw, tables)]


def _per_model(t: dict, key: str, title: str) -> tuple[dict, dict, list | None]:
    """A per-model section of a classification task: (models that have it, model -> why not, and the items to
    return instead of a figure when none has it or the task is a regression task, else None)."""
    if t["is_regression"]:
        return {}, {}, [Unavailable(title, "defined on predicted labels; this is a regression task")]
    entries = t[key]["models"]
    have = {m: e for m, e in entries.items() if "unavailable" not in e}
    missing = {m: e["unavailable"] for m, e in entries.items() if "unavailable" in e}
    return have, missing, None if have else [Unavailable(title, "; ".join(f"{m}: {r}" for m, r in missing.items()))]


def _not_available(missing: dict) -> str:
    return " Not available: " + "; ".join(f"{m} ({r})" for m, r in missing.items()) + "." if missing else ""


def seed_budget_curves(task: str, t: dict) -> list:
    title = "How many seeds"
    have, missing, instead = _per_model(t, "seed_budget", title)
    if instead:
        return instead
    b = t["seed_budget"]
    pairs = b["pairs"]

    def draw():
        cols = 2 if pairs else 1
        fig = _figure(4.6 * cols + 0.6, 3.5)
        axes = np.atleast_1d(fig.subplots(1, cols, squeeze=False)).ravel()
        ax = axes[0]
        from matplotlib.lines import Line2D

        styles = ("-", "--", ":", "-.")
        finetunes = []
        for i, (model, e) in enumerate(have.items()):
            cv = e["curves"]
            for j, (f, hw) in enumerate(zip(cv["F"], cv["half_width"])):
                ax.plot(cv["P"], hw, styles[j % 4], color=colour(i), lw=1.4)
                finetunes = finetunes if f in finetunes else [*finetunes, f]
            ax.plot([e["P"]], [e["pilot_half_width"]], "o", color=colour(i), ms=6, mfc="white")
            if e["multibootstrap_half_width"] is not None:
                ax.plot([e["P"]], [e["multibootstrap_half_width"]], "x", color=colour(i), ms=7)
        _log2_axis(ax, e["curves"]["P"][::2])
        ax.set_xlabel("P pretraining seeds (log scale)")
        ax.set_ylabel("95% half-width of accuracy")
        ax.set_title("Predicted Multi-Bootstrap half-width")
        handles = [Line2D([], [], color=colour(i), lw=2, label=short(m)) for i, m in enumerate(have)]
        handles += [Line2D([], [], color=GREY, ls=styles[j % 4], label=f"F = {f}") for j, f in enumerate(finetunes)]
        handles += [Line2D([], [], color=GREY, marker="o", mfc="white", ls="", label="predicted, pilot design"),
                    Line2D([], [], color=GREY, marker="x", ls="", label="Multi-Bootstrap, pilot")]
        ax.legend(handles=handles, fontsize=7, ncols=2)
        if pairs:
            ax2 = axes[1]
            for i, p in enumerate(pairs):
                y = [np.nan if v is None else v for v in p["detectable_difference"]]
                ax2.plot(p["P"], y, "-o", ms=3, color=colour(i), label=f"{short(p['b'], 12)} vs {short(p['a'], 12)}, F={p['F']}")
            _log2_axis(ax2, pairs[0]["P"][::2])
            ax2.set_xlabel("P pretraining seeds per model (log scale)")
            ax2.set_ylabel(f"accuracy difference detected, power {b['power']:g}")
            ax2.set_title("Smallest detectable difference")
            ax2.legend(fontsize=7)
        return fig

    comp = tuple((m, f"{e['P']}\u00d7{e['F']}", *(e["components_raw"][k] for k in ("pretrain", "pretrain_x_example",
                                                                                   "finetune", "finetune_x_example",
                                                                                   "example_spread")),
                  e["pilot_half_width"], e["multibootstrap_half_width"],
                  None if e["seconds_per_run"] is None else e["seconds_per_run"] / 3600, e["unit"])
                 for m, e in have.items())
    tables = [Table(("model", "P\u00d7F", "pretrain", "pretrain \u00d7 example", "finetune", "finetune \u00d7 example",
                     "example spread", "half-width (predicted)", "half-width (Multi-Bootstrap)", "hours per run",
                     "unit"), comp,
                    "Variance components of per-example correctness (raw ANOVA estimates; the predictions truncate "
                    "negatives at 0) and, at the pilot's own design, the predicted and the observed half-width.")]
    for model, e in have.items():
        cv = e["curves"]
        tables.append(Table(("F \\ P", *map(str, cv["P"])), tuple((f"F={f}", *hw) for f, hw in zip(cv["F"], cv["half_width"])),
                            f"{model}: predicted half-width.", collapsed=True, label=f"{model}, half-width by P and F"))
    if pairs:
        tables.append(Table(("pair", "F", *map(str, pairs[0]["P"])),
                            tuple((f"{p['b']} vs {p['a']}", p["F"], *p["detectable_difference"]) for p in pairs),
                            f"Smallest accuracy difference the unpaired Multi-Bootstrap comparison detects with power "
                            f"{b['power']:g} (same P \u00d7 F in both arms).", collapsed=True, label="detectable differences"))
    caption = ("From this experiment as a pilot: the 95% half-width of the Multi-Bootstrap interval of accuracy "
               "predicted for P pretraining seeds \u00d7 F fine-tuning seeds (lines), at the pilot's own design "
               "(circle) beside the interval the analysis found (cross); right, the smallest difference a "
               "comparison detects. `seedlab plan` turns a target into designs with their cost.")
    caption += _not_available(missing)
    return [_plot(f"{slug(task)}-seed-budget", title, caption, f"{task}: predicted half-width by number of seeds",
                  draw, tables)]


def multiplicity_figure(task: str, t: dict) -> list:
    title = "Predictive multiplicity and flip rates"
    have, missing, instead = _per_model(t, "multiplicity", title)
    if instead:
        return instead
    mu = t["multiplicity"]

    def draw():
        fig = _figure(9.0, 3.4)
        ax1, ax2 = fig.subplots(1, 2)
        width = 0.8 / len(have)
        for i, (model, e) in enumerate(have.items()):
            h = e["flip"]["histogram"]
            x = np.asarray(h["deviating"], dtype=float)
            ax1.bar(x + (i - (len(have) - 1) / 2) * width, np.maximum(h["instances"], 0.5), width=width,
                    color=colour(i), label=f"{short(model)} ({e['n_runs']} runs)")
            c = e["curve"]
            ax2.step(c["gap"], c["ambiguity"], where="post", color=colour(i), lw=1.6, label=f"{short(model)} ambiguity")
            ax2.step(c["gap"], c["discrepancy"], where="post", color=colour(i), lw=1.2, ls="--",
                     label=f"{short(model)} discrepancy")
        ax1.set_yscale("log")
        ax1.yaxis.set_major_formatter(lambda v, _: f"{v:g}")
        ax1.yaxis.set_minor_formatter(lambda v, _: "")
        ax1.set_xlabel("runs that leave the instance's modal label")
        ax1.set_ylabel("instances (log scale)")
        ax1.set_title("Flip-rate distribution")
        ax1.legend(fontsize=7)
        ax2.axvline(mu["epsilon"], color=GREY, lw=0.8, ls=":")
        ax2.set_xlabel(f"epsilon: gap to the best run's {mu['metric']}")
        ax2.set_ylabel("share of instances")
        ax2.set_title("Seed Rashomon set")
        ax2.legend(fontsize=7)
        return fig

    rows = tuple((m, e["n_runs"], e["reference_run"], e["at_epsilon"]["n_runs"], e["at_epsilon"]["ambiguity"],
                  e["at_epsilon"]["discrepancy"], e["curve"]["ambiguity"][-1], e["flip"]["n_unstable"],
                  e["flip"]["share_unstable"], e["flip"]["mean_flip_rate"]) for m, e in have.items())
    tables = [Table(("model", "runs", "reference (best) run", f"runs within {mu['epsilon']:g}", "ambiguity",
                     "discrepancy", "ambiguity, all runs", "unstable instances", "share", "mean flip rate"), rows,
                    "Ambiguity: share of instances on which some run of the set disagrees with the best run; "
                    "discrepancy: the largest share one run of the set changes.")]
    depth = max(len(e["flip"]["histogram"]["instances"]) for e in have.values())
    tables.append(Table(("runs off the modal label", *have), tuple(
        (j, *(e["flip"]["histogram"]["instances"][j] if j < len(e["flip"]["histogram"]["instances"]) else 0
              for e in have.values())) for j in range(depth)), "Instances by number of runs that leave their "
        "modal label (the histogram as plotted).", collapsed=depth > 6, label="flip-rate histogram"))
    for model, e in have.items():
        c = e["curve"]
        tables.append(Table(("run", "gap", "disagrees with best", "ambiguity", "discrepancy"),
                            tuple(zip(c["runs"], c["gap"], c["disagreement"], c["ambiguity"], c["discrepancy"])),
                            f"{model}: runs by their gap to the best run; ambiguity and discrepancy of the set up to "
                            "each (the curves as plotted).", collapsed=True, label=f"{model}, Rashomon curve"))
    churn = mu["churn"]
    if churn:
        tables.append(Table(("churn", *churn["names"]), tuple((a, *row) for a, row in zip(churn["names"], churn["matrix"])),
                            "Churn (Milani Fard et al. 2016): mean share of instances on which a run of the row model "
                            "and a run of the column model differ; diagonal: two runs of the same model (PD)."))
    caption = ("Left: how many instances change label across seeds, and how often (count of runs that leave the "
               "instance's most common label; 0 = stable). Right: ambiguity and discrepancy (Marx et al. 2020) of "
               "the runs within epsilon of the best run, at every epsilon where a run joins; the dotted line is the "
               "epsilon of the table.")
    caption += _not_available(missing)
    return [_plot(f"{slug(task)}-multiplicity", title, caption, f"{task}: flip-rate histogram and Rashomon curves",
                  draw, tables), *seed_sensitive_instances(task, t)]


def seed_sensitive_instances(task: str, t: dict) -> list:
    """The most seed-sensitive instances of each model with their text (a table)."""
    mu = t["multiplicity"]
    classes = mu["classes"]
    out = []
    for model, e in mu["models"].items():
        if "unavailable" in e or not e["instances"]:
            continue
        name = (lambda c: classes[c] if classes and c < len(classes) else str(c))  # noqa: E731
        rows = tuple((i["instance_id"], name(i["label"]),
                      ", ".join(f"{name(c)} {n}" for c, n in enumerate(i["counts"]) if n),
                      i["flip_rate"], i["disagreement"],
                      i["text_a"] if i["text_a"] is not None else "(no text: see the note)",
                      i["text_b"] or "") for i in e["instances"])
        note = f" {mu['texts_note']}." if mu["texts_note"] else ""
        out.append(Table(("instance", "gold", "predicted by the runs", "flip rate", "pairwise disagreement", "text",
                          "second text"), rows,
                         f"{model}: the {len(rows)} most seed-sensitive instances (highest flip rate).{note}"))
    return out


def ensemble_curves(task: str, t: dict) -> list:
    title = "Seed ensembles"
    have, missing, instead = _per_model(t, "ensembles", title)
    if instead:
        return instead
    en = t["ensembles"]
    panels = [("score", METRIC_LABELS.get(en["metric"], en["metric"])), ("pd", "PD between ensembles"),
              ("sd", f"SD of {en['metric']} over ensembles"), ("jsd", "JSD between ensembles (nats)")]
    panels = [(k, lab) for k, lab in panels if any(s[k] is not None for e in have.values() for s in e["sizes"])]

    def draw():
        rows, cols = _grid(len(panels), max_cols=4)
        fig = _figure(min(10.0, 2.6 * cols + 0.6), 2.9 * rows + 0.4)
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, (key, label) in zip(axes, panels):
            for i, (model, e) in enumerate(have.items()):
                pts = [(s["k"], s[key]) for s in e["sizes"] if s[key] is not None]
                if not pts:
                    continue
                k = np.array([p[0] for p in pts], dtype=float)
                y = np.array([p[1]["point"] for p in pts])
                lo = np.array([p[1]["ci_low"] for p in pts])
                hi = np.array([p[1]["ci_high"] for p in pts])
                ax.fill_between(k, lo, hi, color=colour(i), alpha=0.15, lw=0)
                ax.plot(k, y, "-o", ms=3, color=colour(i), label=short(model))
            _log2_axis(ax, sorted({s["k"] for e in have.values() for s in e["sizes"]}))
            ax.set_xlabel("k runs per ensemble")
            ax.set_ylabel(label)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(6, len(labels)), frameon=False)
        return fig

    cell = lambda v: None if v is None else f"{v['point']:.4f} [{v['ci_low']:.4f}, {v['ci_high']:.4f}]"  # noqa: E731
    tables = []
    for model, e in have.items():
        rows = tuple((s["k"], s["n_ensembles"], cell(s["score"]), cell(s["sd"]), cell(s["pd"]), cell(s["jsd"]),
                      s["removed"], s["hours"]) for s in e["sizes"])
        tables.append(Table(("k", "ensembles", en["metric"], "SD", "PD", "JSD", "PD removed", e["unit"]), rows,
                            f"{model} ({e['n_runs']} runs, {e['combine']}): mean over {e['n_partitions']} random "
                            f"partitions into disjoint ensembles [2.5%, 97.5%]; cost = k runs per ensemble."))
    caption = ("Ensembles of k runs (class probabilities averaged): their score and how much they still disagree "
               "with each other (disjoint ensembles, as if trained with fresh seeds); bands span the 2.5\u201397.5% of "
               "random choices of the runs. PD removed = 1 \u2212 PD(k) / PD(1).")
    if en["combine_note"]:
        caption += f" Note: {en['combine_note']}."
    caption += _not_available(missing)
    return [_plot(f"{slug(task)}-ensembles", title, caption, f"{task}: ensemble score and instability by size",
                  draw, tables)]


# --------------------------------------------------------------------------------------------------
# all sections of a task
# --------------------------------------------------------------------------------------------------

SECTIONS = (
    ("distributions", "Metric distributions across seeds",
     "How much the task metric moves when only the seed changes.", metric_distributions),
    ("instability", "Prediction-level instability",
     "Do runs with similar scores make the same predictions?", instability_table),
    ("paper-consistency", "Consistency between pairs of runs",
     "How alike are two runs of different seeds, and how often are both right? (Bui/Zhou, Savova & Wang 2025)",
     paper_consistency_table),
    ("agreement", "Run \u00d7 run agreement",
     "The share of instances on which each pair of runs predicts the same label.", agreement_heatmaps),
    ("instance-accuracy", "Instance accuracy between models",
     "Per instance, the share of each model's runs that get it right (Zhong et al. 2021).",
     instance_accuracy_scatter),
    ("decay", "Decaying instances: Decayhat(t) vs Decay\u2032(t)",
     "Is a larger model truly worse on some instances, beyond seed noise? (Zhong et al. 2021)", decay_curves),
    ("noise", "Variance decomposition by model size",
     "Bias\u00b2, pretraining-seed and fine-tuning-seed variance (Zhong et al. 2021).", noise_bars),
    ("representations", "Representation distance by layer",
     "How far apart the hidden states of runs are, layer by layer (Du & Nguyen 2023).", representation_curves),
    ("multibootstrap", "Multi-Bootstrap comparisons",
     "Intervals that account for both seed and example variation (Sellam et al. 2022).", multibootstrap_intervals),
    ("methods", "Mitigation methods compared",
     "Which method is most stable, under each instability measure, on equal seed counts (Du & Nguyen 2023)?",
     method_instability),
    ("expected-max", "Expected best score of n runs",
     "How much trying more seeds or configurations buys (Dodge et al. 2019).", expected_max_curves),
    ("aso", "Almost Stochastic Order",
     "Is model A better than model B over seeds, not just on average? (del Barrio et al. 2018; Dror et al. 2019)",
     aso_matrix),
    ("seed-budget", "How many seeds",
     "How many pretraining and fine-tuning seeds a claim of this precision needs, from this experiment as a pilot.",
     seed_budget_curves),
    ("multiplicity", "Predictive multiplicity and flip rates",
     "How many individual predictions are an accident of the seed? (Marx et al. 2020; Milani Fard et al. 2016)",
     multiplicity_figure),
    ("ensembles", "Seed ensembles",
     "Does averaging the predictions of k seeds remove the instability, and at what cost?", ensemble_curves),
)


def task_sections(task: str, t: dict) -> list[Section]:
    """Every section of one task, in report order. A figure that cannot exist says why (`Unavailable`); a
    malformed result raises (KeyError, TypeError, ...): it is a bug of the producer or the consumer."""
    out = []
    for name, title, intro, build in SECTIONS:
        items = build(task, t)
        if not items:  # the section does not apply to this experiment (e.g. methods with one method)
            continue
        out.append(Section(f"{slug(task)}-{name}", title, intro, items))
    return out


def all_plots(sections_by_task: dict[str, list[Section]]) -> list[Plot]:
    return [item for sections in sections_by_task.values() for s in sections for item in s.items
            if isinstance(item, Plot)]
