"""One training step on a fixed batch of 8 clips, run by tests/test_distributed.py: alone on
the whole batch, or under torchrun with each process on its share. The main process writes the
weights after the step, the gradients each optimizer stepped with (summed over processes) and
the device of every tensor the step sent to the other process, with the model's device, to the
file given as the first argument; the second names the method."""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.distributed as dist

from helpers import demo_config
from vavl import distributed
from vavl.data import Collator
from vavl.distributed import complete_batch
from vavl.methods import METHODS
from vavl.models import build_model
from vavl.normalization import FeatureNormalizer
from vavl.preparation import prepare
from vavl.training import ThreeStepRecipe, build_recipe


def main() -> None:
    out, method = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    distributed.initialize()
    config = demo_config(
        *METHODS[method], "model.model_dim=32", "model.heads=4", "model.audio_blocks=1",
        "model.visual_blocks=1", "model.cross_layers=1", "model.dropout=0.0",
        "model.embedding_dropout=0.0", "model.output_dropout=0.0", "model.head_hidden=[32]",
        "data.n_train=40",
    )  # fmt: skip
    items = prepare(config).split(1)["train"][:8]
    for item in items[1::2]:  # the second process's share has no audio at all
        item.audio = None
    normalizer = FeatureNormalizer.fit(items)
    torch.manual_seed(0)
    model = build_model(config.model, config.task.output_dim)
    recipe = build_recipe(model, config, torch.device("cpu"), None)
    names = {id(p): n for n, p in model.named_parameters()}
    gradients: dict[str, dict[str, torch.Tensor]] = {}
    update = recipe._update

    def recording_update(step: str, loss: torch.Tensor) -> None:
        update(step, loss)
        gradients[step] = {
            names[id(p)]: p.grad.clone()
            for group in recipe.optimizers[step].param_groups
            for p in group["params"]
            if p.grad is not None
        }

    recipe._update = recording_update  # type: ignore[method-assign]
    sent: list[str] = []  # devices of the tensors that crossed processes
    reduce = dist.all_reduce

    def recording(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(tensor.device))
        return reduce(tensor, *args, **kwargs)

    dist.all_reduce = recording
    share = items[distributed.rank() :: distributed.world_size()]
    batch = Collator(config.task, normalizer)(share)
    if distributed.active():
        batch = complete_batch(batch, config)
    if isinstance(recipe, ThreeStepRecipe):
        # The fusion step first, on the weights both runs start from: after the encoder steps it
        # would read encoders that Adam moved by noise-driven steps (gradients that are zero up
        # to rounding, e.g. a bias before batch norm), which eval mode's batch norm then sees.
        recipe.fusion_step(batch)
        recipe.unimodal_step("visual", batch)
        recipe.unimodal_step("audio", batch)
    else:
        recipe.train_step(batch)
    if distributed.is_main():
        device = str(next(model.parameters()).device)
        saved = {"weights": model.state_dict(), "gradients": gradients}
        torch.save(saved | {"collective_devices": sent, "model_device": device}, out)
    distributed.shutdown()


if __name__ == "__main__":
    main()
