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
    options = AnalysisOptions(compare=tuple(args.compare) if args.compare else None, n_bootstrap=args.bootstrap,
                              seed=args.seed, paired=args.paired)
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
    p.set_defaults(func=_analyze)
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
