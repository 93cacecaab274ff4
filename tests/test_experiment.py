"""Experiments end to end: the mixed real set, resumable cross-validation, re-scoring, reports."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from helpers import (
    SHARED_DATA,
    TEST_FOLDERS,
    demo_config,
    require_shared_data,
    shared_test_media,
)
from vavl.checkpoint import load_checkpoint
from vavl.cli import main
from vavl.config_files import apply_overrides
from vavl.demo import demo_config as mixed_demo_config
from vavl.experiment import evaluate_run, run_experiment

pytestmark = pytest.mark.slow  # trains or runs whole commands (make test-min skips)


def test_mixed_real_set_reports_all_three_paths(
    shared_store: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    config = mixed_demo_config(tmp_path, require_shared_data())
    config = apply_overrides(
        config, [f"data.store={shared_store[0]}", "training.progress=false", "training.epochs=10"]
    )
    result = run_experiment(config, tmp_path / "run", progress=False)
    assert set(result.test) == {"audio", "visual", "audiovisual"}
    # Test speakers: CREMA-D 1002 (6 audio), RAVDESS 07-08 (12 audio), MEAD M030 (7 video, 1 pair).
    assert result.test["audio"]["n"] == 6 + 12 + 1 and result.test["visual"]["n"] == 7
    assert result.test["audiovisual"]["n"] == 1  # M030's uncropped clip is the only test pair
    report = (tmp_path / "run" / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 5  # curves, 3 confusion matrices, F1 bars
    counts = re.findall(
        r"<tr><td>train</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td>", report
    )
    _, audio, visual, both = map(int, counts[0])
    assert audio > both and visual > both and both == 6  # audio-only, video-only and pairs
    with open(tmp_path / "run" / "predictions" / "test.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["path"] for row in rows} == {"audio", "visual", "audiovisual"}
    assert {row["corpus"] for row in rows} == {"crema-d", "ravdess", "mead"}
    assert all(
        abs(sum(float(v) for k, v in row.items() if k.startswith("p_")) - 1) < 1e-3 for row in rows
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    again = evaluate_run(tmp_path / "run", progress=False)  # re-scored from the directory alone
    assert again.test == metrics["test"] == result.test
    assert "of 10 (lowest development loss)" in (tmp_path / "run" / "report.html").read_text()
    assert metrics["extractors"]["audio"]["id"] == "whisper-base"


def _synthetic_cv_config(path: Path, *overrides: str) -> Path:
    config = demo_config(
        "model.model_dim=32", "model.heads=2", "model.audio_blocks=1", "model.visual_blocks=1",
        "model.head_hidden=[32, 16]", "training.epochs=2", "training.batch_size=8",
        "training.checkpoint_every=2", "data.n_train=96", "data.n_dev=48", "data.n_test=48",
        "data.folds=4", *overrides,
    )  # fmt: skip
    path.write_text(yaml.safe_dump(config.to_dict()))
    return path


def test_cross_validation_of_ensembles_killed_in_fold_3_resumes_its_second_member(
    tmp_path: Path,
) -> None:
    """Each fold an ensemble of two members; killed while fold 3's second member trains, the
    rerun keeps folds 1 and 2 and fold 3's first member, and resumes the second mid-epoch."""
    config = _synthetic_cv_config(tmp_path / "cv.yaml", "data.folds=3", "training.ensemble=2")
    run_dir = tmp_path / "cv"
    command = [
        sys.executable,
        "-m",
        "vavl.cli",
        "cv",
        str(config),
        "--run-dir",
        str(run_dir),
        "--quiet",
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    second = run_dir / "fold-3" / "member-2"
    while not (second / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "cross-validation finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / "fold-3" / "metrics.json").exists()
    kept = [run_dir / f"fold-{k}" / "metrics.json" for k in (1, 2)]
    kept.append(run_dir / "fold-3" / "member-1" / "best.pt")
    finished = {path: path.stat().st_mtime_ns for path in kept}
    resumed = subprocess.run(command, env=environment, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "fold 1/3: finished earlier with the same config, kept" in resumed.stderr
    assert "fold 2/3: finished earlier with the same config, kept" in resumed.stderr
    assert "ensemble member 1 of 2: finished earlier, kept" in resumed.stderr
    assert re.search(r"resuming .*fold-3/member-2 at epoch 1, step [1-9]", resumed.stderr)
    assert {path: path.stat().st_mtime_ns for path in kept} == finished
    for fold in (1, 2, 3):  # each fold's model is its two members together
        assert load_checkpoint(run_dir / f"fold-{fold}" / "best.pt").config.training.ensemble == 2
    summary = json.loads((run_dir / "cv.json").read_text())
    assert summary["folds"] == 3
    f1 = summary["table"]["audiovisual"]["f1_macro"]
    assert len(f1["folds"]) == 3 and f1["mean"] == pytest.approx(sum(f1["folds"]) / 3)
    table = (run_dir / "cv.md").read_text()
    assert table.startswith("| path | F1-macro | F1-micro | precision | recall |")
    assert all(f"| {title} |" in table for title in ("audio only", "visual only", "audio-visual"))
    assert "±" in resumed.stdout and (run_dir / "report.html").is_file()


def test_cli_train_evaluate_and_fold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _synthetic_cv_config(tmp_path / "cv.yaml")
    run_dir = tmp_path / "run"
    assert main(["train", str(config), "--run-dir", str(run_dir), "--fold", "2", "--quiet"]) == 0
    trained = capsys.readouterr().out
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["fold"] == 2
    assert main(["evaluate", str(run_dir), "--quiet"]) == 0
    table = lambda text: text[text.index("path") : text.index("Run directory")]  # noqa: E731
    assert table(capsys.readouterr().out) == table(trained)
    assert (
        main(["train", str(config), "--run-dir", str(tmp_path / "x"), "--fold", "9", "--quiet"])
        == 2
    )
    assert "fold 9 does not exist (folds: 1 to 4)" in capsys.readouterr().err


def test_regression_through_a_manifest(tmp_path: Path) -> None:
    data = require_shared_data() / "ravdess-audio-samples"
    arousal = {
        "01": 0.1,
        "02": 0.2,
        "03": 0.8,
        "04": 0.3,
        "05": 0.9,
        "06": 0.8,
        "07": 0.6,
        "08": 0.9,
    }
    lines = ["path,speaker,arousal,valence"]
    for wav in sorted(data.glob("Actor_0*/*.wav")):
        emotion, actor = wav.stem.split("-")[2], wav.stem.split("-")[6]
        valence = 0.9 if emotion == "03" else 0.2 if emotion in ("04", "05", "06", "07") else 0.5
        lines.append(f"{wav.relative_to(data)},{actor},{arousal[emotion]},{valence}")
    own_manifest = (data / "manifest.csv").read_bytes()
    manifest = tmp_path / "attributes.csv"
    manifest.write_text("\n".join(lines).replace("Actor_", str(data / "Actor_")) + "\n")
    corpora = f"[{{format: manifest, root: {manifest}, modalities: [audio]}}]"
    config = apply_overrides(
        demo_config(),
        [
            "task.kind=regression", "task.labels=[arousal, valence]", "model.audio_dim=80",
            "features.audio=logmel", "training.epochs=3",
            f"data={{source: corpora, store: {tmp_path / 'store'}, corpora: {corpora}, "
            "split: {folds: 4}}",
        ],
    )  # fmt: skip
    result = run_experiment(config, tmp_path / "run", progress=False)
    assert (data / "manifest.csv").read_bytes() == own_manifest  # the corpus's own, untouched
    assert set(result.test) == {"audio"}
    scores = result.test["audio"]["per_attribute"]
    assert set(scores) == {"arousal", "valence"}
    # The reported CCC is the textbook one (numpy) of the saved test predictions.
    with (tmp_path / "run" / "predictions" / "test.csv").open() as file:
        saved = list(csv.DictReader(file))
    assert len(saved) == result.test["audio"]["n"] > 0
    targets = np.array([row["target"].split() for row in saved], dtype=float)
    outputs = np.array([row["prediction"].split() for row in saved], dtype=float)
    for column, attribute in enumerate(("arousal", "valence")):
        truth, guess = targets[:, column], outputs[:, column]
        covariance = np.mean((truth - truth.mean()) * (guess - guess.mean()))
        ccc = 2 * covariance / (truth.var() + guess.var() + (truth.mean() - guess.mean()) ** 2)
        assert scores[attribute]["ccc"] == pytest.approx(ccc, abs=1e-3)
    # Three epochs order unseen speakers' arousal (loud anger above calm speech); a constant,
    # or a model that ignores the audio, has no correlation.
    assert scores["arousal"]["pearson"] > 0.5
    report = (tmp_path / "run" / "report.html").read_text()
    assert (
        "CCC arousal" in report and report.count("data:image/png;base64,") == 2
    )  # curves, scatter


def test_every_shared_test_folder_is_found_with_its_media() -> None:
    """The tests' real clips are where the helpers look (a moved folder fails here, by name,
    rather than as an empty parametrisation elsewhere)."""
    require_shared_data()
    media = shared_test_media()
    for folder in TEST_FOLDERS:
        assert any(SHARED_DATA / folder in path.parents for path in media), folder
