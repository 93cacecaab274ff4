"""Experiments: one fold (``vavl train``), all folds (``vavl cv``), re-scoring (``vavl evaluate``).

A run directory holds the resolved ``config.yaml``, the checkpoints (``last.pt`` to resume,
``best.pt`` to predict), ``history.json``, ``predictions/<split>.csv`` (every path's outputs for
every clip), ``metrics.json`` (development and test metrics of the selected epoch: the test set
is scored once, after training) and ``report.html``. A cross-validation directory holds one run
directory per fold, ``cv.json``, ``cv.md`` (the paper's table) and ``report.html``. Running the
same command again resumes: finished folds are kept, an interrupted one continues. An ensemble's
run directory (``training.ensemble``) also holds one run directory per member, ``member-K``,
kept or resumed in the same way; its ``best.pt`` combines them.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from vavl import distributed
from vavl.calibration import PathReliability
from vavl.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from vavl.config import ExperimentConfig, config_from_dict
from vavl.config_files import apply_overrides, load_config, save_config
from vavl.corpora import Split
from vavl.data import Item
from vavl.devices import check_trainable, resolve_device
from vavl.errors import ConfigError
from vavl.evaluation import evaluate_predictions, headline
from vavl.files import (
    read_json,
    run_directory_lock,
    write_json_atomically,
    write_text_atomically,
)
from vavl.inference import InferenceEngine, PathOutputs
from vavl.models import EmotionModel, parameter_count
from vavl.normalization import FeatureNormalizer
from vavl.prediction_table import prediction_rows
from vavl.preparation import ExperimentData, prepare
from vavl.records import CVSummary, EpochRecord, PathMetrics
from vavl.reports import cv_markdown, cv_table, write_cv_report, write_run_report
from vavl.training import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    Trainer,
    check_same_run,
    class_weights_for,
)
from vavl.training.ensemble import combine_members, member_config, member_dir, with_members
from vavl.types import PathName

logger = logging.getLogger("vavl")


@dataclass
class ExperimentResult:
    config: ExperimentConfig
    run_dir: Path
    best_epoch: int
    dev: dict[str, PathMetrics]
    test: dict[str, PathMetrics]


def _fold_of(config: ExperimentConfig) -> int:
    return config.data.fold if config.data is not None else 1


def _splits(config: ExperimentConfig, data: ExperimentData) -> dict[Split, list[Item]]:
    last = config.training.selection_path == "last"
    split = getattr(config.data, "split", None)
    untested = split is not None and split.method == "shares" and split.test_share == 0
    return data.split(_fold_of(config), allow_empty_dev=last, allow_empty_test=untested)


def score_run(
    run_dir: Path,
    config: ExperimentConfig,
    model: EmotionModel,
    normalizer: FeatureNormalizer,
    data: ExperimentData,
    history: list[EpochRecord],
    best_epoch: int,
    device: torch.device,
    calibration: Mapping[str, PathReliability],
    progress: bool = False,
    notes: Sequence[str] = (),
) -> ExperimentResult:
    """Predict every split with the selected model; write predictions, metrics and the report
    (``notes``: more lines for it). A multi-label model decides with its ``calibration``
    (temperature and thresholds, chosen on development clips), as it will for users."""
    fold = _fold_of(config)
    splits = _splits(config, data)
    weights = class_weights_for(config.task, splits["train"])
    results: dict[str, dict[str, PathMetrics]] = {}
    all_predictions: dict[str, dict[PathName, PathOutputs]] = {}
    split: Split
    for split in ("train", "dev", "test"):
        items = splits[split]
        if not items:
            continue
        engine = InferenceEngine.for_model(
            model,
            config.task,
            normalizer.for_items(items, config.features.normalise),
            config.training.batch_size,
            device,
        )
        predictions = engine.outputs(items, progress, description=f"predict {split}")
        all_predictions[split] = predictions
        results[split] = evaluate_predictions(config.task, predictions, weights, calibration)
        by_id = {item.id: item for item in items}
        write_text_atomically(
            run_dir / "predictions" / f"{split}.csv",
            prediction_rows(config.task, split, predictions, by_id, calibration),
        )
    write_json_atomically(
        run_dir / "metrics.json",
        {
            "fold": fold,
            "best_epoch": best_epoch,
            "dev": results.get("dev", {}),
            "test": results.get("test", {}),
            "train": results["train"],
            "extractors": {m: d and d.to_dict() for m, d in data.extractors.items()},
            "config": config.to_dict(),
        },
    )
    counts = data.modality_counts(fold)
    report_notes = [*data.notes, *notes]
    write_run_report(
        run_dir, config, history, results, all_predictions, counts, best_epoch, report_notes
    )
    dev, test = results.get("dev", {}), results.get("test", {})
    return ExperimentResult(config, run_dir, best_epoch, dev, test)


# What a run directory holds; ``force`` removes exactly these, never a user's other files.
RUN_FILES = (
    "last.pt", "last.previous.pt", "best.pt", "config.yaml", "history.json", "metrics.json",
    "report.html", "predictions", "cv.json", "cv.md",
)  # fmt: skip


def clear_run(run_dir: Path) -> None:
    """Remove a run's own files from ``run_dir`` (and its folds'), to start over."""
    for name in RUN_FILES:
        target = run_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    for part in sorted([*run_dir.glob("fold-*"), *run_dir.glob("member-*")]):
        if part.is_dir():
            clear_run(part)


def run_experiment(
    config: ExperimentConfig,
    run_dir: str | Path,
    data: ExperimentData | None = None,
    progress: bool = True,
    force: bool = False,
) -> ExperimentResult:
    """Train (or resume) the config's fold in ``run_dir`` and score the selected epoch.

    ``force`` starts over, replacing what a run with another config left in ``run_dir``."""
    run_dir = Path(run_dir)
    distributed.initialize(config.training.device)  # under torchrun; nothing in one process
    device = resolve_device(config.training.device)
    check_trainable(parameter_count(config.model, config.task.output_dim), device)
    with _owned(run_dir):
        return _run_experiment(config, run_dir, data, progress, force)


def _owned(run_dir: Path) -> AbstractContextManager[None]:
    """The run directory's lock, taken by the main process (the others follow it)."""
    return run_directory_lock(run_dir) if distributed.is_main() else nullcontext()


def _run_experiment(
    config: ExperimentConfig,
    run_dir: Path,
    data: ExperimentData | None,
    progress: bool,
    force: bool,
) -> ExperimentResult:
    if force and distributed.is_main():
        clear_run(run_dir)
    distributed.barrier()
    if data is None:
        with distributed.main_first():  # the main process extracts what the store lacks
            data = prepare(config, progress and distributed.is_main())
    if config.training.ensemble > 1:
        return _run_ensemble(config, run_dir, data)
    return _train_and_score(config, run_dir, data)


def _train_and_score(
    config: ExperimentConfig, run_dir: Path, data: ExperimentData
) -> ExperimentResult:
    splits = _splits(config, data)
    trainer = Trainer(config, splits["train"], splits["dev"], run_dir, data.extractors)
    if distributed.is_main():
        save_config(config, run_dir / "config.yaml")
    training = trainer.fit()
    result = None
    if distributed.is_main():  # scoring and reports: once
        result = score_run(
            run_dir, config, trainer.model, trainer.normalizer, data, training.history,
            training.best_epoch, trainer.device, trainer.calibration,
        )  # fmt: skip
    shared: ExperimentResult = distributed.all_gather_objects(result)[0]
    return shared


def _finished_run(run_dir: Path, config: ExperimentConfig) -> ExperimentResult | None:
    """The result of a finished run of this very config in ``run_dir``; None when there is none
    or it is to be continued (more epochs asked for). Another config's run is refused."""
    metrics = run_dir / "metrics.json"
    if not metrics.exists():
        return None
    finished = read_json(metrics)
    saved = config_from_dict(finished["config"], source=str(metrics))
    check_same_run(run_dir, saved, config)
    if saved.training.epochs != config.training.epochs:
        return None  # the trainer continues it, or refuses fewer epochs
    return ExperimentResult(
        config, run_dir, finished["best_epoch"], finished.get("dev", {}), finished.get("test", {})
    )


def _check_ensemble_dir(run_dir: Path, config: ExperimentConfig) -> None:
    """Refuse a directory that holds another config's ensemble or a single run; the number of
    members may change (the finished ones are kept)."""
    for name in (BEST_CHECKPOINT, LAST_CHECKPOINT):
        if (run_dir / name).exists():
            saved = load_checkpoint(run_dir / name).config
            if saved.training.ensemble > 1:
                saved = with_members(saved, config.training.ensemble)
            check_same_run(run_dir, saved, config)


def _run_ensemble(
    config: ExperimentConfig, run_dir: Path, data: ExperimentData
) -> ExperimentResult:
    """Train (or resume, or keep) each member in its own directory, then combine, calibrate and
    score them as one model in ``run_dir``."""
    _check_ensemble_dir(run_dir, config)
    count = config.training.ensemble
    member_results = []
    for index in range(count):
        folder, member = member_dir(run_dir, index), member_config(config, index)
        result = _finished_run(folder, member)
        if result is None:
            logger.info("ensemble member %d of %d", index + 1, count)
            result = _train_and_score(member, folder, data)
        else:
            logger.info("ensemble member %d of %d: finished earlier, kept", index + 1, count)
        member_results.append(result)
    combined = None
    if distributed.is_main():
        save_config(config, run_dir / "config.yaml")
        device = resolve_device(config.training.device)
        checkpoint, ensemble = combine_members(
            config, [member_dir(run_dir, i) for i in range(count)], _splits(config, data)["dev"],
            data.extractors, device,
        )  # fmt: skip
        save_checkpoint(checkpoint, run_dir / BEST_CHECKPOINT)
        combined = score_run(
            run_dir, config, ensemble, checkpoint.normalizer, data, [], 0, device,
            checkpoint.calibration, notes=[_members_note(member_results)],
        )  # fmt: skip
    shared: ExperimentResult = distributed.all_gather_objects(combined)[0]
    return shared


def _members_note(members: Sequence[ExperimentResult]) -> str:
    """What the report says of an ensemble's members: each one's test figures alone."""
    task = members[0].config.task
    key, title = headline(task)[1 if task.kind == "classification" else 0]
    parts = []
    for member in members:
        figures = ", ".join(f"{path} {m[key]:.3f}" for path, m in member.test.items())
        parts.append(f"{member.run_dir.name} (seed {member.config.training.seed}): {figures}")
    return (
        f"An ensemble of {len(members)} members, each trained alone in its own folder (with its "
        f"own report); test {title} of each member alone: {'; '.join(parts)}"
    )


def evaluate_run(run_dir: str | Path, progress: bool = True) -> ExperimentResult:
    """Score a finished run again from its directory (same config, same features, no training)."""
    run_dir = Path(run_dir)
    missing = [name for name in ("config.yaml", "best.pt") if not (run_dir / name).is_file()]
    if missing:
        raise ConfigError(
            f"{run_dir}: not a finished vavl run (no {' or '.join(missing)}); `vavl train "
            f"CONFIG --run-dir {run_dir}` makes one"
        )
    config = load_config(run_dir / "config.yaml")
    checkpoint = load_checkpoint(run_dir / "best.pt")
    data = prepare(config, progress)
    checkpoint.check_features(data.extractors, model_name=str(run_dir / "best.pt"))
    device = resolve_device(config.training.device)
    model = model_from_checkpoint(checkpoint).to(device)
    # best.pt's history stops at the selected epoch; the run's own file has every epoch.
    history_file = run_dir / "history.json"
    history = read_json(history_file) if history_file.exists() else checkpoint.history
    notes = []
    if checkpoint.members > 1:  # the report lists the members' own figures
        members = [
            _finished_run(member_dir(run_dir, index), member_config(config, index))
            for index in range(config.training.ensemble)
        ]
        found = [member for member in members if member is not None]
        notes = [_members_note(found)] if found else []
    best = checkpoint.best_epoch or 0  # an ensemble keeps no epoch of its own
    with run_directory_lock(run_dir):
        return score_run(
            run_dir,
            config,
            model,
            checkpoint.normalizer,
            data,
            history,
            best,
            device,
            checkpoint.calibration,
            progress,
            notes,
        )


def partition_overlap(folds: Sequence[Mapping[str, str]]) -> str | None:
    """A note when the partitions' test sets share clips (as the authors' CREMA-D partitions
    do): the folds are then not independent samples, and their spread understates the
    uncertainty. None when every clip is tested at most once."""
    tested = Counter(clip for fold in folds for clip, split in fold.items() if split == "test")
    repeated = sum(1 for times in tested.values() if times > 1)
    if not repeated:
        return None
    return (
        f"the test sets of the {len(folds)} partitions overlap ({repeated} of {len(tested)} "
        "tested clips are in more than one): the folds are not independent samples, and the "
        "standard deviation understates the uncertainty"
    )


def run_cv(
    config: ExperimentConfig, run_dir: str | Path, progress: bool = True, force: bool = False
) -> CVSummary:
    """Every fold in ``run_dir/fold-<k>`` (finished folds of the same config are kept; another
    config is refused, or replaced with ``force``), then the paper's table."""
    run_dir = Path(run_dir)
    distributed.initialize(config.training.device)  # under torchrun; nothing in one process
    with _owned(run_dir):
        return _run_cv(config, run_dir, progress, force)


def _run_cv(config: ExperimentConfig, run_dir: Path, progress: bool, force: bool) -> CVSummary:
    if force and distributed.is_main():
        clear_run(run_dir)
    distributed.barrier()
    with distributed.main_first():
        data = prepare(config, progress and distributed.is_main())
    folds = len(data.folds)
    test_results = []
    for fold in range(1, folds + 1):
        fold_dir = run_dir / f"fold-{fold}"
        fold_config = apply_overrides(config, [f"data.fold={fold}"])
        finished = _finished_run(fold_dir, fold_config)
        if finished is not None:
            logger.info("fold %d/%d: finished earlier with the same config, kept", fold, folds)
            test_results.append(finished.test)
            continue
        logger.info("fold %d/%d", fold, folds)
        test_results.append(run_experiment(fold_config, fold_dir, data, progress).test)
    table = cv_table(config.task, test_results)
    overlap = partition_overlap(data.folds)
    summary: CVSummary = {
        "folds": folds,
        "table": table,
        "overlap": overlap,
        "config": config.to_dict(),
    }
    if overlap:
        logger.warning("%s", overlap)
    if distributed.is_main():
        write_json_atomically(run_dir / "cv.json", summary)
        markdown = cv_markdown(config.task, table) + (f"\n{overlap}\n" if overlap else "")
        write_text_atomically(run_dir / "cv.md", markdown)
        save_config(config, run_dir / "config.yaml")
        write_cv_report(run_dir, config, table)
    return summary
