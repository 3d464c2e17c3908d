"""The `seedlab` command: thin argument handling over the library. Errors: one line, exit code 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from seedlab.errors import SeedlabError


def _analyze(args) -> int:
    from seedlab.analysis.analyze import AnalysisOptions, analyze
    from seedlab.analysis.loader import load_experiment
    from seedlab.analysis.render import render_summary

    from seedlab.report.figures import slug

    report = Path(args.report or f"seedlab-report-{slug(args.experiment)}.html")
    # fail before the (possibly long) loading, and never leave a half-written file
    for flag, target in (("--json", args.json), ("--report", report), ("--figures", args.figures)):
        if target:
            parent = Path(target).expanduser().resolve().parent
            if not parent.is_dir():
                raise SeedlabError(f"{flag} directory {parent} does not exist")
    if args.bootstrap < 1:
        raise SeedlabError(f"invalid --bootstrap {args.bootstrap} (valid: an integer >= 1, e.g. 1000)")
    if not 0 < args.aso_threshold <= 0.5:
        raise SeedlabError(f"invalid --aso-threshold {args.aso_threshold} (valid: a number in (0, 0.5], e.g. 0.2)")
    if not args.epsilon >= 0:
        raise SeedlabError(f"invalid --epsilon {args.epsilon} (valid: a number >= 0, e.g. 0.01)")
    options = AnalysisOptions(compare=tuple(args.compare) if args.compare else None, n_bootstrap=args.bootstrap,
                              seed=args.seed, paired=args.paired, aso_threshold=args.aso_threshold,
                              rashomon_epsilon=args.epsilon)
    loaded = load_experiment(args.experiment, args.tracking_uri)
    result = analyze(loaded, options)
    print(render_summary(result))
    if args.json:
        target = Path(args.json)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2, allow_nan=False))
        tmp.replace(target)
        print(f"\nJSON written to {target}")
    import tempfile

    from seedlab.report import write_report

    with tempfile.TemporaryDirectory(prefix="seedlab-figures-") as figures:
        write_report(result, report, figures_dir=figures)
        print(f"Report written to {report}")
        if args.figures:  # the report's figures as PNG files, e.g. for a results page in docs/
            import shutil

            target = Path(args.figures)
            target.mkdir(exist_ok=True)
            pngs = sorted(Path(figures).glob("*.png"))
            for png in pngs:
                shutil.copy2(png, target / png.name)
            print(f"{len(pngs)} figures written to {target}/")
        if not args.no_log:
            from seedlab.analysis.publish import publish_analysis

            run_id = publish_analysis(result, report, args.json, figures, args.tracking_uri, args.experiment)
            print(f"Analysis logged to MLflow: run 'analysis' ({run_id}) in experiment {args.experiment!r}")
    return 0


def _plan(args) -> int:
    from seedlab.analysis.loader import load_experiment
    from seedlab.analysis.plan import plan_experiment, render_plan

    if args.half_width is None and args.delta is None:
        raise SeedlabError("give one target: --half-width H (interval of one model) or --delta D (difference "
                           "between two models, with --power)")
    loaded = load_experiment(args.experiment, args.tracking_uri)
    plan = plan_experiment(loaded, half_width=args.half_width, delta=args.delta, power=args.power, task=args.task,
                           models=args.models, max_finetune=args.max_finetune, max_pretrain=args.max_pretrain,
                           pretrain_hours=args.pretrain_hours)
    print(render_plan(plan))
    if args.json:
        Path(args.json).write_text(json.dumps(plan, indent=2, allow_nan=False))
        print(f"\nJSON written to {args.json}")
    return 0


def _import(args) -> int:
    from seedlab.store.importer import format_result, import_predictions

    result = import_predictions(args.folder, experiment=args.experiment, tracking_uri=args.tracking_uri,
                                fmt=args.format, dry_run=args.dry_run)
    print(format_result(result))
    return 0


def _ui(args) -> int:
    from seedlab.store.contract import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    url = f"http://127.0.0.1:{args.port}"
    print(f"MLflow UI for {uri} at {url}  (Ctrl-C to stop)", flush=True)
    os.execvp(sys.executable, [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                               "--host", "127.0.0.1", "--port", str(args.port)])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seedlab", description="How much of a result is the random seed.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("analyze", help="instability statistics of an experiment's trial runs")
    p.add_argument("--experiment", required=True, help="MLflow experiment name (a sweep writes <sweep>-<profile>)")
    p.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else ./mlruns")
    p.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    p.add_argument("--report", metavar="PATH", help="HTML report (default: ./seedlab-report-<experiment>.html)")
    p.add_argument("--figures", metavar="DIR", help="also write the report's figures as PNG files into DIR")
    p.add_argument("--no-log", action="store_true", help="do not log the analysis to MLflow as a run named 'analysis'")
    p.add_argument("--compare", nargs=2, metavar=("BASELINE", "INTERVENTION"),
                   help="Multi-Bootstrap comparison of two models (difference = intervention - baseline)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed of every resampling procedure (default 0)")
    p.add_argument("--paired", action="store_true",
                   help="pair the comparison by pretraining seed (only when both arms share pretrained checkpoints)")
    p.add_argument("--aso-threshold", type=float, default=0.2, metavar="T",
                   help="A almost stochastically dominates B when eps_min < T (default 0.2, deepsig's advice)")
    p.add_argument("--epsilon", type=float, default=0.01, metavar="E",
                   help="seed Rashomon set: runs within E of the best run's score (default 0.01)")
    p.set_defaults(func=_analyze)
    p = sub.add_parser("plan", help="how many seeds a claim needs: P x F designs from a finished pilot experiment",
                       description="From a finished experiment as a pilot: the pretraining seeds P and fine-tuning "
                                   "seeds per pretraining seed F that bring a model's Multi-Bootstrap 95% interval "
                                   "to --half-width, or detect --delta between two models with --power; cost from "
                                   "the runs' own timings (docs/statistics.md, 'How many seeds').")
    p.add_argument("--experiment", required=True, help="the pilot: an MLflow experiment of finished trial runs")
    p.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else ./mlruns")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--half-width", type=float, metavar="H", help="target half-width of the 95%% interval")
    target.add_argument("--delta", type=float, metavar="D", help="accuracy difference to detect between two models")
    p.add_argument("--power", type=float, default=0.8, help="with --delta: 1 - beta (default 0.8)")
    p.add_argument("--task", help="only this task (default: every classification task)")
    p.add_argument("--models", nargs="+", metavar="MODEL",
                   help="with --half-width: these models (default all); with --delta: BASELINE INTERVENTION")
    p.add_argument("--max-finetune", type=int, default=4, metavar="F", help="designs with F = 1..F (default 4)")
    p.add_argument("--max-pretrain", type=int, metavar="P", help="at most P pretraining seeds (e.g. checkpoints "
                                                                  "that exist; default: no cap)")
    p.add_argument("--pretrain-hours", type=float, default=0.0, metavar="H",
                   help="device hours to pretrain one new seed (default 0: the checkpoints exist)")
    p.add_argument("--json", metavar="PATH", help="also write the plan as JSON")
    p.set_defaults(func=_plan)
    p = sub.add_parser("import", help="log prediction files from elsewhere as trial runs (docs/import.md)")
    p.add_argument("folder", help="a folder with runs.csv (generic) or seed_<k>/ folders (zhou2020)")
    p.add_argument("--experiment", help="MLflow experiment (default: import-<folder name>, or import-zhou2020)")
    p.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else ./mlruns")
    p.add_argument("--format", choices=["auto", "generic", "zhou2020"], default="auto", help="default: detect it")
    p.add_argument("--dry-run", action="store_true", help="validate and show what would be imported; write nothing")
    p.set_defaults(func=_import)
    sub.add_parser("pretrain", help="masked-LM pretraining of BERT seed families (docs/pretraining.md)")
    p = sub.add_parser("ui", help="start the MLflow UI on the local store and print its URL")
    p.add_argument("--tracking-uri")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=_ui)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["pretrain"]:  # its own parser, with one flag per PretrainConfig field
        from seedlab.cli_pretrain import main as pretrain_main

        return pretrain_main(argv[1:], prog="seedlab pretrain")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SeedlabError as exc:
        print(f"seedlab: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
