"""Checkpoints hold what they promise, fail clearly when damaged, resume a killed run exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers import demo_config
from vavl.checkpoint import load_checkpoint, model_from_checkpoint
from vavl.cli import main
from vavl.errors import CheckpointError, ConfigError
from vavl.features.base import ExtractorDescription
from vavl.preparation import prepare
from vavl.synthetic import synthetic_corpus_overrides, write_synthetic_corpus
from vavl.training import Trainer

# Small enough to train in seconds; checkpoints every 2 of 12 steps per epoch.
RESUME_OVERRIDES = (
    "model.model_dim=32",
    "model.heads=2",
    "model.audio_blocks=1",
    "model.visual_blocks=1",
    "model.head_hidden=[32, 16]",
    "training.epochs=3",
    "training.batch_size=8",
    "training.checkpoint_every=2",
    "data.n_train=96",
    "data.n_dev=32",
    "data.n_test=32",
)


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run, trained once for the tests that only read it."""
    run = tmp_path_factory.mktemp("one-epoch")
    config = demo_config(*RESUME_OVERRIDES, "training.epochs=1")
    splits = prepare(config).split(1)
    Trainer(config, splits["train"], splits["dev"], run).fit()
    return run


def test_checkpoint_holds_everything_and_restores_the_model(tmp_path: Path) -> None:
    config = demo_config(*RESUME_OVERRIDES, "training.epochs=1")
    splits = prepare(config).split(1)
    named = {
        m: ExtractorDescription.from_saved(name) for m, name in (("audio", "a1"), ("visual", "v1"))
    }
    trainer = Trainer(config, splits["train"], splits["dev"], tmp_path, named)
    trainer.fit()
    last, best = load_checkpoint(tmp_path / "last.pt"), load_checkpoint(tmp_path / "best.pt")
    assert last.config == config and last.labels == config.task.labels
    assert last.extractors == named and named["audio"].key == "a1"
    assert set(last.normalizer.mean) == {"audio", "visual"}
    assert last.optimizer_states is not None
    assert set(last.optimizer_states["optimizers"]) == {"visual", "audio", "fusion"}
    assert last.trainer_state is not None and last.trainer_state["epoch"] == 1
    assert best.optimizer_states is None and len(best.history) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    model = model_from_checkpoint(best)
    inputs = {"audio": torch.randn(2, 20, 32), "visual": torch.randn(2, 15, 24)}
    with torch.no_grad():
        expected = trainer.model.eval()(**inputs).predictions["audiovisual"]
        assert torch.equal(model(**inputs).predictions["audiovisual"], expected)


def test_a_release_checkpoint_is_half_the_weights_and_predicts_the_same(
    one_epoch_run: Path, tmp_path: Path
) -> None:
    released = tmp_path / "release.pt"
    last = one_epoch_run / "last.pt"
    assert main(["export", "--model", str(last), "--release", str(released)]) == 0
    full, slim = load_checkpoint(last), load_checkpoint(released)
    assert slim.optimizer_states is None and slim.trainer_state is None
    assert {v.dtype for v in slim.model_state.values() if v.is_floating_point()} == {torch.float16}
    assert slim.config == full.config and slim.extractors == full.extractors
    weights = sum(v.numel() * v.element_size() for v in full.model_state.values())
    assert released.stat().st_size < (one_epoch_run / "best.pt").stat().st_size - weights / 3
    inputs = {"audio": torch.randn(2, 20, 32), "visual": torch.randn(2, 15, 24)}
    with torch.no_grad():
        expected = model_from_checkpoint(full)(**inputs).predictions
        got = model_from_checkpoint(slim)(**inputs).predictions
    for path, values in expected.items():
        assert got[path].dtype == torch.float32
        # Half-precision weights move these outputs by about 1e-4 (measured): a tenth of this.
        torch.testing.assert_close(got[path], values, atol=1e-3, rtol=0.0)


def test_damaged_checkpoints_fail_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.pt"
    contents = [b""] + [np.random.default_rng(seed).bytes(2000) for seed in range(200)]
    for content in contents:
        path.write_bytes(content)
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(path)
        assert "not a readable vavl checkpoint" in str(caught.value)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_truncated_and_foreign_checkpoints(one_epoch_run: Path, tmp_path: Path) -> None:
    data = (one_epoch_run / "best.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not a readable vavl checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    damaged = bytearray(data)
    damaged[len(data) // 3 : len(data) // 3 + 64] = bytes(64)  # zeroed bytes inside the archive
    (tmp_path / "damaged.pt").write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match=r"damaged\.pt: not a readable vavl checkpoint"):
        load_checkpoint(tmp_path / "damaged.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a vavl checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_resuming_with_a_different_config_is_refused(one_epoch_run: Path) -> None:
    changed = demo_config(*RESUME_OVERRIDES, "training.epochs=1", "training.learning_rate=0.1")
    splits = prepare(changed).split(1)
    with pytest.raises(ConfigError, match=r"different config \(training\.learning_rate\)"):
        Trainer(changed, splits["train"], splits["dev"], one_epoch_run)


def _train_command(config_path: Path, run_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vavl.cli",
        "train",
        str(config_path),
        "--run-dir",
        str(run_dir),
        "--quiet",
    ]


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_same_result(tmp_path: Path) -> None:
    """On a corpus whose features stay in the store, read batch by batch (the lazy path)."""
    write_synthetic_corpus(tmp_path / "corpus", 96, seconds=(1.0, 3.0))
    config = demo_config(*RESUME_OVERRIDES, *synthetic_corpus_overrides(tmp_path / "corpus"))
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config.to_dict()))
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}

    uninterrupted = tmp_path / "uninterrupted"
    subprocess.run(
        _train_command(config_path, uninterrupted), check=True, env=environment, capture_output=True
    )

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        _train_command(config_path, killed),
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (killed / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "training finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = load_checkpoint(killed / "last.pt").trainer_state
    # It stopped inside the first epoch, with more steps to do.
    assert state is not None and state["epoch"] == 0 and 0 < state["step_in_epoch"] < 12

    resumed = subprocess.run(
        _train_command(config_path, killed), env=environment, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr

    expected, actual = (
        load_checkpoint(uninterrupted / "best.pt"),
        load_checkpoint(killed / "best.pt"),
    )
    assert actual.history == expected.history
    for name, value in expected.model_state.items():
        assert torch.equal(actual.model_state[name], value), name
    assert (killed / "metrics.json").read_text() == (uninterrupted / "metrics.json").read_text()


def test_a_finished_run_continues_for_more_epochs(tmp_path: Path) -> None:
    one = demo_config(*RESUME_OVERRIDES, "training.epochs=1")
    splits = prepare(one).split(1)
    first = Trainer(one, splits["train"], splits["dev"], tmp_path).fit()
    two = demo_config(*RESUME_OVERRIDES, "training.epochs=2")
    continued = Trainer(two, splits["train"], splits["dev"], tmp_path).fit()
    assert len(continued.history) == 2 and continued.history[0] == first.history[0]
