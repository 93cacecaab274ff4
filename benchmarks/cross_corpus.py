"""Benchmark: the leave-one-corpus-out table of a cross-corpus `vavl cv` run.

A run of a config with ``data.split.method: corpora`` trains, in each fold, on every corpus but
one and tests on that one (its speakers, recordings and often its language were never heard).
For each fold and path this prints the left-out corpus's clips, the model's unweighted accuracy
(UA, mean recall over the classes the corpus has), the share of its most predicted class, and a
linear probe beside it: logistic regression (balanced classes, C chosen on the fold's
development clips) on each clip's mean and standard deviation of the same frame features,
fitted on the fold's own training clips. The last rows are the means over the folds.

    vavl cv CONFIG --run-dir runs/loco        # CONFIG with data.split.method: corpora
    python benchmarks/cross_corpus.py runs/loco [--card src/vavl/assets/default-model.json]

``--card`` writes the table into a model card (``vavl info`` prints it).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from default_model import fit_probe, probe_predict

from vavl.calibration import unweighted_accuracy
from vavl.config_files import load_config
from vavl.preparation import prepare
from vavl.types import MODALITIES


def model_rows(
    fold_dir: Path, labels: tuple[str, ...]
) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """Per path: (targets, predictions, corpus) of the fold's test clips, from its CSV."""
    found: dict[str, tuple[list[int], list[int], str]] = {}
    with open(fold_dir / "predictions" / "test.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            targets, predicted, _ = found.setdefault(row["path"], ([], [], row["corpus"]))
            targets.append(labels.index(row["target"]))
            predicted.append(labels.index(row["prediction"]))
    return {p: (np.array(t), np.array(q), c) for p, (t, q, c) in found.items()}


def fold_table(fold_dir: Path) -> list[dict[str, Any]]:
    config = load_config(fold_dir / "config.yaml")
    labels = config.task.labels
    data = prepare(config, progress=False)
    assert config.data is not None and hasattr(config.data, "fold")
    splits = data.split(config.data.fold)
    rows = []
    for path, (targets, predicted, corpus) in model_rows(fold_dir, labels).items():
        counts = Counter(predicted.tolist())
        entry: dict[str, Any] = {
            "corpus": corpus,
            "path": path,
            "clips": len(targets),
            "ua": round(unweighted_accuracy(predicted, targets), 3),
            "top_class": labels[counts.most_common(1)[0][0]],
            "top_class_share": round(counts.most_common(1)[0][1] / len(predicted), 3),
        }
        if path in MODALITIES:
            train = [i for i in splits["train"] if i.has(path)]  # type: ignore[arg-type]
            dev = [i for i in splits["dev"] if i.has(path)]  # type: ignore[arg-type]
            test = [i for i in splits["test"] if i.has(path)]  # type: ignore[arg-type]
            probe = fit_probe(train, dev, path)  # type: ignore[arg-type]
            guessed = probe_predict(probe, test, path)  # type: ignore[arg-type]
            truth = np.array([item.label for item in test])
            shares = Counter(guessed.tolist())
            entry["probe_ua"] = round(unweighted_accuracy(guessed, truth), 3)
            entry["probe_top_class_share"] = round(shares.most_common(1)[0][1] / len(guessed), 3)
        rows.append(entry)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| left-out corpus | path | clips | UA | most predicted | probe UA | probe's most |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in rows:
        probe_top = entry.get("probe_top_class_share")
        lines.append(
            f"| {entry['corpus']} | {entry['path']} | {entry['clips']} | {entry['ua']:.3f} | "
            f"{entry['top_class']} {entry['top_class_share']:.0%} | "
            f"{entry.get('probe_ua', '')} | {'' if probe_top is None else f'{probe_top:.0%}'} |"
        )
    for path in dict.fromkeys(entry["path"] for entry in rows):
        chosen = [entry for entry in rows if entry["path"] == path]
        mean = np.mean([entry["ua"] for entry in chosen])
        top = max(entry["top_class_share"] for entry in chosen)
        probes = [entry["probe_ua"] for entry in chosen if "probe_ua" in entry]
        above = sum(entry["ua"] > entry.get("probe_ua", 1.0) for entry in chosen)
        against = f"{np.mean(probes):.3f} (model above on {above} of {len(chosen)})"
        lines.append(
            f"| **mean of {len(chosen)}** | {path} | | **{mean:.3f}** | at most {top:.0%} | "
            f"{against if probes else ''} | |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished `vavl cv` run of a cross-corpus config")
    parser.add_argument("--card", type=Path, help="write the table into this model card")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    rows = [row for fold in sorted(args.run.glob("fold-*")) for row in fold_table(fold)]
    print(markdown(rows))
    if args.card:
        existing = json.loads(args.card.read_text()) if args.card.is_file() else {}
        existing["cross_corpus"] = rows
        args.card.write_text(json.dumps(existing, indent=2, ensure_ascii=False) + "\n")
        print(f"\nwritten: {args.card}")


if __name__ == "__main__":
    main()
