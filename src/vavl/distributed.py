"""Several processes, one job: torch.distributed as launched by ``torchrun``.

``torchrun --nproc_per_node N`` (and ``--nnodes``) sets RANK, WORLD_SIZE and LOCAL_RANK; with
more than one process, :func:`initialize` joins the process group with a timeout, so that a lost
rank fails the job instead of hanging it: gloo on the CPU; on CUDA, nccl for CUDA tensors and
gloo for CPU ones (``cuda:nccl,cpu:gloo``). Without those variables everything here is a no-op
and vavl runs as one process.

This module is the one home of vavl's distributed arithmetic. Training under torch.distributed
is DDP's arithmetic done by hand (VAVL's steps train subsets of the parameters through shared
modules, which DDP's hooks do not see): each process takes a share of the same batch
(:func:`complete_batch` gives it every modality even when its share lacks one), weighs each
loss term by its share of the term's rows (:func:`row_totals`, :func:`row_share`), and the
gradients are summed (:func:`sum_gradients`); batch norm uses the statistics of the whole batch
(:func:`masked_moments`), and epoch losses are summed over processes (:func:`sum_named`). Every
tensor sent to another process lives on the device its caller computes on (the model's).

Also: :func:`main_first` (the main process does a step first, e.g. data preparation that
extracts missing features, then the others find it done), :func:`barrier`,
:func:`all_reduce_sum`, :func:`all_gather_objects` and :func:`differentiable_sum`.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor

from vavl.devices import resolve_device
from vavl.errors import VavlError
from vavl.types import MODALITIES

if TYPE_CHECKING:  # only for annotations: `vavl` imports this module before any command runs
    from vavl.config import ExperimentConfig
    from vavl.data import Batch

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


def backend_for(device: str) -> str:
    """The process group's backend for training on ``device`` (a config's ``training.device``):
    on CUDA, nccl carries CUDA tensors and gloo the CPU ones (objects, counts). A named device
    decides by its name alone; whether this machine has it is checked when it is used."""
    kind = resolve_device(device).type if device == "auto" else device.partition(":")[0]
    return "cuda:nccl,cpu:gloo" if kind == "cuda" else "gloo"


def initialize(device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> Environment:
    """Join the process group when launched by torchrun with several processes; ``device`` is
    the configured training device (each process takes the GPU of its local rank)."""
    env = environment()
    if env.world_size <= 1 or active():
        return env
    backend = backend_for(device)
    if "nccl" in backend:
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
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


def row_totals(*counts: int | Tensor, device: torch.device) -> list[int]:
    """Rows over all processes for each local count (the local counts in one process); the
    counts travel on ``device``, the one the caller computes on."""
    local = torch.tensor([int(c) for c in counts], dtype=torch.float64, device=device)
    return [int(v) for v in all_reduce_sum(local).tolist()]


def row_share(local: int, total: int) -> float:
    """The weight of a process's mean loss over its ``local`` rows of a term that has ``total``
    rows over all processes: summed over processes, the weighted gradients are the gradient of
    the mean over all rows (1 in one process)."""
    return local / total


def sum_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Each parameter's gradient summed over processes, in place (one collective, on the
    parameters' device). A parameter no process reached keeps no gradient, as in one process."""
    if not active() or not parameters:
        return
    reached = [p.grad is not None for p in parameters]
    flat = torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in parameters]
        + [torch.tensor(reached, dtype=parameters[0].dtype, device=parameters[0].device)]
    )
    all_reduce_sum(flat)
    offset = 0
    for parameter, anyone in zip(parameters, flat[-len(parameters) :].tolist(), strict=True):
        size = parameter.numel()
        grad = flat[offset : offset + size].view_as(parameter).clone()
        parameter.grad = grad if anyone > 0 else None
        offset += size


def masked_moments(values: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-channel mean and (biased) variance of ``values`` (batch, channels, time) over the
    frames where ``valid`` (batch, 1, time) is 1, over every process's share of the batch, with
    gradients flowing back to each process's values (as SyncBatchNorm); and the frame count."""
    count = all_reduce_sum(valid.sum().detach().clone())
    mean = differentiable_sum((values * valid).sum(dim=(0, 2))) / count
    squares = (((values - mean[None, :, None]) * valid) ** 2).sum(dim=(0, 2))
    return mean, differentiable_sum(squares) / count, count


def sum_named(
    sums: dict[str, float], counts: dict[str, int], device: torch.device
) -> tuple[dict[str, float], dict[str, int]]:
    """Named sums and counts (e.g. an epoch's training losses) summed over processes; a name
    only some processes have counts as zero in the others."""
    names = sorted({name for found in all_gather_objects(sums) for name in found})
    values = torch.tensor(
        [sums.get(n, 0.0) for n in names] + [float(counts.get(n, 0)) for n in names],
        dtype=torch.float64,
        device=device,
    )
    all_reduce_sum(values)
    totals = values.tolist()
    return (
        {n: float(v) for n, v in zip(names, totals[: len(names)], strict=True)},
        {n: int(v) for n, v in zip(names, totals[len(names) :], strict=True)},
    )


def complete_batch(batch: Batch, config: ExperimentConfig) -> Batch:
    """A process's share of a batch with every modality (zero frames where none of its clips has
    it) and a target even when empty, so that every process runs the same steps."""
    for modality in MODALITIES:
        if batch.modality(modality)[0] is None:
            empty = torch.zeros(len(batch), 1, config.model.dim(modality))
            batch.set_modality(modality, empty, torch.zeros(len(batch), 1, dtype=torch.bool))
    if batch.target is None:
        task = config.task
        if task.kind != "classification" or task.soft_labels:
            batch.target = torch.zeros(0, task.output_dim)
        else:
            batch.target = torch.zeros(0, dtype=torch.long)
    return batch
