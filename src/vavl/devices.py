"""Which device computes: the one place that turns ``auto``, ``cpu``, ``cuda:N`` or ``mps``
into a torch device (the predictor, the server and the trainer all ask here)."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, then Apple's MPS, then the CPU."""
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
