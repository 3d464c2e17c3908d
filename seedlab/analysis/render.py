"""Rendering: the analysis result as terminal tables. Computes nothing new.

Reads the result as `seedlab/analysis/schema.json` shapes it: keys the schema requires are indexed (a malformed
result raises), optional sections (zhong, representations, methods, variance_attribution, comparison) are
looked up."""

from __future__ import annotations

from seedlab.data.catalog import short_name


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
                row += [_fmt(s["mean"]), _fmt(s["sd"]), _fmt(s["min"]), _fmt(s["max"])]
            row += [_fmt(m["consistency_all"]), _fmt(m["agreement_pairwise"]), _fmt(m["fleiss_kappa"])]
            rows.append(row)
        out += _table(header, rows)
        out.append("consistency_all: share of instances on which all N runs agree (falls as N grows); "
                   "agreement_pairwise: mean share over run pairs (= 1 - PD); N = runs.")
        out += _instability(t) + _representations(t) + _zhong(t) + _bootstrap(t) + _design(t)
    return "\n".join(out)


def _instability(t: dict) -> list[str]:
    rows = [[short_name(model), _fmt(i["sd"]), _fmt(i["pd"]), _fmt(i["jsd"]), _fmt(i["one_minus_fleiss_kappa"])]
            for model, m in t["models"].items() if (i := m["instability"]) is not None]
    if not rows:
        return []
    return ["", f"-- Du & Nguyen instability (prediction level; SD of {t['metrics'][0]}, ddof=0) --",
            *_table(["model", "SD", "PD", "JSD", "1-kappa"], rows)]


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
        rows = [[str(layer + 1), *(_fmt(r["by_layer"][mname][layer]) for mname in r["measures"])]
                for layer in range(r["n_layers"])]
        out += [f"{model} ({r['n_runs']} runs)", *_table(header, rows)]
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
            rows.append([short_name(model), f"{n['P']}x{n['F']}", _fmt(mm["loss"]), _fmt(mm["bias2"]), _fmt(mm["pretrain_var"]),
                         _fmt(mm["finetune_var"])])
        else:
            rows.append([short_name(model), "-", n["unavailable"], "", "", ""])
    out += _table(["model", "PxF", "loss", "bias^2", "PretVar", "FineVar"], rows)
    for note in z["design_notes"].values():
        out.append(f"  ! {note}")
    if z["decay"]:
        out += ["", "-- decaying instances: share where the second model is truly worse (lower bound) --"]
        rows = [[d["from"], d["to"], _fmt(d["max_difference"]), _fmt(d["lower_bound"]), _fmt(d["argmax_t"], 2),
                 _fmt(d["fisher_bh"]["fraction"])] for d in z["decay"]]
        out += _table(["from", "to", "raw max", "bias-corrected", "at t", "Fisher+BH"], rows)
        caveats = {d["caveat"] for d in z["decay"] if d["caveat"]}
        out += [f"  note: {c}" for c in caveats]
    unavailable: dict[str, list[str]] = {}  # one line per reason, not one per model triple
    for mo in z["momentum"]:
        sizes = " -> ".join(mo["sizes"])
        if "unavailable" in mo:
            unavailable.setdefault(mo["unavailable"], []).append(sizes)
        else:
            out.append(f"momentum {sizes}: bucket-weighted Pearson {_fmt(mo['weighted_pearson'])}, "
                       f"Spearman {_fmt(mo['weighted_spearman'])} (independent seed halves of the middle model)")
    for reason, triples in unavailable.items():
        which = triples[0] if len(triples) == 1 else f"{len(triples)} model triples"
        out.append(f"momentum ({which}): {reason}")
    return out


def _bootstrap(t: dict) -> list[str]:
    b = t["multibootstrap"]
    out = ["", f"-- Multi-Bootstrap ({b['metric']}, B={b['n_boot']}, seed={b['seed']}; 95% percentile CIs) --"]
    rows = [[short_name(model), _fmt(e["point"]), f"[{_fmt(e['ci_low'])}, {_fmt(e['ci_high'])}]"] for model, e in b["models"].items()]
    out += _table(["model", b["metric"], "95% CI"], rows)
    c = b.get("comparison")
    if c:
        out.append(f"{c['intervention']} - {c['baseline']} ({'paired' if c['paired'] else 'unpaired'} by pretraining seed):")
        rows = []
        for scheme in ("seeds_and_examples", "seeds_only", "examples_only"):
            r = c[scheme]
            d = r["delta"]
            rows.append([scheme, _fmt(d["point"]), f"[{_fmt(d['ci_low'])}, {_fmt(d['ci_high'])}]", _fmt(r["p_value"])])
        out += _table(["resampling", "delta", "95% CI", "p (delta<=0)"], rows)
    return out


def _design(t: dict) -> list[str]:
    out = []
    for model, c in (t.get("methods") or {}).items():
        if "unavailable" in c:
            out.append(f"methods ({model}): {c['unavailable']}")
            continue
        out += ["", f"-- mitigation methods, {model}: instability on {c['k']} runs each (rank 1 = most stable) --"]
        intervals = c["bootstrap"]["intervals"]
        rows = [[method, *(f"{_fmt(c['values'][method][m])} [{_fmt(intervals[method][m]['ci_low'])}, "
                           f"{_fmt(intervals[method][m]['ci_high'])}] #{int(c['ranks'][m][method])}"
                           for m in c["measures"])] for method in c["methods"]]
        out += _table(["method", *c["measures"]], rows)
        pairs = c["ranking_agreement"]["pairs"]
        if pairs:
            out.append("ranking agreement (Kendall tau): " + ", ".join(f"{p['a']}~{p['b']} {_fmt(p['tau'], 2)}"
                                                                       for p in pairs))
    for model, v in (t.get("variance_attribution") or {}).items():
        if "unavailable" in v:
            out.append(f"variance attribution ({model}): {v['unavailable']}")
            continue
        shares = v["shares_raw"]
        out += ["", f"-- variance of {t['metrics'][0]} attributed ({model}, {v['design']} design, ANOVA) --",
                "  " + ", ".join(f"{k} {_fmt(x, 3)}" for k, x in shares.items())]
    em = t["expected_max"]
    if em:
        out += ["", f"-- expected best {t['metrics'][0]} of n trials (Dodge et al.) --"]
        picks = [n for n in (1, 2, 5, 10) if any(n <= e["N"] for e in em.values())]
        rows = []
        for label, e in em.items():
            cells = [f"{_fmt(e['expected_max'][n - 1])} [{_fmt(e['ci_low'][n - 1])}, {_fmt(e['ci_high'][n - 1])}]"
                     if n <= e["N"] else "" for n in picks]
            rows.append([label, str(e["N"]), *cells])
        out += _table(["condition", "N runs", *(f"n={n} [95% CI]" for n in picks)], rows)
    return out
