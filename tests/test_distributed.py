"""torch.distributed: 2 gloo processes on the CPU match one process; their runs resume alone;
sharded extraction matches one process file for file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from helpers import demo_config, shared_test_media
from vavl.cli import main
from vavl.config_files import save_config
from vavl.distributed import backend_for
from vavl.features.extraction_report import REPORT_FIELDS
from vavl.sampling import BucketBatchSampler
from vavl.synthetic import synthetic_corpus_overrides, write_synthetic_corpus

pytestmark = pytest.mark.slow  # trains or runs whole commands (make test-min skips)

TESTS = Path(__file__).parent
TIMEOUT_S = 300


def torchrun(*arguments: str, processes: int = 2) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node N ...``, one thread per process, with a timeout."""
    environment = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={processes}", *arguments]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=TIMEOUT_S, env=environment
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("method", ["vavl", "auxformer"])
def test_two_processes_on_half_batches_step_like_one_on_the_whole(
    method: str, tmp_path: Path
) -> None:
    script = str(TESTS / "distributed_step.py")
    alone, together = tmp_path / "alone.pt", tmp_path / "together.pt"
    single = subprocess.run(
        [sys.executable, script, str(alone), method], capture_output=True, text=True,
        timeout=TIMEOUT_S, env=os.environ | {"PYTHONPATH": str(TESTS)},
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    torchrun(script, str(together), method)
    expected, got = torch.load(alone), torch.load(together)
    # Every tensor that crossed processes lived on the model's device (NCCL takes no other).
    assert got["collective_devices"] and set(got["collective_devices"]) == {got["model_device"]}
    assert expected["collective_devices"] == []  # one process: nothing crosses
    # The gradients each optimizer stepped with are the whole batch's.
    assert expected["gradients"].keys() == got["gradients"].keys()
    # Elements whose gradient is zero up to rounding (a bias before batch norm, a key bias under
    # softmax) are left out of the weights' comparison: Adam scales that noise up to a full step.
    meaningful: dict[str, torch.Tensor] = {}
    for step, gradients in expected["gradients"].items():
        assert gradients.keys() == got["gradients"][step].keys(), step
        for name, gradient in gradients.items():
            torch.testing.assert_close(got["gradients"][step][name], gradient, rtol=1e-4, atol=1e-6)
            large = gradient.abs() > 1e-6
            meaningful[name] = meaningful.get(name, large) & large
    weights = expected["weights"]
    assert weights.keys() == got["weights"].keys()
    compared = sum(int(m.sum()) for m in meaningful.values())
    assert compared > 0.8 * sum(weights[n].numel() for n in meaningful)
    worst = max(
        float((weights[n] - got["weights"][n])[m].abs().max())
        for n, m in meaningful.items()
        if m.any()
    )
    assert worst < 1e-5, worst


def test_each_process_takes_its_share_of_the_same_batches() -> None:
    lengths = list(range(37))
    whole = BucketBatchSampler(lengths, 8, seed=3)
    shares = [BucketBatchSampler(lengths, 8, seed=3, rank=r, world_size=3) for r in range(3)]
    for epoch in (0, 1):
        for sampler in (whole, *shares):
            sampler.set_epoch(epoch, start_batch=1)
        batches = list(whole)
        for index, batch in enumerate(batches):
            parts = [list(share)[index] for share in shares]
            assert sorted(i for part in parts for i in part) == sorted(batch)
            assert parts[0] == batch[0::3]


def test_a_two_process_run_resumes_in_one_process(tmp_path: Path) -> None:
    """On a corpus whose features stay in the store: the main process checks the store, the
    other waits, and each reads its share of every batch."""
    write_synthetic_corpus(tmp_path / "corpus", 80, seconds=(1.0, 3.0))
    config = demo_config(
        "model.model_dim=32", "model.heads=2", "model.audio_blocks=1", "model.visual_blocks=1",
        "model.head_hidden=[32]", "training.epochs=1", "training.batch_size=8",
        *synthetic_corpus_overrides(tmp_path / "corpus"),
    )  # fmt: skip
    config_file, run = tmp_path / "small.yaml", tmp_path / "run"
    save_config(config, config_file)
    torchrun("-m", "vavl.cli", "train", str(config_file), "--run-dir", str(run), "--quiet")
    first = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in first] == [1]
    assert not list(run.glob("*.tmp"))
    assert main(["train", str(config_file), "--run-dir", str(run), "--quiet",
                 "--set", "training.epochs=2"]) == 0  # fmt: skip
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[0] == first[0]  # the first epoch is the two processes' record
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["audio"]["n"] > 0


def test_cross_validation_under_torchrun(tmp_path: Path) -> None:
    config = demo_config(
        "model.model_dim=32", "model.heads=2", "model.audio_blocks=1", "model.visual_blocks=1",
        "model.head_hidden=[32]", "data.n_train=48", "data.n_dev=16", "data.n_test=16",
        "data.folds=3", "training.epochs=1", "training.batch_size=8",
    )  # fmt: skip
    config_file, run = tmp_path / "cv.yaml", tmp_path / "cv"
    save_config(config, config_file)
    torchrun("-m", "vavl.cli", "cv", str(config_file), "--run-dir", str(run), "--quiet")
    summary = json.loads((run / "cv.json").read_text())
    assert summary["folds"] == 3
    for fold in (1, 2, 3):  # the main process wrote each fold's run once, whole
        assert json.loads((run / f"fold-{fold}" / "history.json").read_text())[0]["epoch"] == 1
    assert not list(run.rglob("*.tmp")) and (run / "report.html").is_file()


def _entries(store: Path) -> dict[str, Any]:
    found = {}
    for path in sorted((store / "features").rglob("*.npz")):
        with np.load(path) as arrays:
            found[str(path.relative_to(store))] = {k: arrays[k] for k in arrays.files}
    return found


@pytest.mark.parametrize("launcher", ["--shard", "torchrun"])
def test_two_shards_extract_what_one_process_does(
    launcher: str, shared_store: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    store, every_row = shared_store
    # Every fifth file (audio-only, video with and without sound, stills): the sharding logic is
    # the same for any number of files, and the whole set was extracted once already.
    media = shared_test_media()[::5]
    wanted = {str(path.absolute()) for path in media}
    rows = [row for row in every_row if row["path"] in wanted]
    manifest = tmp_path / "media.csv"
    manifest.write_text("path\n" + "".join(f"{path.absolute()}\n" for path in media))
    sharded = tmp_path / "sharded"
    extract = ["-m", "vavl.cli", "extract", str(manifest), "--out", str(sharded), "--quiet"]
    if launcher == "torchrun":  # each process takes the shard of its rank
        torchrun(*extract)
    else:
        environment = os.environ | {"OMP_NUM_THREADS": "1"}
        shards = [
            subprocess.Popen(
                [sys.executable, *extract, "--shard", f"{index}/2"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=environment,
            )
            for index in (1, 2)
        ]
        for shard in shards:
            _, error = shard.communicate(timeout=TIMEOUT_S)
            assert shard.returncode == 0, error[-2000:]
    merged = json.loads((sharded / "report.json").read_text())["files"]
    assert [r["path"] for r in merged] == [str(p.absolute()) for p in media]
    assert [r["path"] for r in merged] == [r["path"] for r in rows]
    for one, two in zip(rows, merged, strict=True):
        for field in REPORT_FIELDS:
            if field != "compute_s":  # timings differ; everything else is the same
                assert str(one[field]) == str(two[field]), (one["path"], field)
    together = _entries(sharded)
    alone = {name: arrays for name, arrays in _entries(store).items() if name in together}
    assert alone.keys() == together.keys() and alone
    for name, arrays in alone.items():
        for key, values in arrays.items():
            np.testing.assert_array_equal(values, together[name][key], err_msg=f"{name} {key}")


def test_the_configured_device_chooses_the_backend() -> None:
    assert backend_for("cpu") == "gloo"
    # On CUDA, nccl carries the GPU tensors and gloo what stays on the CPU (objects, counts).
    assert backend_for("cuda") == backend_for("cuda:1") == "cuda:nccl,cpu:gloo"
