"""Several processes, one job: torch.distributed as launched by ``torchrun``.

``torchrun --nproc_per_node N`` (and ``--nnodes``) sets RANK, WORLD_SIZE and LOCAL_RANK; with
more than one process, :func:`initialize` joins the process group (gloo on CPU, nccl on CUDA)
with a timeout, so that a lost rank fails the job instead of hanging it. Without those variables
everything here is a no-op and vavl runs as one process.

Helpers: :func:`main_first` (the main process does a step first, e.g. data preparation that
extracts missing features, then the others find it done), :func:`barrier`,
:func:`all_reduce_sum` and :func:`all_gather_objects`.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from vavl.errors import VavlError

logger = logging.getLogger("vavl")

DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Environment:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int] | None:
        """This process's share of a job split across ``world_size`` processes."""
        return (self.rank, self.world_size) if self.world_size > 1 else None


def environment() -> Environment:
    """Rank and size from torchrun's variables (one process when they are absent)."""
    try:
        return Environment(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )
    except ValueError as error:
        raise VavlError(f"torchrun's RANK/WORLD_SIZE/LOCAL_RANK are not numbers: {error}") from None


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def initialize(device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> Environment:
    """Join the process group when launched by torchrun with several processes."""
    env = environment()
    if env.world_size <= 1 or active():
        return env
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(
        backend="nccl" if use_cuda else "gloo",
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    logger.debug("rank %d of %d joined the process group", env.rank, env.world_size)
    return env


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """The main process runs the block first; the others run it after it finished."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The sum over processes (in place; returned for convenience)."""
    if active():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_objects(value: Any) -> list[Any]:
    """Every process's ``value``, in rank order."""
    if not active():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


class _SumOverProcesses(torch.autograd.Function):
    """y = the sum of x over processes; every process's x gets the sum of the gradients of y."""

    @staticmethod
    def forward(ctx: Any, values: torch.Tensor) -> torch.Tensor:
        total = values.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx: Any, gradient: torch.Tensor) -> torch.Tensor:
        total = gradient.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total


def differentiable_sum(values: torch.Tensor) -> torch.Tensor:
    """The sum over processes, with gradients flowing back to every process's ``values``."""
    if not active():
        return values
    result: torch.Tensor = _SumOverProcesses.apply(values)
    return result
