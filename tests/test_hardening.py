"""Each defect a reliability probe found, pinned: runs that must not be overwritten or mixed,
files that must get a row, signals and kills that must leave no process and no half file."""

from __future__ import annotations

import builtins
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from helpers import demo_config, require_shared_data, write_media
from vavl.checkpoint import load_checkpoint
from vavl.cli import main
from vavl.config_files import load_config
from vavl.errors import CheckpointError, ConfigError
from vavl.experiment import run_cv, run_experiment
from vavl.features.extraction import ExtractionSettings, ExtractorSpec, run_extraction
from vavl.features.store import FeatureStore
from vavl.files import sha256_file
from vavl.preparation import prepare
from vavl.training import Trainer

SMALL = ("data.n_train=48", "data.n_dev=24", "data.n_test=24", "training.epochs=1")


@pytest.mark.slow
def test_cv_refuses_a_finished_fold_of_another_config(tmp_path: Path) -> None:
    config = demo_config(*SMALL, "data.folds=3")
    run_cv(config, tmp_path, progress=False)
    (tmp_path / "fold-3" / "last.pt").unlink()
    changed = demo_config(*SMALL, "data.folds=3", "training.learning_rate=0.01")
    with pytest.raises(ConfigError, match=r"fold-1: holds a run with a different config "):
        run_cv(changed, tmp_path, progress=False)
    # The same list of changed fields as `vavl train` gives.
    with pytest.raises(ConfigError, match=r"\(training\.learning_rate\)"):
        run_cv(changed, tmp_path, progress=False)
    summary = run_cv(changed, tmp_path, progress=False, force=True)
    assert summary["config"]["training"]["learning_rate"] == 0.01
    for fold in (1, 2, 3):
        saved = load_config(tmp_path / f"fold-{fold}" / "config.yaml")
        assert saved.training.learning_rate == 0.01


def test_a_finished_run_without_last_pt_is_not_overwritten_by_another_config(
    tmp_path: Path,
) -> None:
    run_experiment(demo_config(*SMALL), tmp_path, progress=False)
    (tmp_path / "last.pt").unlink()
    (tmp_path / "last.previous.pt").unlink(missing_ok=True)
    best, metrics = (tmp_path / "best.pt").read_bytes(), (tmp_path / "metrics.json").read_text()
    other = demo_config(*SMALL, "training.seed=7")
    with pytest.raises(ConfigError, match=r"different config \(training\.seed\).*--force"):
        run_experiment(other, tmp_path, progress=False)
    assert (tmp_path / "best.pt").read_bytes() == best
    assert (tmp_path / "metrics.json").read_text() == metrics
    run_experiment(other, tmp_path, progress=False, force=True)
    assert load_checkpoint(tmp_path / "best.pt").config.training.seed == 7


def test_fewer_epochs_than_a_run_trained_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    run_experiment(demo_config(*SMALL[:3], "training.epochs=2"), tmp_path, progress=False)
    saved = {n: (tmp_path / n).read_text() for n in ("config.yaml", "metrics.json")}
    with pytest.raises(ConfigError, match="has trained 2 epochs already, more than the 1"):
        run_experiment(demo_config(*SMALL), tmp_path, progress=False)
    assert {n: (tmp_path / n).read_text() for n in saved} == saved


def test_a_damaged_last_checkpoint_resumes_from_the_one_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = demo_config(*SMALL[:3], "training.epochs=2")
    splits = prepare(config).split(1)
    first = config.model_copy(update={"training": config.training.model_copy(update={"epochs": 1})})
    Trainer(first, splits["train"], splits["dev"], tmp_path).fit()
    Trainer(first, splits["train"], splits["dev"], tmp_path).fit()  # finished: writes nothing new
    (tmp_path / "last.pt").write_bytes(b"half a checkpoint")
    assert not (tmp_path / "last.previous.pt").exists()
    with pytest.raises(CheckpointError, match=r"no earlier checkpoint to resume from.*--force"):
        Trainer(config, splits["train"], splits["dev"], tmp_path)
    # With two epochs written, last.pt has a predecessor to fall back on.
    run = tmp_path / "second"
    Trainer(config, splits["train"], splits["dev"], run).fit()
    assert (run / "last.previous.pt").is_file()
    (run / "last.pt").write_bytes(b"half a checkpoint")
    with caplog.at_level("WARNING", logger="vavl"):
        trainer = Trainer(config, splits["train"], splits["dev"], run)
    assert "resuming from last.previous.pt instead" in caplog.text
    assert trainer.state.epoch == 1  # the state after the first epoch: one more to go


def test_numbers_in_configs_are_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bools.yaml"
    path.write_text(yaml.safe_dump({"training": {"epochs": True}}))
    assert main(["config", str(path)]) == 2
    assert "training: epochs takes a number or a name, not true" in capsys.readouterr().err


def test_yaml_mistakes_say_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("training:\n  epochs: 3\n  betas: [0.9, 0.99\nmodel: {}\n")
    assert main(["config", str(path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"vavl: error: {path}:4:6: not valid YAML: ") and "\n" not in error
    assert main(["config", "demo-synthetic", "--set", "training.betas=[0.9,"]) == 2
    error = capsys.readouterr().err.strip()
    assert "override 'training.betas=[0.9,': the value is not valid YAML at character" in error
    assert main(["extract", str(path), "--out", str(tmp_path), "--audio-option", "a={b"]) == 2
    assert "--audio-option a={b: the value is not valid YAML" in capsys.readouterr().err


def test_outputs_are_checked_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import vavl.predict

    def no_model(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(vavl.predict.Predictor, "load", no_model)
    clip = require_shared_data() / "crema-d-samples/AudioMP3/1002_DFA_ANG_XX.mp3"
    assert main(["predict", str(clip), "--out", str(tmp_path)]) == 2
    assert "is a folder; name a file in it" in capsys.readouterr().err
    existing = tmp_path / "a-file"
    existing.write_text("mine")
    assert main(["extract", str(clip), "--out", str(existing), "--quiet"]) == 2
    assert "is a file; a feature store is a folder" in capsys.readouterr().err
    assert existing.read_text() == "mine"


def test_nothing_to_predict_from_is_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    silent = write_media(tmp_path / "quiet.mp4", audio=np.zeros(3 * 16_000, np.float32))
    assert main(["predict", str(silent)]) == 1
    err = capsys.readouterr().err
    assert "0 of 1 files predicted; 1 had nothing to predict from: " in err
    assert "silent audio track" in err.splitlines()[-1]


def test_an_unreadable_file_is_one_failed_row_and_the_batch_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clips = require_shared_data() / "crema-d-samples/AudioMP3"
    locked = clips / "1002_DFA_SAD_XX.mp3"
    real_open = builtins.open

    def guarded(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file) == str(locked):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    store = tmp_path / "store"
    args = ["--out", str(store), "--audio", "logmel", "--visual", "none", "--quiet"]
    assert main(["extract", str(clips), *args]) == 0
    report = json.loads((store / "report.json").read_text())["files"]
    rows = {Path(r["path"]).name: r for r in report}
    assert rows[locked.name]["status"] == "failed"
    assert rows[locked.name]["error"] == "cannot be read (Permission denied)"
    assert sum(r["status"] == "extracted" for r in report) == 5
    media = sorted(map(str, clips.glob("*.mp3")))
    assert main(["predict", *media, "--format", "json", "--out", str(tmp_path / "p.json")]) == 0
    assert "5 of 6 files predicted; 1 failed" in capsys.readouterr().err


def test_names_that_are_not_utf8_work_end_to_end(tmp_path: Path) -> None:
    folder = tmp_path / os.fsdecode(b"d\xe9j\xe0")
    folder.mkdir()
    clip = folder / os.fsdecode(b"caf\xe9.mp3")
    clip.write_bytes(
        (require_shared_data() / "crema-d-samples/AudioMP3/1002_DFA_HAP_XX.mp3").read_bytes()
    )
    store = tmp_path / "store"
    args = ["--out", str(store), "--audio", "logmel", "--visual", "none", "--quiet"]
    assert main(["extract", str(folder), *args]) == 0
    assert main(["extract", str(folder), *args]) == 0  # again: cached, the report rewritten
    # Reports are valid UTF-8: the name's byte that is not is written as an escape.
    report = (store / "report.csv").read_text(encoding="utf-8")
    assert "d\\xe9j\\xe0/caf\\xe9.mp3" in report and ",cached," in report
    json.loads((store / "report.json").read_text(encoding="utf-8"))
    assert main(["predict", str(clip), "--format", "csv", "--out", str(tmp_path / "p.csv")]) == 0
    assert "caf\\xe9.mp3" in (tmp_path / "p.csv").read_text(encoding="utf-8")


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in map(int, children):
            found |= {child, *_children(child)}
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGKILL])
def test_extract_workers_die_with_their_parent(tmp_path: Path, sent: signal.Signals) -> None:
    source = require_shared_data() / "ravdess-speech-16k"
    store = tmp_path / "store"
    command = [sys.executable, "-m", "vavl.cli", "extract", str(source), "--out", str(store),
               "--visual", "none", "--workers", "2", "--quiet"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((store / "features").rglob("*.npz")):
        time.sleep(0.2)
    children = _children(process.pid)
    assert len(children) >= 2, "the workers did not start"
    process.send_signal(sent)
    _, err = process.communicate(timeout=60)
    gone = time.monotonic() + 20
    while time.monotonic() < gone and any(_alive(child) for child in children):
        time.sleep(0.2)
    assert not [child for child in children if _alive(child)]
    if sent == signal.SIGTERM:
        assert process.returncode == 130 and "interrupted" in err
        report = json.loads((store / "report.json").read_text())["files"]
        assert len(report) == 480 and any(r["status"] == "not done" for r in report)


def test_the_store_removes_what_killed_writers_left(tmp_path: Path) -> None:
    clip = require_shared_data() / "crema-d-samples/AudioMP3/1002_DFA_ANG_XX.mp3"
    store = FeatureStore(tmp_path)
    folder = tmp_path / "features" / "logmel-x" / "ab"
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    stale = folder / f".abc.npz.{dead}.tmp"
    stale.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    busy = folder / f".def.npz.{sleeper.pid}.tmp"  # a writer still at work: not ours to delete
    busy.write_bytes(b"half")
    os.utime(busy, (old, old))
    mine = folder / "notes.tmp"  # not the pattern: a user's file
    mine.write_text("keep")
    try:
        settings = ExtractionSettings(audio=ExtractorSpec("logmel"), visual=None)
        run_extraction([clip], store.root, settings, progress=False)
        assert not stale.exists() and busy.exists() and mine.exists()
    finally:
        sleeper.kill()


def test_an_entry_redone_alone_describes_only_itself(tmp_path: Path) -> None:
    clip = require_shared_data() / "crema-d-samples/VideoFlash/1001_DFA_ANG_XX.flv"
    settings = ExtractionSettings(audio=ExtractorSpec("logmel"))
    run_extraction([clip], tmp_path, settings, progress=False)
    audio_entry = next((tmp_path / "features").glob("logmel-*/*/*.npz"))
    audio_entry.write_bytes(b"damaged")
    again = run_extraction([clip], tmp_path, settings, progress=False)
    row = again.rows[0]
    assert row["notes"] == "damaged audio entry recomputed"
    assert row["video_frames_sampled"] > 0 and row["frames_with_face"] > 0
    store = FeatureStore(tmp_path)
    key = audio_entry.parent.parent.name
    record = store.load(key, sha256_file(clip)).record  # type: ignore[union-attr]
    assert record.frames_sampled is None and record.audio_seconds > 1  # type: ignore[operator]


@pytest.mark.slow
def test_a_second_writer_of_a_run_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two `vavl train` on one run directory: the second is refused with the first's PID (it
    used to run to the end, and a changed learning rate overwrote the other's model)."""
    run = tmp_path / "run"
    command = ["-m", "vavl.cli", "train", "demo-synthetic", "--run-dir", str(run)]
    first = subprocess.Popen(
        [sys.executable, *command, "--set", "training.epochs=200", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (run / "config.yaml").exists():  # written once the run holds its directory
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        second = ["train", "demo-synthetic", "--run-dir", str(run), "--quiet"]
        assert main([*second, "--set", "training.learning_rate=0.01"]) == 2
        said = capsys.readouterr().err
        assert f"{run}: in use by another vavl process (PID {first.pid})" in said
        assert main(["evaluate", str(run)]) == 2  # scoring writes there too
    finally:
        first.kill()
        first.wait()
    # The kernel freed the lock with its holder, however it ended: the run goes on.
    assert main([*second, "--set", "training.epochs=1", "--force"]) == 0


def test_command_line_mistakes_get_one_line_from_the_command_they_concern(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each was a traceback, the top-level usage or a misleading line."""
    cases = {
        ("serve", "--port", "99999"): "argument --port: a port is 0 to 65535, not 99999",
        ("serve", "--timeout", "0"): "argument --timeout: must be more than 0 seconds",
        ("serve", "--max-upload-mb", "-1"): "argument --max-upload-mb: must be more than 0 MiB",
        ("serve", "--max-connections", "0"): "argument --max-connections: must be 1 or more",
        ("predict", "x.wav", "--formt", "json"): "vavl predict: error: unrecognized arguments: "
        "--formt json (did you mean --format?)",
    }
    for arguments, said in cases.items():
        with pytest.raises(SystemExit) as exit_:
            main(list(arguments))
        assert exit_.value.code == 2 and said in capsys.readouterr().err, arguments
    run_like = tmp_path / "not-a-run"
    run_like.mkdir()
    assert main(["evaluate", str(run_like)]) == 2
    assert f"{run_like}: not a finished vavl run (no config.yaml or best.pt)" in (
        capsys.readouterr().err
    )
    assert main(["demo", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert f"{tmp_path / 'nowhere'}: folder not found" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nosuchfile.mp4")]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "nosuchfile.mp4: file not found" in captured.err


def test_sizes_devices_and_depth_are_checked_before_anything_is_allocated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "huge"
    huge = ["train", "demo-synthetic", "--run-dir", str(run), "--set", "model.model_dim=16384"]
    assert main(huge) == 2
    assert "M parameters: training it needs" in capsys.readouterr().err
    assert not run.exists()  # no empty run directory left behind
    assert main(["config", "demo-synthetic", "--set", "training.device=tpu9"]) == 2
    assert "training.device: must be auto, cpu, cuda, cuda:N or mps, not 'tpu9'" in (
        capsys.readouterr().err
    )
    clip = require_shared_data() / "crema-d-samples/AudioMP3/1002_DFA_SAD_XX.mp3"
    if not torch.cuda.is_available():
        assert main(["predict", str(clip), "--device", "cuda"]) == 2
        assert "device 'cuda' was asked for, but this machine has no CUDA device" in (
            capsys.readouterr().err
        )
    assert main(["predict", str(clip), "--device", "nosuch"]) == 2
    assert "device 'nosuch' is not one of auto, cpu, cuda, cuda:N, mps" in capsys.readouterr().err
    deep = tmp_path / "deep.yaml"
    deep.write_text("model: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n")
    assert main(["config", str(deep)]) == 2
    assert f"{deep}: nested too deeply to be a config" in capsys.readouterr().err


def test_a_full_disk_is_one_line_naming_the_path_and_keeps_what_was_computed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk (ENOSPC, as root cannot be refused by permissions) while training, and
    while writing predictions: one line naming the file; predictions go to the screen."""
    import errno

    from vavl import checkpoint, files

    def full(path: Any, *args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpoint, "write_atomically", full)
    run = tmp_path / "run"
    assert main(["train", "demo-synthetic", "--run-dir", str(run), "--quiet"]) == 2
    said = capsys.readouterr().err
    assert "No space left on device" in said and f"{run}/" in said and "Traceback" not in said
    monkeypatch.setattr(files, "write_atomically", full)
    clip = require_shared_data() / "crema-d-samples/AudioMP3/1002_DFA_SAD_XX.mp3"
    out = tmp_path / "predictions.json"
    assert main(["predict", str(clip), "--format", "json", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"{out}: No space left on device; the predictions follow" in captured.err
    assert json.loads(captured.out)["predictions"][0]["source"] == str(clip)
    # A timeline that cannot be written is one line naming where it was going; the clip's
    # prediction is still shown.
    from vavl import timeline

    monkeypatch.setattr(timeline, "write_text_atomically", full)
    folder = tmp_path / "timelines"
    assert main(["predict", str(clip), "--timeline", "--timeline-dir", str(folder)]) == 0
    captured = capsys.readouterr()
    assert f"{folder}/" in captured.err and "No space left on device" in captured.err
    assert "1 of 1 files predicted; 1 timeline(s) not written" in captured.err
    assert "Traceback" not in captured.err and str(clip) in captured.out
