"""vavl compare: hand-computed tables and paired differences; the real mixed set end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import demo_config, require_shared_data
from vavl.cli import main
from vavl.comparison import compare_runs
from vavl.config_files import apply_overrides, save_config
from vavl.demo import demo_config as mixed_demo_config
from vavl.errors import VavlError
from vavl.reports import cv_table


def fake_cv_run(
    folder: Path, method: str, f1_by_fold: dict[str, list[float]], **config: Any
) -> Path:
    """A cv directory as vavl cv writes it, with chosen F1-macro values per path and fold."""
    settings = demo_config(f"method={method}", *(f"{k}={v}" for k, v in config.items()))
    folds = len(next(iter(f1_by_fold.values())))
    results = [
        {
            path: {
                "f1_macro": values[fold],
                "f1_micro": 0.5,
                "precision_macro": 0.5,
                "recall_macro": values[fold] / 2,
            }
            for path, values in f1_by_fold.items()
        }
        for fold in range(folds)
    ]
    folder.mkdir(parents=True)
    table = cv_table(settings.task, results)
    (folder / "cv.json").write_text(
        json.dumps({"folds": folds, "table": table, "config": settings.to_dict()})
    )
    return folder


def test_table_and_paired_differences_match_hand_computed_values(tmp_path: Path) -> None:
    base = fake_cv_run(
        tmp_path / "a", "vavl", {"audio": [0.5, 0.6, 0.7], "audiovisual": [0.6, 0.6, 0.9]}
    )
    other = fake_cv_run(
        tmp_path / "b", "late-fusion", {"audio": [0.4, 0.8, 0.7], "audiovisual": [0.7, 0.8, 1.0]}
    )
    comparison = compare_runs([base, other])
    assert comparison.reference == "vavl" and comparison.notes == []
    rows = comparison.rows()
    # sample std (ddof 1) of (0.6, 0.6, 0.9) = sqrt(0.06 / 2) = 0.1732
    assert [
        "vavl",
        "audio-visual",
        "0.700 ± 0.173",
        "0.500 ± 0.000",
        "0.500 ± 0.000",
        "0.350 ± 0.087",
    ] in rows
    audio = comparison.differences["late-fusion"]["audio"]["f1_macro"]
    assert audio["values"] == pytest.approx([-0.1, 0.2, 0.0])
    assert audio["mean"] == pytest.approx(1 / 30) and audio["better"] == 1
    assert audio["std"] == pytest.approx(
        ((0.1 + 1 / 30) ** 2 + (0.2 - 1 / 30) ** 2 + (1 / 30) ** 2) ** 0.5 / 2**0.5
    )
    fused = comparison.differences["late-fusion"]["audiovisual"]["f1_macro"]
    assert fused["mean"] == pytest.approx(0.4 / 3) and fused["better"] == 3
    # differences (0.1, 0.2, 0.1): mean 0.133, sample std 0.0577
    assert "| late-fusion | audio-visual | +0.133 ± 0.058 (3/3) |" in comparison.markdown()

    # The other way round: the reference is named, and its own row has no difference.
    flipped = compare_runs([base, other], reference="late-fusion")
    assert set(flipped.differences) == {"vavl"}
    assert flipped.differences["vavl"]["audio"]["f1_macro"]["mean"] == pytest.approx(-1 / 30)


def test_runs_that_cannot_be_paired_or_compared(tmp_path: Path) -> None:
    base = fake_cv_run(tmp_path / "a", "vavl", {"audio": [0.5, 0.6]})
    other_data = fake_cv_run(tmp_path / "b", "mult", {"audio": [0.4, 0.8]}, **{"data.seed": 7})
    comparison = compare_runs([base, other_data])
    assert comparison.differences == {}
    assert "mult was run on other data, splits or features than vavl" in comparison.notes[0]
    other_task = fake_cv_run(
        tmp_path / "c", "unimodal", {"audio": [0.4, 0.8]}, **{"task.labels": "[a, b, c, d]"}
    )
    with pytest.raises(VavlError, match="task labels or kind differ"):
        compare_runs([base, other_task])
    twice = compare_runs([base, fake_cv_run(tmp_path / "d", "vavl", {"audio": [0.5, 0.7]})])
    assert [m.name for m in twice.methods] == ["vavl (a)", "vavl (d)"]
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(base), str(tmp_path / "empty")]) == 2
    with pytest.raises(VavlError, match="empty: not a finished run"):
        compare_runs([tmp_path / "empty"])
    with pytest.raises(VavlError, match="no run named auxformer"):
        compare_runs([base], reference="auxformer")


@pytest.mark.slow
def test_methods_compared_on_the_mixed_real_set(
    shared_store: tuple[Path, list[dict[str, Any]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = mixed_demo_config(tmp_path, require_shared_data())
    config = apply_overrides(config, [f"data.store={shared_store[0]}"])
    config_file = tmp_path / "mixed.yaml"
    save_config(config, config_file)
    methods = ("vavl", "auxformer")
    for method in methods:
        run = tmp_path / "runs" / method
        assert (
            main(
                [
                    "cv",
                    str(config_file),
                    "--model",
                    method,
                    "--run-dir",
                    str(run),
                    "--quiet",
                    "--set",
                    "training.epochs=1",
                ]
            )
            == 0  # after --model (AuxFormer's is 30)
        )
        saved = json.loads((run / "cv.json").read_text())["config"]
        assert saved["method"] == method and saved["model"]["name"] == method
    capsys.readouterr()
    out = tmp_path / "comparison"
    runs = [str(tmp_path / "runs" / m) for m in methods]
    assert main(["compare", *runs, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for method in methods:
        for path in ("audio only", "visual only", "audio-visual"):
            assert f"| {method} | {path} |" in printed
    assert "Paired differences from vavl" in printed
    assert "| auxformer | audio-visual |" in printed.split("Paired differences")[1]
    page = (out / "compare.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "auxformer" in page
    assert json.loads((out / "compare.json").read_text())["reference"] == "vavl"
