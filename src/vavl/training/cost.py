"""What a training run costs, said as it starts: its steps, the model's size and device (with a
hint when a CPU is in for a long wait), then, after the first steps, the time a step takes, the
time left and the memory used so far."""

from __future__ import annotations

import logging
import resource
import time

import torch

logger = logging.getLogger("vavl")

ESTIMATE_AFTER_STEPS = 5  # steps timed before the run says how long it will take
CPU_SIZE = 5_000_000  # parameters beyond which a CPU is slow (the default model has 0.5 M)


class RunCost:
    """Announces a run's cost, then estimates its time from its first steps."""

    def __init__(self, model: torch.nn.Module, device: torch.device, steps_left: int) -> None:
        self.parameters = sum(p.numel() for p in model.parameters())
        self.device = device
        self.steps_left = steps_left
        self.steps = 0
        self.started = time.perf_counter()

    def announce(self, clips: int, steps_per_epoch: int, epochs: int) -> None:
        logger.info(
            "%d training clips: %d steps per epoch, %d epochs, %d steps to go; %.1f M "
            "parameters on %s",
            clips,
            steps_per_epoch,
            epochs,
            self.steps_left,
            self.parameters / 1e6,
            self.device,
        )
        if self.device.type == "cpu" and self.parameters > CPU_SIZE:
            logger.info(
                "a model this size is slow on a CPU (seconds a step); `--model vavl-small` trains "
                "the default model's size (0.5 M parameters)"
            )

    def stepped(self) -> None:
        """One step done; after the first few, the estimate."""
        self.steps += 1
        if self.steps != ESTIMATE_AFTER_STEPS:
            return
        seconds = (time.perf_counter() - self.started) / self.steps
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        logger.info(
            "about %.2f s a step: about %s to go; peak memory so far %.1f GiB",
            seconds,
            duration(seconds * (self.steps_left - self.steps)),
            peak,
        )


def duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{max(minutes, 1)} min"
