"""One training step on a fixed batch of 8 clips, run by tests/test_distributed.py: alone on
the whole batch, or under torchrun with each process on its share. The main process writes the
weights after the step and the gradients each optimizer stepped with (summed over processes) to
the file given as the first argument; the second names the method."""

from __future__ import annotations

import sys

import torch

from helpers import demo_config
from vavl import distributed
from vavl.data import Collator, FeatureNormalizer
from vavl.models import METHODS, build_model
from vavl.preparation import prepare
from vavl.training import build_recipe, complete_batch


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
    share = items[distributed.rank() :: distributed.world_size()]
    batch = Collator(config.task, normalizer)(share)
    if distributed.active():
        batch = complete_batch(batch, config)
    recipe.train_step(batch)
    if distributed.is_main():
        torch.save({"weights": model.state_dict(), "gradients": gradients}, out)
    distributed.shutdown()


if __name__ == "__main__":
    main()
