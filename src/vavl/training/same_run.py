"""Whether a run directory holds this very run: the config fields that change what a run
computes, and the ones that may change when it is resumed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vavl.config import ExperimentConfig
from vavl.errors import ConfigError

# Fields that may change when a run is resumed without changing what it computes.
RESUMABLE_OVERRIDES = {
    ("", "method"),  # only a name
    ("training", "device"),
    ("training", "progress"),
    ("training", "num_workers"),
    ("training", "epochs"),  # a finished run can be continued for more epochs
    ("data", "load"),  # where features wait (the same features either way)
    ("data", "verify"),  # how far the store is checked
    ("data", "workers"),
    ("prediction", "max_clip_seconds"),
}


def config_changes(saved: ExperimentConfig, current: ExperimentConfig) -> list[str]:
    """The fields whose change alters what a run computes (the number of epochs only counts
    under a learning-rate schedule, which spans them)."""
    changed = _differences(saved.to_dict(), current.to_dict())
    if current.training.lr_schedule != "constant" and (
        saved.training.epochs != current.training.epochs
    ):
        changed.append("training.epochs (the learning-rate schedule spans the epochs)")
    return changed


def check_same_run(run_dir: Path, saved: ExperimentConfig, current: ExperimentConfig) -> None:
    """Refuse to touch a run directory that holds a run made with another config."""
    changed = config_changes(saved, current)
    if changed:
        raise ConfigError(
            f"{run_dir}: holds a run with a different config ({', '.join(changed)}); use a new "
            "run directory, the same config, or --force to start over in this one"
        )


def _differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    changed = []
    for key in sorted(set(saved) | set(current)):
        before, after = saved.get(key), current.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            changed += _differences(before, after, f"{prefix}{key}.")
        elif before != after and (prefix.rstrip("."), key) not in RESUMABLE_OVERRIDES:
            changed.append(f"{prefix}{key}")
    return changed
