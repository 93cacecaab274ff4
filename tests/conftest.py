from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import require_shared_data
from vavl.features.extraction import media_inputs, run_extraction


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """Every media file of ../shared/data extracted once with the defaults (2 workers)."""
    data = require_shared_data()
    store = tmp_path_factory.mktemp("store")
    report = run_extraction(media_inputs(data), store, workers=2, progress=False)
    return store, report.rows
