"""Rendering: the analysis result as terminal tables. Computes nothing new.

Reads the result as `seedlab/analysis/schema.json` shapes it: keys the schema requires are indexed (a malformed
result raises), optional sections (zhong, representations, methods, variance_attribution, comparison, aso, seed_budget,
multiplicity, ensembles) are looked up."""

from __future__ import annotations

from seedlab.data.catalog import short_name


def fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def render_summary(result: dict) -> str:
    out = [f"Experiment {result['experiment']!r}  ({result['tracking_uri']})"]
    runs = result["runs"]
    out.append("trial runs by status: " + ", ".join(f"{k} {v}" for k, v in sorted(runs["by_status"].items())))
    if runs["unfinished"]:
        out.append(f"not analysed (not FINISHED): {', '.join(runs['unfinished'])}")
    if runs["missing_cells"]:
        out.append(f"! incomplete design: {len(runs['missing_cells'])} declared grid cell(s) have no FINISHED run: "
                   f"{', '.join(runs['missing_cells'][:20])}{' ...' if len(runs['missing_cells']) > 20 else ''}")
    if runs["duplicates"]:
        out.append(f"ignored duplicate FINISHED runs of an already-finished cell: {', '.join(runs['duplicates'])}")
    for task, t in result["tasks"].items():
        out += ["", f"== {task}: {t['n_instances']} eval instances; SD is the population SD over runs (ddof=0) =="]
        for model, design in t["design"].items():
            if not design["complete"]:
                out.append(f"  ! {model}: ragged design, missing (pretrain, finetune) cells {design['missing_cells']}")
        header = ["model", "runs"]
        for metric in t["metrics"]:
            header += [f"{metric} mean", "sd", "min", "max"]
        header += ["consistency_all", "agreement_pairwise", "fleiss_kappa"]
        rows = []
        for model, m in t["models"].items():
            row = [short_name(model), str(m["n_runs"])]
            for metric in t["metrics"]:
                s = m["metrics"][metric]
                row += [fmt(s["mean"]), fmt(s["sd"]), fmt(s["min"]), fmt(s["max"])]
            row += [fmt(m["consistency_all"]), fmt(m["agreement_pairwise"]), fmt(m["fleiss_kappa"])]
            rows.append(row)
        out += text_table(header, rows)
        out.append("consistency_all: share of instances on which all N runs agree (falls as N grows); "
                   "agreement_pairwise: mean share over run pairs (= 1 - PD); N = runs.")
        out += _instability(t) + _paper_consistency(t) + _representations(t) + _zhong(t) + _bootstrap(t) + _design(t)
        out += _aso(t) + _seed_budget(t) + _multiplicity(t) + _ensembles(t)
    return "\n".join(out)


def _pair_cell(summary) -> str:
    """A pairwise reading as 'mean +- SD [min, max]' over run pairs."""
    if summary is None:
        return "-"
    return f"{fmt(summary['mean'])} \u00b1 {fmt(summary['sd'])} [{fmt(summary['min'])}, {fmt(summary['max'])}]"


def _paper_consistency(t: dict) -> list[str]:
    have = {model: m["pairwise_consistency"] for model, m in t["models"].items() if m.get("pairwise_consistency")}
    if not have:
        return []
    title = ("-- Bui/Zhou et al.'s consistency per pair of runs of different seeds (mean \u00b1 SD over pairs "
             "[min, max], ddof=0) --")
    if t["is_regression"]:
        rows = [[short_name(model), str(p["n_pairs"]), _pair_cell(p["pearson"]), str(p["n_undefined"])]
                for model, p in have.items()]
        return ["", title, *text_table(["model", "pairs", "Pearson between runs", "undefined pairs"], rows),
                "Pearson between runs: r of two runs' predicted values; a pair with a constant run is left out."]
    rows = [[short_name(model), str(p["n_pairs"]), _pair_cell(p["consistency"]), _pair_cell(p["correct_consistency"])]
            for model, p in have.items()]
    return ["", title, *text_table(["model", "pairs", "consistency", "correct consistency"], rows),
            "consistency: share of instances two runs label alike (its mean is agreement_pairwise); "
            "correct consistency: share both runs get right."]


def _instability(t: dict) -> list[str]:
    rows = [[short_name(model), fmt(i["sd"]), fmt(i["pd"]), fmt(i["jsd"]), fmt(i["one_minus_fleiss_kappa"])]
            for model, m in t["models"].items() if (i := m["instability"]) is not None]
    if not rows:
        return []
    return ["", f"-- Du & Nguyen instability (prediction level; SD of {t['metrics'][0]}, ddof=0) --",
            *text_table(["model", "SD", "PD", "JSD", "1-kappa"], rows)]


def _representations(t: dict) -> list[str]:
    reps = t.get("representations")
    if not reps:
        return []
    out = ["", "-- representation instability by layer (mean distance over run pairs; first-token states) --"]
    for model, r in reps.items():
        if "unavailable" in r:
            out.append(f"  {model}: {r['unavailable']}")
            continue
        header = ["layer", *r["measures"]]
        rows = [[str(layer + 1), *(fmt(r["by_layer"][mname][layer]) for mname in r["measures"])]
                for layer in range(r["n_layers"])]
        out += [f"{model} ({r['n_runs']} runs)", *text_table(header, rows)]
    return out


def _zhong(t: dict) -> list[str]:
    z = t.get("zhong")
    if not z:
        return []
    out = ["", "-- Zhong et al.: noise decomposition (means over instances; unbiased estimator) --"]
    rows = []
    for model, n in z["noise"].items():
        if "means" in n:
            mm = n["means"]
            rows.append([short_name(model), f"{n['P']}x{n['F']}", fmt(mm["loss"]), fmt(mm["bias2"]), fmt(mm["pretrain_var"]),
                         fmt(mm["finetune_var"])])
        else:
            rows.append([short_name(model), "-", n["unavailable"], "", "", ""])
    out += text_table(["model", "PxF", "loss", "bias^2", "PretVar", "FineVar"], rows)
    for note in z["design_notes"].values():
        out.append(f"  ! {note}")
    if z["decay"]:
        out += ["", "-- decaying instances: share where the second model is truly worse (lower bound) --"]
        rows = [[d["from"], d["to"], fmt(d["max_difference"]), fmt(d["lower_bound"]), fmt(d["argmax_t"], 2),
                 fmt(d["fisher_bh"]["fraction"])] for d in z["decay"]]
        out += text_table(["from", "to", "raw max", "bias-corrected", "at t", "Fisher+BH"], rows)
        # each pair's caveat joins one note per model with "; ": print each note once, not once per pair
        caveats = dict.fromkeys(part for d in z["decay"] if d["caveat"] for part in d["caveat"].split("; "))
        out += [f"  note: {c}" for c in caveats]
    for d in z.get("decay_unavailable", []):
        out.append(f"decaying instances {d['from']} -> {d['to']}: not available: {d['unavailable']}")
    unavailable: dict[str, list[str]] = {}  # one line per reason, not one per model triple
    for mo in z["momentum"]:
        sizes = " -> ".join(mo["sizes"])
        if "unavailable" in mo:
            unavailable.setdefault(mo["unavailable"], []).append(sizes)
        else:
            out.append(f"momentum {sizes}: bucket-weighted Pearson {fmt(mo['weighted_pearson'])}, "
                       f"Spearman {fmt(mo['weighted_spearman'])} (independent seed halves of the middle model)")
    for reason, triples in unavailable.items():
        which = triples[0] if len(triples) == 1 else f"{len(triples)} model triples"
        out.append(f"momentum ({which}): {reason}")
    return out


def _bootstrap(t: dict) -> list[str]:
    b = t["multibootstrap"]
    out = ["", f"-- Multi-Bootstrap ({b['metric']}, B={b['n_boot']}, seed={b['seed']}; 95% percentile CIs) --"]
    rows = [[short_name(model), fmt(e["point"]), f"[{fmt(e['ci_low'])}, {fmt(e['ci_high'])}]"] for model, e in b["models"].items()]
    out += text_table(["model", b["metric"], "95% CI"], rows)
    c = b.get("comparison")
    if c:
        out.append(f"{c['intervention']} - {c['baseline']} ({'paired' if c['paired'] else 'unpaired'} by pretraining seed):")
        rows = []
        for scheme in ("seeds_and_examples", "seeds_only", "examples_only"):
            r = c[scheme]
            d = r["delta"]
            rows.append([scheme, fmt(d["point"]), f"[{fmt(d['ci_low'])}, {fmt(d['ci_high'])}]", fmt(r["p_value"])])
        out += text_table(["resampling", "delta", "95% CI", "p (delta<=0)"], rows)
    return out


def _design(t: dict) -> list[str]:
    out = []
    for model, c in (t.get("methods") or {}).items():
        if "unavailable" in c:
            out.append(f"methods ({model}): {c['unavailable']}")
            continue
        out += ["", f"-- mitigation methods, {model}: instability on {c['k']} runs each (rank 1 = most stable) --"]
        intervals = c["bootstrap"]["intervals"]
        rows = [[method, *(f"{fmt(c['values'][method][m])} [{fmt(intervals[method][m]['ci_low'])}, "
                           f"{fmt(intervals[method][m]['ci_high'])}] #{int(c['ranks'][m][method])}"
                           for m in c["measures"])] for method in c["methods"]]
        out += text_table(["method", *c["measures"]], rows)
        pairs = c["ranking_agreement"]["pairs"]
        if pairs:
            out.append("ranking agreement (Kendall tau): " + ", ".join(f"{p['a']}~{p['b']} {fmt(p['tau'], 2)}"
                                                                       for p in pairs))
    for model, v in (t.get("variance_attribution") or {}).items():
        if "unavailable" in v:
            out.append(f"variance attribution ({model}): {v['unavailable']}")
            continue
        shares = v["shares_raw"]
        out += ["", f"-- variance of {t['metrics'][0]} attributed ({model}, {v['design']} design, ANOVA) --",
                "  " + ", ".join(f"{k} {fmt(x, 3)}" for k, x in shares.items())]
    em = t["expected_max"]
    if em:
        out += ["", f"-- expected best {t['metrics'][0]} of n trials (Dodge et al.) --"]
        picks = [n for n in (1, 2, 5, 10) if any(n <= e["N"] for e in em.values())]
        rows = []
        for label, e in em.items():
            cells = [f"{fmt(e['expected_max'][n - 1])} [{fmt(e['ci_low'][n - 1])}, {fmt(e['ci_high'][n - 1])}]"
                     if n <= e["N"] else "" for n in picks]
            rows.append([label, str(e["N"]), *cells])
        out += text_table(["condition", "N runs", *(f"n={n} [95% CI]" for n in picks)], rows)
    return out


def _split(entries: dict) -> tuple[dict, list[str]]:
    """A per-model section's models that have it, and one 'not available' line for each that has not."""
    return ({m: e for m, e in entries.items() if "unavailable" not in e},
            [f"  {m}: not available: {e['unavailable']}" for m, e in entries.items() if "unavailable" in e])


def _aso_family(title: str, fam: dict) -> list[str]:
    if "unavailable" in fam:
        return [f"{title}: not available: {fam['unavailable']}"]
    rows = [[p["a"], p["b"], fmt(p["violation_ratio"]), fmt(p["eps_min"]), "yes" if p["dominates"] else "no"]
            for p in fam["pairs"]]
    return [title, *text_table(["A", "B", "eps_W2", "eps_min", "A dominates B"], rows), f"  {fam['decision_rule']}"]


def _aso(t: dict) -> list[str]:
    a = t.get("aso")
    if not a:
        return []
    out = ["", f"-- Almost Stochastic Order of {a['metric']} over runs (eps_min; B={a['n_bootstrap']}, "
               f"seed={a['seed']}) --", *_aso_family("models", a["models"])]
    for model, fam in (a.get("methods") or {}).items():
        out += _aso_family(f"methods of {model}", fam)
    return out


def _seed_budget(t: dict) -> list[str]:
    b = t.get("seed_budget")
    if not b:
        return []
    out = ["", "-- seed budget: variance of accuracy by source (ANOVA; truncated at 0) and the predicted "
               "Multi-Bootstrap 95% half-width --"]
    rows = []
    have, unavailable = _split(b["models"])
    for model, e in have.items():
        c = e["components"]
        rows.append([short_name(model), f"{e['P']}x{e['F']}", *(fmt(c[k], 5) for k in ("pretrain", "pretrain_x_example",
                                                                            "finetune", "finetune_x_example",
                                                                            "example_spread")),
                     fmt(e["pilot_half_width"]), fmt(e["multibootstrap_half_width"])])
    if rows:
        out += text_table(["model", "PxF", "pretrain", "pretrain x ex", "finetune", "finetune x ex", "examples",
                           "half-width (pred)", "(Multi-Bootstrap)"], rows)
        out.append("  `seedlab plan --experiment E --half-width H` (or --delta D --power P) lists the designs "
                   "that reach a target, with their cost.")
    return out + unavailable


def _multiplicity(t: dict) -> list[str]:
    mu = t.get("multiplicity")
    if not mu:
        return []
    out = ["", f"-- predictive multiplicity over seeds (Rashomon set: runs within {mu['epsilon']:g} {mu['metric']} "
               "of the best run) --"]
    rows = []
    have, unavailable = _split(mu["models"])
    for model, e in have.items():
        at, f = e["at_epsilon"], e["flip"]
        rows.append([short_name(model), str(e["n_runs"]), str(at["n_runs"]), fmt(at["ambiguity"]), fmt(at["discrepancy"]),
                     fmt(e["curve"]["ambiguity"][-1]), str(f["n_unstable"]), fmt(f["share_unstable"]),
                     fmt(f["mean_flip_rate"])])
    if rows:
        out += text_table(["model", "runs", "in set", "ambiguity", "discrepancy", "ambiguity (all runs)",
                           "unstable instances", "share", "mean flip rate"], rows)
    out += unavailable
    churn = mu.get("churn")
    if churn:
        names = churn["names"]
        out += ["churn between models' runs (share of instances two runs differ on; diagonal: within the model, PD)",
                *text_table(["", *names], [[a, *(fmt(x) for x in row)] for a, row in zip(names, churn["matrix"])])]
    return out


def _ensembles(t: dict) -> list[str]:
    en = t.get("ensembles")
    if not en:
        return []
    out = ["", f"-- seed ensembles: {en['metric']} and instability of ensembles of k runs (mean over random "
               "partitions [95% range]) --"]
    if en.get("combine_note"):
        out.append(f"  note: {en['combine_note']}")
    have, unavailable = _split(en["models"])
    for model, e in have.items():
        cell = lambda v: "-" if v is None else f"{fmt(v['point'])} [{fmt(v['ci_low'])}, {fmt(v['ci_high'])}]"  # noqa: E731
        rows = [[str(s["k"]), str(s["n_ensembles"]), cell(s["score"]), cell(s["pd"]), cell(s["jsd"]),
                 fmt(s["removed"], 3), fmt(s["hours"], 3)] for s in e["sizes"]]
        out += [f"{model} ({e['n_runs']} runs, {e['combine']})",
                *text_table(["k", "ensembles", en["metric"], "PD", "JSD", "PD removed", e["unit"]], rows)]
    return out + unavailable

