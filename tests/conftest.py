from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import shared_test_media
from vavl.features.extraction import run_extraction


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """Every media file of the shared test folders extracted once with the defaults (2 workers)."""
    media = shared_test_media()
    store = tmp_path_factory.mktemp("store")
    report = run_extraction(media, store, workers=2, progress=False)
    return store, report.rows
