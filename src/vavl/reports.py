"""Reports people read: one HTML page per run and per cross-validation, pictures included.

A run report shows the clips per split with each modality, the training curves, the metrics of
every path on the development and test sets, the confusion matrix and per-class F1 of every path
(classification), each label's F1 (multilabel) or the predicted-versus-true scatter of every
attribute (regression). A
cross-validation report shows the paper's table: mean and standard deviation over the folds.
Pictures are embedded, so a report is one file that can be mailed or archived.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure  # the object API: no pyplot state, no display needed

from vavl.config import ExperimentConfig, TaskConfig
from vavl.evaluation import headline, metric_value, per_label_columns
from vavl.files import write_text_atomically
from vavl.inference import PathOutputs
from vavl.records import CVTable, PathMetrics
from vavl.types import MODALITIES, PATHS

PATH_TITLES = {"audio": "audio only", "visual": "visual only", "audiovisual": "audio-visual"}
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
.note { color: #666; font-size: 0.9em; }
"""


def embedded_figure(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f'<img src="data:image/png;base64,{encoded}">'


def table_html(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def confusion_figure(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str) -> Figure:
    counts = np.asarray(matrix, dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    figure = Figure(figsize=(4.2, 3.8))
    axes = figure.subplots()
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(counts):
        colour = "white" if shares[row, column] > 0.6 else "black"
        axes.text(column, row, f"{int(count)}", ha="center", va="center", color=colour, fontsize=8)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(labels)), labels, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title, fontsize=10)
    return figure


def per_class_f1_figure(results: Mapping[str, Mapping[str, Any]], labels: Sequence[str]) -> Figure:
    figure = Figure(figsize=(7, 3.2))
    axes = figure.subplots()
    paths = [path for path in PATHS if path in results]
    width = 0.8 / max(len(paths), 1)
    for offset, path in enumerate(paths):
        scores = [results[path]["per_class"][label]["f1"] for label in labels]
        positions = np.arange(len(labels)) + (offset - (len(paths) - 1) / 2) * width
        axes.bar(positions, scores, width, label=PATH_TITLES[path])
    axes.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    axes.set_ylim(0, 1)
    axes.set_ylabel("F1 (test)")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes.set_title("per-class F1 on the test set", fontsize=10)
    return figure


def training_curves_figure(history: Sequence[Mapping[str, Any]], best: int | None) -> Figure:
    """Training losses and each path's development loss per epoch, the kept epoch marked;
    each panel's legend below it, clear of the curves."""
    figure = Figure(figsize=(9, 4.2), layout="constrained")
    train_axes, dev_axes = figure.subplots(1, 2)
    epochs = [record["epoch"] for record in history]
    names = sorted({name for record in history for name in record["train"]})
    for name in names:
        train_axes.plot(
            epochs, [r["train"].get(name, np.nan) for r in history], marker=".", label=name
        )
    train_axes.set_title("training losses (mean per step)", fontsize=10)
    for path in PATHS:
        values = [r["dev"].get(path, {}).get("loss", np.nan) for r in history]
        if not np.all(np.isnan(values)):
            dev_axes.plot(epochs, values, marker=".", label=PATH_TITLES[path])
    if best:
        dev_axes.axvline(best, color="grey", linestyle="--", linewidth=1, label="selected epoch")
    dev_axes.set_title("development loss per path", fontsize=10)
    for axes in (train_axes, dev_axes):
        axes.set_xlabel("epoch")
        axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    return figure


def ccc_scatter_figure(predictions: PathOutputs, attributes: Sequence[str], title: str) -> Figure:
    figure = Figure(figsize=(3.2 * len(attributes), 3.2))
    axes_list = np.atleast_1d(figure.subplots(1, len(attributes)))
    assert predictions.targets is not None
    for index, (axes, name) in enumerate(zip(axes_list, attributes, strict=True)):
        truth, guess = predictions.targets[:, index], predictions.outputs[:, index]
        axes.scatter(truth, guess, s=6, alpha=0.5)
        low, high = float(min(truth.min(), guess.min())), float(max(truth.max(), guess.max()))
        axes.plot([low, high], [low, high], color="grey", linewidth=1)
        axes.set_xlabel(f"true {name}")
        axes.set_ylabel(f"predicted {name}")
    figure.suptitle(title, fontsize=10)
    return figure


def _metrics_rows(task: TaskConfig, results: Mapping[str, Mapping[str, Any]]) -> list[list[Any]]:
    columns = headline(task) + per_label_columns(task)
    rows = []
    for path in PATHS:
        if path in results:
            metrics = results[path]
            values = [f"{metric_value(metrics, key):.3f}" for key, _ in columns]
            rows.append([PATH_TITLES[path], metrics["n"], f"{metrics['loss']:.3f}", *values])
    return rows


def _metrics_header(task: TaskConfig) -> list[str]:
    columns = headline(task) + per_label_columns(task)
    return ["path", "clips", "loss", *(title for _, title in columns)]


def write_run_report(
    run_dir: Path,
    config: ExperimentConfig,
    history: Sequence[Mapping[str, Any]],
    results: Mapping[str, Mapping[str, Mapping[str, Any]]],
    predictions: Mapping[str, Mapping[Any, PathOutputs]],
    counts: Mapping[str, Mapping[str, int]],
    best_epoch: int,
    notes: Sequence[str] = (),
) -> Path:
    """``results[split][path]`` are metrics, ``predictions[split][path]`` the outputs; every
    name a user gave (labels, extractors, folders) is escaped."""
    task = config.task
    parts = [f"<h1>vavl run: {html.escape(str(run_dir))}</h1>"]
    selected = ""
    if history:  # an ensemble's report has none: its members' reports have theirs
        selected = f"selected epoch {best_epoch} of {len(history)} (lowest development loss)"
    fed = [m for m in MODALITIES if any(c[m] for c in counts.values())]  # modalities with data
    features = [f"{m} {config.features.extractor(m)}" for m in fed]
    facts = [
        config.model.name.upper(),
        f"{task.kind} of {', '.join(task.labels)}",
        f"features: {', '.join(features) or 'none'}",
        selected,
    ]
    parts.append(f"<p>{' &middot; '.join(html.escape(fact) for fact in facts if fact)}</p>")
    parts.append("<h2>Data</h2>")
    parts.append(
        table_html(
            ["split", "clips", "with audio", "with video", "with both"],
            [[s, c["clips"], c["audio"], c["visual"], c["both"]] for s, c in counts.items()],
        )
    )
    parts += [f'<p class="note">{html.escape(note)}</p>' for note in notes]
    for split in ("test", "dev"):
        if split in results:
            title = (
                "Test set (scored once, after training)" if split == "test" else "Development set"
            )
            parts.append(f"<h2>{title}</h2>")
            parts.append(table_html(_metrics_header(task), _metrics_rows(task, results[split])))
    test = results.get("test", {})
    figures = []
    if task.kind == "classification":
        for path in PATHS:
            if path in test:
                title = f"{PATH_TITLES[path]} (test, n={test[path]['n']})"
                figures.append(
                    embedded_figure(
                        confusion_figure(test[path]["confusion_matrix"], task.labels, title)
                    )
                )
    if task.kind == "regression":
        for path, outputs in predictions.get("test", {}).items():
            figures.append(
                embedded_figure(ccc_scatter_figure(outputs, task.labels, PATH_TITLES[path]))
            )
    elif test:  # classes and labels present: each one's F1
        figures.append(embedded_figure(per_class_f1_figure(test, task.labels)))
    if history:
        figures.insert(0, embedded_figure(training_curves_figure(history, best_epoch)))
    parts.append('<h2>Pictures</h2><div class="figures">' + "".join(figures) + "</div>")
    return write_page(run_dir / "report.html", f"vavl run {run_dir.name}", parts)


def write_page(path: Path, title: str, parts: Sequence[str]) -> Path:
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    return write_text_atomically(path, page)


def cv_metrics(task: TaskConfig) -> list[tuple[str, str]]:
    """The figures of a cross-validation table: the field's for each kind of task."""
    if task.kind == "classification":  # the paper's: the headline's F1, precision and recall
        return headline(task)[2:]
    if task.kind == "multilabel":
        each = [(f"{k}:{label}", f"{t} {label}") for label in task.labels for k, t in WA_F1]
        return [*headline(task)[:4], *each]
    if task.sentiment:
        return headline(task)
    return [(f"ccc:{a}", f"CCC {a}") for a in task.labels] + [("ccc_mean", "CCC mean")]


WA_F1 = (("wa", "WA"), ("wf1", "wF1"))  # each label's, as CMU-MOSEI papers report them


def cv_table(task: TaskConfig, folds: Sequence[Mapping[str, PathMetrics]]) -> CVTable:
    """table[path][metric] = mean, sample standard deviation over the folds (ddof 1; 0 for a
    single fold), the number of folds and the per-fold values."""
    table: CVTable = {}
    for path_name in PATHS:
        path: str = path_name
        if not all(path in fold for fold in folds):
            continue
        table[path] = {}
        for key, _ in cv_metrics(task):
            values = [metric_value(fold[path], key) for fold in folds]
            table[path][key] = {
                "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "n": len(values),
                "folds": values,
            }
    return table


def cv_markdown(task: TaskConfig, table: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    metrics = cv_metrics(task)
    lines = [
        "| path | " + " | ".join(title for _, title in metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for path, row in table.items():
        cells = [f"{row[k]['mean']:.3f} ± {row[k]['std']:.3f}" for k, _ in metrics]
        lines.append(f"| {PATH_TITLES[path]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_cv_report(
    cv_dir: Path,
    config: ExperimentConfig,
    table: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> Path:
    task = config.task
    metrics = cv_metrics(task)
    folds = len(next(iter(next(iter(table.values())).values()))["folds"]) if table else 0
    parts = [
        f"<h1>vavl cross-validation: {html.escape(cv_dir.name)}</h1>",
        f"<p>{folds} folds &middot; test-set metrics of each fold's selected epoch; mean ± "
        "standard deviation over folds</p>",
        table_html(
            ["path", *(title for _, title in metrics)],
            [
                [
                    PATH_TITLES[p],
                    *(f"{row[k]['mean']:.3f} ± {row[k]['std']:.3f}" for k, _ in metrics),
                ]
                for p, row in table.items()
            ],
        ),
        "<h2>Per fold</h2>",
        table_html(
            ["path", "metric", *(f"fold {i + 1}" for i in range(folds))],
            [
                [PATH_TITLES[p], title, *(f"{v:.3f}" for v in row[k]["folds"])]
                for p, row in table.items()
                for k, title in metrics
            ],
        ),
    ]
    if table:
        figure = Figure(figsize=(7, 3.2))
        axes = figure.subplots()
        key, title = metrics[0]
        paths = list(table)
        means = [table[p][key]["mean"] for p in paths]
        errors = [table[p][key]["std"] for p in paths]
        axes.bar([PATH_TITLES[p] for p in paths], means, yerr=errors, capsize=6, color="#4c72b0")
        for index, path in enumerate(paths):
            axes.scatter([index] * folds, table[path][key]["folds"], color="black", s=10, zorder=3)
        axes.set_ylabel(title)
        axes.set_title(f"{title} per path (bars: mean ± std, dots: folds)", fontsize=10)
        parts.append(embedded_figure(figure))
    return write_page(cv_dir / "report.html", f"vavl cv {cv_dir.name}", parts)
