from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import shared_test_media
from vavl.features.extraction import run_extraction

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One pytest process per core: two torch threads each would only fight over the cores.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """Every media file of the shared test folders extracted once with the defaults (2 workers),
    once per test run: under pytest-xdist the first worker to ask extracts, the others wait for
    it and read what it wrote."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder all workers of this run share
    store, rows_file = root / "shared-store", root / "shared-store-rows.json"
    with open(root / "shared-store.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not rows_file.exists():
            report = run_extraction(shared_test_media(), store, workers=2, progress=False)
            rows_file.write_text(json.dumps(report.rows))
    return store, json.loads(rows_file.read_text())
