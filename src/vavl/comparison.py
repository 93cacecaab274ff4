"""Compare methods from their run directories: one table, paired differences, one picture.

Each run is a ``vavl cv`` directory (its ``cv.json`` holds every fold's test metrics) or a single
``vavl train`` run (one fold). Nothing is trained or predicted again. Differences are paired by
partition: for each fold, the method's metric minus the reference's on the same test speakers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from vavl.config import ExperimentConfig, TaskConfig, config_from_dict
from vavl.errors import ConfigError, VavlError
from vavl.files import read_json, write_json_atomically, write_text_atomically
from vavl.records import CVTable
from vavl.reports import PATH_TITLES, cv_metrics, cv_table, embedded_figure, table_html, write_page
from vavl.types import PATHS


@dataclass
class MethodRuns:
    name: str
    run_dir: Path
    config: ExperimentConfig
    table: CVTable  # path -> metric -> mean, std, n, folds

    @property
    def folds(self) -> int:
        return len(next(iter(next(iter(self.table.values())).values()))["folds"])


def load_method(run_dir: str | Path) -> MethodRuns:
    """A method's test metrics per fold from a cv directory or a single run directory."""
    run_dir = Path(run_dir)
    cv, single = run_dir / "cv.json", run_dir / "metrics.json"
    if cv.is_file():
        saved = read_json(cv)
    elif single.is_file():
        saved = read_json(single)
    else:
        raise VavlError(
            f"{run_dir}: not a finished run (no cv.json from vavl cv, no metrics.json from "
            "vavl train)"
        )
    try:
        config = config_from_dict(saved["config"], f"{run_dir} (saved config)")
    except ConfigError as error:
        raise VavlError(str(error)) from None
    # A single run is one partition.
    table = saved["table"] if "table" in saved else cv_table(config.task, [saved["test"]])
    if not table:
        raise VavlError(f"{run_dir}: its runs have no test results")
    return MethodRuns(config.method or run_dir.name, run_dir, config, table)


@dataclass
class Comparison:
    task: TaskConfig
    methods: list[MethodRuns]
    reference: str
    # method -> path -> metric -> mean, std, better (folds where above the reference), values
    differences: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def metrics(self) -> list[tuple[str, str]]:
        return cv_metrics(self.task)

    def rows(self) -> list[list[str]]:
        """method, path and mean ± std of every metric, path by path."""
        rows = []
        for path in PATHS:
            for method in self.methods:
                row = method.table.get(path)
                if row is None:
                    continue
                cells = [f"{row[k]['mean']:.3f} ± {row[k]['std']:.3f}" for k, _ in self.metrics]
                rows.append([method.name, PATH_TITLES[path], *cells])
        return rows

    def difference_rows(self) -> list[list[str]]:
        rows = []
        for name, paths in self.differences.items():
            for path, metrics in paths.items():
                cells = []
                for key, _ in self.metrics:
                    entry = metrics[key]
                    folds = len(entry["values"])
                    cells.append(
                        f"{entry['mean']:+.3f} ± {entry['std']:.3f} ({entry['better']}/{folds})"
                    )
                rows.append([name, PATH_TITLES[path], *cells])
        return rows

    def markdown(self) -> str:
        titles = [title for _, title in self.metrics]
        folds = sorted({m.folds for m in self.methods})
        lines = [
            f"Test sets, mean ± std over {'/'.join(map(str, folds))} partitions:",
            "",
            _markdown_table(["method", "path", *titles], self.rows()),
        ]
        if self.differences:
            lines += [
                f"Paired differences from {self.reference} (method minus {self.reference} on the "
                "same partition, mean ± std; in brackets: partitions where the method is higher):",
                "",
                _markdown_table(["method", "path", *titles], self.difference_rows()),
            ]
        lines += [f"Note: {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def figure(self) -> Figure:
        """The headline metric per path: one bar per method (mean, std whiskers, fold dots)."""
        attributes = self.task.kind == "regression" and not self.task.sentiment
        key, title = self.metrics[-1] if attributes else self.metrics[0]  # CCC mean is last
        paths = [p for p in PATHS if any(p in m.table for m in self.methods)]
        figure = Figure(figsize=(max(6.0, 1.1 * len(paths) * len(self.methods)), 3.6))
        axes = figure.subplots()
        width = 0.8 / len(self.methods)
        for index, method in enumerate(self.methods):
            drawn = [(i, p) for i, p in enumerate(paths) if p in method.table]
            for number, (position, path) in enumerate(drawn):
                entry = method.table[path][key]
                x = position + (index - (len(self.methods) - 1) / 2) * width
                label = method.name if number == 0 else None
                axes.bar(
                    x, entry["mean"], width * 0.9, yerr=entry["std"], color=f"C{index}",
                    capsize=3, label=label,
                )  # fmt: skip
                axes.plot([x] * len(entry["folds"]), entry["folds"], "k.", markersize=3)
        axes.legend(fontsize=8, loc="upper left", ncol=2)
        axes.set_xticks(range(len(paths)), [PATH_TITLES[p] for p in paths])
        axes.set_ylabel(f"test {title}")
        axes.set_title(f"{title} per path and method (dots: partitions)", fontsize=10)
        return figure

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        out_dir = Path(out_dir)
        titles = [title for _, title in self.metrics]
        parts = [
            "<h1>vavl comparison</h1>",
            "<p>"
            + ", ".join(f"{m.name} ({m.run_dir}, {m.folds} partitions)" for m in self.methods)
            + "</p>",
            "<h2>Test sets, mean ± std over partitions</h2>",
            table_html(["method", "path", *titles], self.rows()),
        ]
        if self.differences:
            parts += [
                f"<h2>Paired differences from {self.reference}</h2>",
                "<p>method minus reference on the same partition; in brackets, partitions where "
                "the method is higher</p>",
                table_html(["method", "path", *titles], self.difference_rows()),
            ]
        parts += [f"<p>Note: {note}</p>" for note in self.notes]
        parts.append(embedded_figure(self.figure()))
        return {
            "markdown": write_text_atomically(out_dir / "compare.md", self.markdown()),
            "json": write_json_atomically(
                out_dir / "compare.json",
                {
                    "reference": self.reference,
                    "methods": {
                        m.name: {"run_dir": str(m.run_dir), **m.table} for m in self.methods
                    },
                    "differences": self.differences,
                    "notes": self.notes,
                },
            ),
            "html": write_page(out_dir / "compare.html", "vavl comparison", parts),
        }


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def compare_runs(run_dirs: Sequence[str | Path], reference: str | None = None) -> Comparison:
    """Every run's table, and its paired differences from ``reference`` (default: the first)."""
    if not run_dirs:
        raise VavlError("compare: give at least one run directory")
    methods = [load_method(run_dir) for run_dir in run_dirs]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):  # the same method twice: tell them apart by folder
        for method in methods:
            method.name = f"{method.name} ({method.run_dir.name})"
        names = [m.name for m in methods]
    first = methods[0]
    for method in methods[1:]:
        if method.config.task != first.config.task:
            raise VavlError(
                f"{method.run_dir}: predicts other targets than {first.run_dir} "
                "(task labels or kind differ): not comparable"
            )
    comparison = Comparison(first.config.task, methods, reference or first.name)
    if comparison.reference not in names:
        raise VavlError(f"compare: no run named {comparison.reference} (runs: {', '.join(names)})")
    base = methods[names.index(comparison.reference)]
    for method in methods:
        if method.config.data != base.config.data or method.config.features != base.config.features:
            comparison.notes.append(
                f"{method.name} was run on other data, splits or features than {base.name}: "
                "its differences are not paired"
            )
            continue
        if method is base or method.folds != base.folds:
            continue
        comparison.differences[method.name] = {}
        for path, row in method.table.items():
            if path not in base.table:
                continue
            comparison.differences[method.name][path] = {}
            for key, _ in comparison.metrics:
                values = np.subtract(row[key]["folds"], base.table[path][key]["folds"])
                comparison.differences[method.name][path][key] = {
                    "mean": float(values.mean()),
                    "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                    "better": int((values > 0).sum()),
                    "values": values.tolist(),
                }
    return comparison
