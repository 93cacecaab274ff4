"""Which device computes: the one place that turns ``auto``, ``cpu``, ``cuda:N`` or ``mps``
into a torch device (the predictor, the server and the trainer all ask here)."""

from __future__ import annotations

import re

import torch

from vavl.errors import ConfigError

DEVICE_NAMES = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(name: str) -> str:
    """``name`` if it names a device vavl can use (auto, cpu, cuda, cuda:N, mps)."""
    if not DEVICE_NAMES.match(name):
        raise ConfigError(f"device '{name}' is not one of auto, cpu, cuda, cuda:N, mps")
    return name


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, then Apple's MPS, then the CPU; a device named that this
    machine lacks is a one-line error, before anything is allocated."""
    check_device_name(name)
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            having = f"{count} CUDA device(s)" if count else "no CUDA device"
            raise ConfigError(f"device '{name}' was asked for, but this machine has {having}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' was asked for, but this machine has no Apple GPU")
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def compile_model(model: torch.nn.Module) -> None:
    """``torch.compile`` each top-level part of ``model`` in place: the state dict keeps its
    keys (checkpoints stay interchangeable), and shapes are dynamic (clips differ in length)."""
    for child in model.children():
        child.compile(dynamic=True)


# Bytes per parameter while training: float32 weights, gradients and Adam's two moments.
TRAINING_BYTES_PER_PARAMETER = 16


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux's MemAvailable; None elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_trainable(parameters: int, device: torch.device) -> None:
    """Refuse, before anything is allocated, a model whose weights, gradients and optimizer
    states alone would not fit in this machine's memory (GPU memory: the CUDA device's)."""
    needed = parameters * TRAINING_BYTES_PER_PARAMETER
    if device.type == "cuda":
        having: int | None = torch.cuda.get_device_properties(device).total_memory
    else:
        having = available_memory()
    if having is not None and needed > having:
        raise ConfigError(
            f"the model has {parameters / 1e6:,.0f} M parameters: training it needs "
            f"{needed / 2**30:.1f} GiB for weights, gradients and Adam's states alone, but "
            f"{device.type} has {having / 2**30:.1f} GiB; choose smaller model sizes"
        )
