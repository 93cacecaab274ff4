"""An ensemble: several models of one architecture, trained with different seeds, answering as one.

Each path's answer is the mean of the members' class probabilities (returned as its logarithm, so
that a softmax, a temperature or a cross-entropy downstream treat it as logits), or the mean of
their values for attributes. Averaging members trained from different initialisations and batch
orders mainly removes the seed's own bias, which is what varies most on speakers and corpora that
no member has met (see the README's default model).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vavl.config import ModelConfig
from vavl.models.base import EmotionModel, ModelOutput
from vavl.types import TaskKind


def combine_outputs(outputs: Sequence[Tensor], kind: TaskKind) -> Tensor:
    """One path's members' outputs, (batch, outputs) each, as the ensemble's output."""
    stacked = torch.stack([output.float() for output in outputs])
    if kind == "classification":  # the log of the mean probabilities
        return torch.logsumexp(stacked.log_softmax(dim=-1), dim=0) - math.log(len(outputs))
    if kind == "multilabel":  # the logit of each label's mean probability
        present = torch.logsumexp(F.logsigmoid(stacked), dim=0)
        return present - torch.logsumexp(F.logsigmoid(-stacked), dim=0)
    return stacked.mean(dim=0)


class Ensemble(EmotionModel):
    """``members`` built from one ``config``; the forward pass combines their outputs per path."""

    def __init__(self, members: Sequence[EmotionModel], kind: TaskKind) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if any(
            m.config != members[0].config or m.output_dim != members[0].output_dim for m in members
        ):
            raise ValueError("an ensemble's members must share one architecture")
        self.members = nn.ModuleList(members)
        self.kind = kind
        self.config: ModelConfig = members[0].config
        self.output_dim = members[0].output_dim

    def forward(
        self,
        audio: Tensor | None = None,
        audio_mask: Tensor | None = None,
        visual: Tensor | None = None,
        visual_mask: Tensor | None = None,
    ) -> ModelOutput:
        outputs = [member(audio, audio_mask, visual, visual_mask) for member in self.members]
        first = outputs[0]
        return ModelOutput(
            predictions={
                path: combine_outputs([output.predictions[path] for output in outputs], self.kind)
                for path in first.predictions
            },
            present=first.present,
        )
