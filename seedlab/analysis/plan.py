"""`seedlab plan`: how many seeds a claim needs, from a finished experiment as the pilot.

`plan_experiment` turns a loaded experiment and a target (a Multi-Bootstrap half-width for each model, or a
difference between two models to detect with some power) into the designs (P pretraining seeds x F fine-tuning
seeds) that reach it, with their cost from the pilot runs' own timings; `render_plan` prints them as a table.
The statistics are `seedlab.stats.seed_budget`; docs/statistics.md ("How many seeds") has the formulas.
"""

from __future__ import annotations

import numpy as np

from seedlab.analysis.analyze import condition_table, jsonable, mean_run_cost
from seedlab.analysis.render import fmt, text_table
from seedlab.data.catalog import model_order
from seedlab.errors import SeedlabError


def plan_experiment(loaded, *, half_width: float | None = None, delta: float | None = None, power: float = 0.8,
                    task: str | None = None, models: list[str] | None = None, max_finetune: int = 4,
                    max_pretrain: int | None = None, pretrain_hours: float = 0.0) -> dict:
    """`seedlab plan`: from a finished pilot experiment, the designs (P pretraining seeds x F fine-tuning seeds)
    that reach a Multi-Bootstrap half-width (`half_width`, per model) or detect an accuracy difference `delta`
    between two models with `power`, with their cost from the pilot runs' own timings
    (seedlab.stats.seed_budget). Bad input raises SeedlabError naming what is valid."""
    from seedlab.stats.seed_budget import plan_half_width, plan_power, seed_variance

    if (half_width is None) == (delta is None):
        raise SeedlabError("give one target: --half-width H (interval of one model) or --delta D (difference "
                           "between two models, with --power)")
    for flag, value, ok in (("--half-width", half_width, half_width is None or 0 < half_width < 1),
                            ("--delta", delta, delta is None or 0 < delta < 1), ("--power", power, 0 < power < 1),
                            ("--max-finetune", max_finetune, max_finetune >= 1),
                            ("--max-pretrain", max_pretrain, max_pretrain is None or max_pretrain >= 2),
                            ("--pretrain-hours", pretrain_hours, pretrain_hours >= 0)):
        if not ok:
            raise SeedlabError(f"invalid {flag} {value} (valid: {PLAN_VALID[flag]})")
    tasks = [t for t, tab in loaded.tables.items() if not tab.is_regression]
    if task is not None:
        if task not in loaded.tables:
            raise SeedlabError(f"--task: unknown task {task!r} (valid: {', '.join(loaded.tables)})")
        if task not in tasks:
            raise SeedlabError(f"--task {task}: a regression task; the plan is for accuracy (classification tasks: "
                               f"{', '.join(tasks) or 'none'})")
        tasks = [task]
    if not tasks:
        raise SeedlabError(f"experiment {loaded.experiment!r} has no classification task to plan for")
    resources = getattr(loaded, "run_resources", {}) or {}
    out = {"experiment": loaded.experiment, "target": "half_width" if delta is None else "power",
           "pretrain_hours": float(pretrain_hours), "tasks": {}}
    for name in tasks:
        table = condition_table(loaded.tables[name])
        known = model_order(table.models())
        chosen = list(models) if models else None
        for model in chosen or []:
            if model not in known:
                raise SeedlabError(f"unknown model {model!r} for task {name!r} (valid: {', '.join(known)})")
        if delta is not None:
            chosen = chosen or (known if len(known) == 2 else None)
            if chosen is None or len(chosen) != 2:
                raise SeedlabError(f"--delta compares two models: give --models BASELINE INTERVENTION (task {name!r} "
                                   f"has {', '.join(known)})")
        entries = {}
        pilots, seconds, units = {}, [], set()
        for model in chosen or known:
            grid = table.grid(model).complete()
            try:
                pilots[model] = seed_variance(grid.correct)
            except ValueError as exc:
                entries[model] = {"unavailable": str(exc)}
                continue
            sec, unit = mean_run_cost(table.run_ids[table.model == model], resources)
            seconds.append(sec)
            units.add(unit)
            if delta is None:
                entries[model] = {"pilot": pilots[model].as_dict(), "unit": unit, "seconds_per_run": sec,
                                  **plan_half_width(pilots[model], half_width=half_width, max_finetune=max_finetune,
                                                    max_pretrain=max_pretrain, seconds_per_run=sec,
                                                    pretrain_seconds=pretrain_hours * 3600)}
        if delta is not None and len(pilots) == 2:
            a, b = chosen
            sec = None if None in seconds else float(np.mean(seconds))
            unit = units.pop() if len(units) == 1 else "device-hours"
            entries[f"{b} - {a}"] = {"baseline": a, "intervention": b, "unit": unit, "seconds_per_run": sec,
                                     "pilots": {a: pilots[a].as_dict(), b: pilots[b].as_dict()},
                                     **plan_power(pilots[a], pilots[b], delta=delta, power=power,
                                                  max_finetune=max_finetune, max_pretrain=max_pretrain,
                                                  seconds_per_run=sec, pretrain_seconds=pretrain_hours * 3600)}
        for e in entries.values():
            shown = e.get("pilots") or ({"": e["pilot"]} if "pilot" in e else {})
            if shown and all(not any(p["components"][k] for k in ("pretrain", "pretrain_x_example", "finetune",
                                                                    "finetune_x_example") if p["components"][k] is not None)
                             for p in shown.values()):
                e["note"] = ("the pilot shows no seed variance at all (its runs predict alike on every example): "
                             "the prediction is degenerate")
        out["tasks"][name] = entries
    return jsonable(out)


PLAN_VALID = {"--half-width": "a number in (0, 1), e.g. 0.005", "--delta": "a number in (0, 1), e.g. 0.01",
              "--power": "a number in (0, 1), e.g. 0.8", "--max-finetune": "an integer >= 1",
              "--max-pretrain": "an integer >= 2", "--pretrain-hours": "a number >= 0"}


def render_plan(plan: dict) -> str:
    """`seedlab plan`'s table: per task and model (or model pair), the smallest P per F that reaches the target."""
    power = plan["target"] == "power"
    out = [f"Seed budget for experiment {plan['experiment']!r} (from its runs as a pilot; accuracy, 95% "
           f"Multi-Bootstrap intervals)"]
    for task, entries in plan["tasks"].items():
        for name, e in entries.items():
            out.append("")
            if "unavailable" in e:
                out.append(f"{task} / {name}: not available: {e['unavailable']}")
                continue
            if power:
                out.append(f"{task}: detect {e['intervention']} - {e['baseline']} = {e['delta']:g} with power "
                           f"{e['target']:g} (the 95% interval of the difference excludes 0; same design in both arms)")
            else:
                out.append(f"{task} / {name}: 95% interval half-width <= {e['target']:g} (accuracy); floor with "
                           f"this eval set: {fmt(e['floor'])} (examples alone)")
            if e["unreachable"]:
                out.append(f"  not reachable: {e['unreachable']}")
                continue
            rows = [[str(r["P"]), str(r["F"]), str(r["runs"]), fmt(r["value"]),
                     "-" if r["hours"] is None else f"{r['hours']:.2f}",
                     "recommended" if r["recommended"] else ("" if r["reached"] else "not reached within the P cap")]
                    for r in e["rows"]]
            out += text_table(["P", "F", "runs", "power" if power else "half-width", e["unit"], ""], rows)
            pilots = e["pilots"] if power else {name: e["pilot"]}
            shapes = ", ".join(f"{m} {p['P']}x{p['F']}" for m, p in pilots.items())
            cost = ("cost unknown: the runs logged no timings" if e["seconds_per_run"] is None else
                    f"{e['unit']}: runs x {e['seconds_per_run'] / 3600:.3f} h per run (the pilot runs' mean)"
                    + (f" + P x {plan['pretrain_hours']:g} h per new pretraining seed" if plan["pretrain_hours"] else
                       "; pretraining seeds assumed to exist (--pretrain-hours adds their cost)"))
            out += [f"  pilot {shapes} (P x F): the pretraining-seed variance rests on P - 1 degrees of freedom",
                    f"  {cost}"]
            if e.get("note"):
                out.append(f"  note: {e['note']}")
    return "\n".join(out)
