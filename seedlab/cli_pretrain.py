"""`seedlab pretrain`: its own parser (one flag per `PretrainConfig` field) over the pretraining stage and the
evidence experiment. `seedlab.cli` hands it the arguments after `pretrain`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from seedlab.data.catalog import BERT_SIZES
from seedlab.errors import SeedlabError
import seedlab.train.pretrain as pretraining
from seedlab.train.pretrain import PretrainConfig

FAMILY_FIELDS = ("size", "pretrain_seed")  # given by --sizes and --seeds, not one flag each


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--sizes", default="tiny", help=f"comma-separated BERT sizes ({', '.join(BERT_SIZES)})")
    parser.add_argument("--seeds", default="0", help="pretraining seeds: '0,1,2' or a range '0-9'")
    for f in fields(PretrainConfig):
        if f.name not in FAMILY_FIELDS:
            kind = {"int": int, "float": float, "str": str}.get(str(f.type).split(" ")[0], int)
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None,
                                help=f"PretrainConfig.{f.name} (default {f.default})")
    parser.add_argument("--experiment", help="MLflow experiment (default: $SEEDLAB_PRETRAIN_EXPERIMENT or "
                                             "seedlab-pretrain)")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else ./mlruns")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--max-concurrent", type=int)
    parser.add_argument("--evidence", action="store_true", help="pretrain, then fine-tune SST-2 from the checkpoint "
                        "and from random init with the same budget; report both (no Ray, no MLflow)")
    parser.add_argument("--finetune-seeds", default="0,1,2", help="with --evidence")
    parser.add_argument("--finetune-lrs", default="3e-4,1e-3", help="with --evidence: fine-tuning learning rates")
    parser.add_argument("--json", metavar="PATH", help="with --evidence: also write the report as JSON")
    return parser


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or an inclusive range '0-9' -> the list of seeds."""
    try:
        if "-" in text:
            low, high = text.split("-")
            return list(range(int(low), int(high) + 1))
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SeedlabError(f"invalid seeds {text!r} (valid: '0,1,2' or '0-9')") from None


def parse_learning_rates(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SeedlabError(f"invalid --finetune-lrs {text!r} (valid: comma-separated numbers, e.g. '3e-4,1e-3')") from None


def command(args) -> int:
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    overrides = {f.name: getattr(args, f.name) for f in fields(PretrainConfig)
                 if f.name not in FAMILY_FIELDS and getattr(args, f.name, None) is not None}
    if args.evidence:
        from seedlab.run.pretrain_evidence import evidence

        learning_rates = parse_learning_rates(args.finetune_lrs)
        report = evidence(sizes, parse_seeds(args.seeds)[0], parse_seeds(args.finetune_seeds), overrides or None,
                          learning_rates=learning_rates)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
        return 0
    from seedlab.run.pretrain_stage import StageResources, run_pretrain_stage

    result = run_pretrain_stage(sizes, parse_seeds(args.seeds), {"*": overrides}, args.experiment, args.tracking_uri,
                                StageResources(cpus_per_trial=args.cpus_per_trial), max_concurrent=args.max_concurrent)
    return 1 if result.failed else 0


def main(argv=None, prog: str = "seedlab pretrain") -> int:
    parser = add_arguments(argparse.ArgumentParser(prog=prog, description=pretraining.__doc__.splitlines()[0]))
    try:
        return command(parser.parse_args(argv))
    except SeedlabError as exc:
        print(f"seedlab: {exc}", file=sys.stderr)
        return 2
