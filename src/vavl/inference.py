"""The inference engine: items, or the windows of a stream, in; each path's outputs out.

It has one job: run a trained model over inputs in batches, on a backend chosen once (PyTorch,
or onnxruntime for an exported model). Everything that runs a model goes through it: training's
development and test scoring, prediction of clips, long files (the mean of their windows),
timelines, the web page and live mode. Windows come from the feature pipeline's one windowing
code (:meth:`~vavl.features.pipeline.FeaturePipeline.windows`, and
:meth:`~vavl.features.pipeline.FeaturePipeline.cut` for a live stream), each window's features
as they would be if the window were its own file. Outputs are raw (logits for classes, values
for attributes): turning them into calibrated answers is :mod:`vavl.answers`' job.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray
from tqdm.auto import tqdm

from vavl.calibration import softmax
from vavl.checkpoint import Checkpoint, model_from_checkpoint
from vavl.config import TaskConfig
from vavl.data import Batch, Collator, Item
from vavl.errors import CheckpointError
from vavl.models import EmotionModel
from vavl.normalization import FeatureNormalizer
from vavl.people import PersonOutputs, person_items
from vavl.sampling import BucketBatchSampler
from vavl.types import MODALITIES, PATH_MODALITIES, PATHS, PathName

if TYPE_CHECKING:
    from vavl.export import OnnxModel
    from vavl.features.records import FileFeatures

BATCH_SIZE = 32
# Clips x (longest clip's frames)^2 in one batch: twice 32 windows of 3 s at 50 frames/s
# (a timeline's batch); 12 s windows go 4 at a time.
ATTENTION_BUDGET = 2 * 32 * 150**2
# Each path's outputs for every row of a batch, and which rows could feed it.
BatchOutputs = dict[PathName, tuple[NDArray[np.float32], NDArray[np.bool_]]]
# One item's (or window's) output vector per path it could feed.
ItemOutputs = dict[PathName, NDArray[np.float32]]


@dataclass
class PathOutputs:
    """One path's outputs for the clips that could feed it, in the order of ``ids``."""

    ids: list[str]
    outputs: NDArray[np.float32]  # (clips, outputs): logits for classes, values for attributes
    targets: NDArray[Any] | None  # class indices, class proportions or attribute values

    def probabilities(self, temperature: float = 1.0) -> NDArray[np.float32]:
        return softmax(self.outputs, temperature)


def merge_outputs(parts: Sequence[dict[PathName, PathOutputs]]) -> dict[PathName, PathOutputs]:
    """Outputs of several shares of a set (e.g. one per process), as one set."""
    merged: dict[PathName, PathOutputs] = {}
    for path in PATHS:
        pieces = [part[path] for part in parts if path in part]
        if not pieces:
            continue
        targets = [p.targets for p in pieces if p.targets is not None]
        merged[path] = PathOutputs(
            ids=[i for p in pieces for i in p.ids],
            outputs=np.concatenate([p.outputs for p in pieces]),
            targets=np.concatenate(targets) if len(targets) == len(pieces) else None,
        )
    return merged


class Backend(Protocol):
    """Runs a model on a batch: every path's outputs for every row, and the rows that fed it."""

    def run(self, batch: Batch) -> BatchOutputs: ...


class TorchBackend:
    """The PyTorch model itself, in eval mode for the call (its mode is restored after)."""

    def __init__(self, model: EmotionModel, device: torch.device | None = None) -> None:
        self.model = model
        self.device = device or next(model.parameters()).device

    @torch.no_grad()
    def run(self, batch: Batch) -> BatchOutputs:
        was_training = self.model.training
        self.model.eval()
        output = self.model(**batch.to(self.device).inputs())
        self.model.train(was_training)
        return {
            path: (output.predictions[path].float().cpu().numpy(), present.cpu().numpy())
            for path, present in output.present.items()
        }


class OnnxBackend:
    """An exported model (``vavl export --onnx``) run by onnxruntime, one graph per path."""

    def __init__(self, model: OnnxModel, output_dim: int) -> None:
        self.model, self.output_dim = model, output_dim

    def run(self, batch: Batch) -> BatchOutputs:
        results: BatchOutputs = {}
        for path, modalities in PATH_MODALITIES.items():
            rows = np.logical_and.reduce([batch.present(m).numpy() for m in modalities])
            if not rows.any():
                continue
            subset = batch.select(torch.from_numpy(rows), modalities)
            inputs = {k: v.numpy() for k, v in subset.inputs().items() if v is not None}
            values = np.zeros((len(batch), self.output_dim), np.float32)
            values[rows] = self.model.run(path, inputs)
            results[path] = (values, rows)
        return results


def checkpoint_backend(
    checkpoint: Checkpoint, name: str, device: torch.device, onnx_dir: str | Path | None = None
) -> Backend:
    """The backend that runs ``checkpoint``: its PyTorch model on ``device``, or the ONNX
    export of it in ``onnx_dir`` (refused when exported from another model)."""
    if onnx_dir is None:
        return TorchBackend(model_from_checkpoint(checkpoint).to(device), device)
    from vavl.export import OnnxModel

    onnx = OnnxModel(onnx_dir)
    saved = {m: d and d.to_dict() for m, d in checkpoint.extractors.items()}
    if onnx.card["extractors"] != saved:
        raise CheckpointError(f"{onnx_dir}: was exported from another model than {name}")
    return OnnxBackend(onnx, checkpoint.config.task.output_dim)


class InferenceEngine:
    """A backend, the task and the feature normalisation: items in batches -> outputs."""

    def __init__(
        self,
        backend: Backend,
        task: TaskConfig,
        normalizer: FeatureNormalizer | None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.backend, self.task, self.batch_size = backend, task, batch_size
        self.normalizer = normalizer
        self.collate = Collator(task, normalizer)

    @classmethod
    def for_model(
        cls,
        model: EmotionModel,
        task: TaskConfig,
        normalizer: FeatureNormalizer | None,
        batch_size: int = BATCH_SIZE,
        device: torch.device | None = None,
    ) -> InferenceEngine:
        return cls(TorchBackend(model, device), task, normalizer, batch_size)

    def outputs(
        self, items: Sequence[Item], progress: bool = False, description: str = "predict"
    ) -> dict[PathName, PathOutputs]:
        """Every path's outputs (and targets) for the ``items`` that feed it; clips are
        batched by length."""
        sampler = BucketBatchSampler([item.length() for item in items], self.batch_size, False)
        collected: dict[PathName, tuple[list[str], list[NDArray[Any]], list[NDArray[Any]]]] = {
            path: ([], [], []) for path in PATHS
        }
        for indices in tqdm(sampler, desc=description, disable=not progress, leave=False):
            batch = self.collate([items[i] for i in indices])
            for path, (values, present) in self.backend.run(batch).items():
                ids, outputs, targets = collected[path]
                ids += [batch.ids[row] for row in np.flatnonzero(present)]
                outputs.append(values[present])
                if batch.target is not None:
                    targets.append(batch.target.numpy()[present])
        return {
            path: PathOutputs(
                ids=ids,
                outputs=np.concatenate(outputs).astype(np.float32),
                targets=np.concatenate(targets) if targets else None,
            )
            for path, (ids, outputs, targets) in collected.items()
            if ids
        }

    def per_item(
        self, items: Sequence[Item], normalizer: FeatureNormalizer | None = None
    ) -> list[ItemOutputs]:
        """Each item's output vector per path it feeds ({} for an item with no features), in
        the order given; ``normalizer`` replaces the engine's statistics for these items."""
        results: list[ItemOutputs] = [{} for _ in items]
        usable = [i for i, item in enumerate(items) if item.has("audio") or item.has("visual")]
        collate = self.collate if normalizer is None else Collator(self.task, normalizer)
        for chosen in self._batches(usable, items):
            batch = collate([items[i] for i in chosen])
            for path, (values, present) in self.backend.run(batch).items():
                for row, index in enumerate(chosen):
                    if present[row]:
                        results[index][path] = values[row]
        return results

    def _batches(self, indices: Sequence[int], items: Sequence[Item]) -> Iterator[list[int]]:
        """``indices`` in order, in batches of at most ``batch_size`` whose attention stays
        within :data:`ATTENTION_BUDGET` (clips x longest clip squared): long windows go a few at
        a time, so that memory is bounded whatever the input."""
        batch: list[int] = []
        longest = 0
        for index in indices:
            frames = max(items[index].frame_count(m) for m in MODALITIES)
            grown = max(longest, frames)
            if batch and (
                len(batch) == self.batch_size or (len(batch) + 1) * grown**2 > ATTENTION_BUDGET
            ):
                yield batch
                batch, grown = [], frames
            batch.append(index)
            longest = grown
        if batch:
            yield batch

    def over_windows(
        self, windows: Iterable[FileFeatures]
    ) -> Iterator[tuple[FileFeatures, ItemOutputs, PersonOutputs]]:
        """Each window with its outputs and its persons', in order; windows are run in
        batches as they come."""
        pending: list[FileFeatures] = []
        for window in windows:
            pending.append(window)
            if len(pending) == self.batch_size:
                yield from self._run_windows(pending)
                pending = []
        yield from self._run_windows(pending)

    def _run_windows(
        self, windows: Sequence[FileFeatures]
    ) -> Iterator[tuple[FileFeatures, ItemOutputs, PersonOutputs]]:
        outputs, people = self.with_people(windows)
        yield from zip(windows, outputs, people, strict=True)

    def with_people(
        self,
        found: Sequence[FileFeatures],
        normalizer: FeatureNormalizer | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[list[ItemOutputs], list[PersonOutputs]]:
        """The outputs of each file (window) and of each of its persons, run together (with
        ``normalizer``'s statistics instead of the engine's, and ``metadata`` on every item:
        a person is standardised as the file it is in)."""
        fields = {"metadata": dict(metadata)} if metadata else {}
        items = [Item.from_features(f"{one.start:.3f}", one, **fields) for one in found]
        persons = [
            (number, track, kind, item)
            for number, one in enumerate(found)
            for track, kind, item in person_items(one, **fields)
        ]
        outputs = self.per_item(items + [item for *_, item in persons], normalizer)
        people: list[PersonOutputs] = [{} for _ in found]
        for (number, track, kind, _), output in zip(persons, outputs[len(items) :], strict=True):
            people[number].setdefault(track, {})[kind] = output
        return outputs[: len(items)], people
